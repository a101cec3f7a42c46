package main

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/consul/api"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/coordkit/coord/internal/fanout"
)

// rawInFlight is how many transactions (or, on ZooKeeper, reads) the raw
// clients keep in flight at once when they write or read many keys, as
// the store does: the baseline gets the same concurrency.
const rawInFlight = 4

// inChunks calls fn for each run [lo, hi) of at most size of n items,
// rawInFlight at once, and returns how many runs there were.
func inChunks(ctx context.Context, n, size int, fn func(ctx context.Context, lo, hi int) error) (int, error) {
	runs := (n + size - 1) / size
	return runs, fanout.Each(ctx, runs, rawInFlight, func(ctx context.Context, c int) error {
		return fn(ctx, c*size, min((c+1)*size, n))
	})
}

// etcd

func (r *etcdRaw) writeAll(ctx context.Context, kvs map[string][]byte) (int, error) {
	keys := slices.Collect(maps.Keys(kvs))
	return inChunks(ctx, len(keys), r.maxOps, func(ctx context.Context, lo, hi int) error {
		var ops []clientv3.Op
		for _, k := range keys[lo:hi] {
			ops = append(ops, clientv3.OpPut(k, string(kvs[k])))
		}
		_, err := r.cli.Txn(ctx).Then(ops...).Commit()
		return err
	})
}

func (r *etcdRaw) readWriteAll(ctx context.Context, kvs map[string][]byte) (int, error) {
	keys := slices.Collect(maps.Keys(kvs))
	versions := make([]int64, len(keys))
	runs, err := inChunks(ctx, len(keys), r.maxOps, func(ctx context.Context, lo, hi int) error {
		var ops []clientv3.Op
		for _, k := range keys[lo:hi] {
			ops = append(ops, clientv3.OpGet(k))
		}
		resp, err := r.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return err
		}
		for j, rr := range resp.Responses {
			kvs := rr.GetResponseRange().GetKvs()
			if len(kvs) != 1 {
				return fmt.Errorf("etcd raw read: %s missing", keys[lo+j])
			}
			versions[lo+j] = kvs[0].Version
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	_, err = inChunks(ctx, len(keys), r.maxOps, func(ctx context.Context, lo, hi int) error {
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		for i := lo; i < hi; i++ {
			cmps = append(cmps, clientv3.Compare(clientv3.Version(keys[i]), "=", versions[i]))
			ops = append(ops, clientv3.OpPut(keys[i], string(kvs[keys[i]])))
		}
		resp, err := r.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err == nil && !resp.Succeeded {
			err = fmt.Errorf("etcd raw write refused")
		}
		return err
	})
	return 2 * runs, err
}

// ZooKeeper

func (r *zkRaw) writeAll(ctx context.Context, kvs map[string][]byte) (int, error) {
	var reqs []interface{}
	for k, v := range kvs {
		reqs = append(reqs, &zk.SetDataRequest{Path: k, Data: v, Version: -1})
	}
	_, err := r.conn.Multi(reqs...)
	return 1, err
}

// readWriteAll reads every key (ZooKeeper has no multi-read: gets in
// flight on the one connection, as many as the store's GetMany keeps) and
// writes them in one multi that checks each version read.
func (r *zkRaw) readWriteAll(ctx context.Context, kvs map[string][]byte) (int, error) {
	keys := slices.Collect(maps.Keys(kvs))
	versions := make([]int32, len(keys))
	err := fanout.Each(ctx, len(keys), 64, func(ctx context.Context, i int) error {
		_, st, err := r.conn.Get(keys[i])
		if err == nil {
			versions[i] = st.Version // each call its own index
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	reqs := make([]interface{}, len(keys))
	for i, k := range keys {
		reqs[i] = &zk.SetDataRequest{Path: k, Data: kvs[k], Version: versions[i]}
	}
	_, err = r.conn.Multi(reqs...)
	return len(keys) + 1, err
}

// Consul

func (r *consulRaw) txn(ctx context.Context, ops api.TxnOps) (*api.TxnResponse, error) {
	ok, resp, _, err := r.cli.Txn().Txn(ops, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("consul raw txn refused: %v", resp.Errors)
	}
	return resp, nil
}

func (r *consulRaw) writeAll(ctx context.Context, kvs map[string][]byte) (int, error) {
	keys := slices.Collect(maps.Keys(kvs))
	return inChunks(ctx, len(keys), r.maxOps, func(ctx context.Context, lo, hi int) error {
		var ops api.TxnOps
		for _, k := range keys[lo:hi] {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVSet, Key: k, Value: kvs[k]}})
		}
		_, err := r.txn(ctx, ops)
		return err
	})
}

func (r *consulRaw) readWriteAll(ctx context.Context, kvs map[string][]byte) (int, error) {
	keys := slices.Collect(maps.Keys(kvs))
	index := make([]uint64, len(keys))
	runs, err := inChunks(ctx, len(keys), r.maxOps, func(ctx context.Context, lo, hi int) error {
		var ops api.TxnOps
		for _, k := range keys[lo:hi] {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGet, Key: k}})
		}
		resp, err := r.txn(ctx, ops)
		if err != nil {
			return err
		}
		for j, res := range resp.Results {
			index[lo+j] = res.KV.ModifyIndex
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	_, err = inChunks(ctx, len(keys), r.maxOps, func(ctx context.Context, lo, hi int) error {
		var ops api.TxnOps
		for i := lo; i < hi; i++ {
			// The flags change, as a store's version does.
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: keys[i], Value: kvs[keys[i]], Flags: r.version.Add(1), Index: index[i]}})
		}
		_, err := r.txn(ctx, ops)
		return err
	})
	return 2 * runs, err
}
