package main

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/consul/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// raw is the baseline: the same operation done with the backend's own
// client in the fewest requests it allows, on keys of its own (one
// directory, no layout of ours).
type raw interface {
	// put makes key with data, returning a token for set (a version or an
	// index).
	put(ctx context.Context, key string, data []byte) (int64, error)
	get(ctx context.Context, key string) error
	exists(ctx context.Context, key string) error
	children(ctx context.Context, dir string) (int, error)
	// set writes key if it is still at token, returning the new token.
	set(ctx context.Context, key string, data []byte, token int64) (int64, error)
	// createDelete creates key if missing, then deletes it at its version.
	createDelete(ctx context.Context, key string, data []byte) error
	// createMany creates dir/name for every name (dir made first where the
	// backend needs it), in as few requests as the server allows.
	createMany(ctx context.Context, dir string, names []string, data []byte) error
	// writeAll writes every key in as few transactions as the server allows
	// (rawInFlight at once) and returns how many it took.
	writeAll(ctx context.Context, kvs map[string][]byte) (int, error)
	// readWriteAll does what SetSlotRange must: it reads every key, then
	// writes each only if it is still as read, in as few requests as the
	// server allows (rawInFlight at once), and returns how many it sent.
	readWriteAll(ctx context.Context, kvs map[string][]byte) (int, error)
	// watchFloor writes key and returns how long until a watch on it,
	// armed before, reports the write.
	watchFloor(ctx context.Context, key string, data []byte) (time.Duration, error)
	close()
}

type etcdRaw struct {
	cli    *clientv3.Client
	maxOps int
}

func (r *etcdRaw) put(ctx context.Context, key string, data []byte) (int64, error) {
	_, err := r.cli.Put(ctx, key, string(data))
	return 1, err
}

func (r *etcdRaw) get(ctx context.Context, key string) error {
	_, err := r.cli.Get(ctx, key)
	return err
}

// exists reads the whole key, as the store's Exists must: etcd 3.7 answers
// a keys-only range from its in-memory index without the lease, which an
// Exists needs for its Stat (Ephemeral, Owner).
func (r *etcdRaw) exists(ctx context.Context, key string) error {
	_, err := r.cli.Get(ctx, key)
	return err
}

func (r *etcdRaw) children(ctx context.Context, dir string) (int, error) {
	resp, err := r.cli.Get(ctx, dir+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, err
	}
	return len(resp.Kvs), nil
}

func (r *etcdRaw) set(ctx context.Context, key string, data []byte, token int64) (int64, error) {
	resp, err := r.cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(key), "=", token)).Then(clientv3.OpPut(key, string(data))).Commit()
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("etcd raw set %s: version moved", key)
	}
	return token + 1, nil
}

func (r *etcdRaw) createDelete(ctx context.Context, key string, data []byte) error {
	resp, err := r.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, string(data))).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd raw create %s: exists", key)
	}
	_, err = r.cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(key), "=", 1)).Then(clientv3.OpDelete(key)).Commit()
	return err
}

func (r *etcdRaw) createMany(ctx context.Context, dir string, names []string, data []byte) error {
	kvs := map[string][]byte{}
	for _, n := range names {
		kvs[dir+"/"+n] = data
	}
	_, err := r.writeAll(ctx, kvs)
	return err
}

func (r *etcdRaw) watchFloor(ctx context.Context, key string, data []byte) (time.Duration, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	w := r.cli.Watch(wctx, key, clientv3.WithCreatedNotify())
	if resp := <-w; !resp.Created {
		return 0, fmt.Errorf("etcd raw watch %s: not created: %v", key, resp.Err())
	}
	start := time.Now()
	if _, err := r.cli.Put(ctx, key, string(data)); err != nil {
		return 0, err
	}
	for resp := range w {
		if err := resp.Err(); err != nil {
			return 0, err
		}
		if len(resp.Events) > 0 {
			return time.Since(start), nil
		}
	}
	return 0, fmt.Errorf("etcd raw watch %s ended", key)
}

func (r *etcdRaw) close() { r.cli.Close() }

type zkRaw struct{ conn *zk.Conn }

var zkACL = zk.WorldACL(zk.PermAll)

func (r *zkRaw) put(ctx context.Context, key string, data []byte) (int64, error) {
	if err := r.mkdirs(path.Dir(key)); err != nil {
		return 0, err
	}
	_, err := r.conn.Create(key, data, 0, zkACL)
	return 0, err
}

func (r *zkRaw) mkdirs(dir string) error {
	p := ""
	for _, c := range strings.Split(strings.Trim(dir, "/"), "/") {
		p += "/" + c
		if _, err := r.conn.Create(p, nil, 0, zkACL); err != nil && err != zk.ErrNodeExists {
			return err
		}
	}
	return nil
}

func (r *zkRaw) get(ctx context.Context, key string) error {
	_, _, err := r.conn.Get(key)
	return err
}

func (r *zkRaw) exists(ctx context.Context, key string) error {
	_, _, err := r.conn.Exists(key)
	return err
}

func (r *zkRaw) children(ctx context.Context, dir string) (int, error) {
	kids, _, err := r.conn.Children(dir)
	return len(kids), err
}

func (r *zkRaw) set(ctx context.Context, key string, data []byte, token int64) (int64, error) {
	st, err := r.conn.Set(key, data, int32(token))
	if err != nil {
		return 0, err
	}
	return int64(st.Version), nil
}

func (r *zkRaw) createDelete(ctx context.Context, key string, data []byte) error {
	if _, err := r.conn.Create(key, data, 0, zkACL); err != nil {
		return err
	}
	return r.conn.Delete(key, 0)
}

func (r *zkRaw) createMany(ctx context.Context, dir string, names []string, data []byte) error {
	if err := r.mkdirs(dir); err != nil {
		return err
	}
	for len(names) > 0 {
		b := names[:min(len(names), 1000)]
		names = names[len(b):]
		reqs := make([]interface{}, len(b))
		for i, n := range b {
			reqs[i] = &zk.CreateRequest{Path: dir + "/" + n, Data: data, Acl: zkACL}
		}
		if _, err := r.conn.Multi(reqs...); err != nil {
			return err
		}
	}
	return nil
}

func (r *zkRaw) watchFloor(ctx context.Context, key string, data []byte) (time.Duration, error) {
	_, _, ev, err := r.conn.GetW(key)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := r.conn.Set(key, data, -1); err != nil {
		return 0, err
	}
	select {
	case <-ev:
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (r *zkRaw) close() { r.conn.Close() }

type consulRaw struct {
	cli    *api.Client
	maxOps int
	// version is what a versioned set writes in the key's flags, as the
	// store keeps a node's version there: a set that rewrote the key
	// unchanged would be a cheaper write than the store's.
	version atomic.Uint64
}

func (r *consulRaw) q(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx)
}

func (r *consulRaw) w(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}

func (r *consulRaw) put(ctx context.Context, key string, data []byte) (int64, error) {
	if _, err := r.cli.KV().Put(&api.KVPair{Key: key, Value: data}, r.w(ctx)); err != nil {
		return 0, err
	}
	kv, _, err := r.cli.KV().Get(key, r.q(ctx))
	if err != nil || kv == nil {
		return 0, fmt.Errorf("consul raw put %s: %v", key, err)
	}
	return int64(kv.ModifyIndex), nil
}

func (r *consulRaw) get(ctx context.Context, key string) error {
	_, _, err := r.cli.KV().Get(key, r.q(ctx))
	return err
}

func (r *consulRaw) exists(ctx context.Context, key string) error { return r.get(ctx, key) }

func (r *consulRaw) children(ctx context.Context, dir string) (int, error) {
	keys, _, err := r.cli.KV().Keys(dir+"/", "/", r.q(ctx))
	return len(keys), err
}

// cas runs one check-and-set and returns the key's new ModifyIndex.
func (r *consulRaw) cas(ctx context.Context, key string, data []byte, index uint64) (int64, error) {
	ok, resp, _, err := r.cli.Txn().Txn(api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: key, Value: data, Flags: r.version.Add(1), Index: index}}}, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, err
	}
	if !ok || len(resp.Results) != 1 {
		return 0, fmt.Errorf("consul raw cas %s refused: %v", key, resp.Errors)
	}
	return int64(resp.Results[0].KV.ModifyIndex), nil
}

func (r *consulRaw) set(ctx context.Context, key string, data []byte, token int64) (int64, error) {
	return r.cas(ctx, key, data, uint64(token))
}

func (r *consulRaw) createDelete(ctx context.Context, key string, data []byte) error {
	idx, err := r.cas(ctx, key, data, 0)
	if err != nil {
		return err
	}
	ok, _, err := r.cli.KV().DeleteCAS(&api.KVPair{Key: key, ModifyIndex: uint64(idx)}, r.w(ctx))
	if err == nil && !ok {
		err = fmt.Errorf("consul raw delete %s refused", key)
	}
	return err
}

func (r *consulRaw) createMany(ctx context.Context, dir string, names []string, data []byte) error {
	kvs := map[string][]byte{}
	for _, n := range names {
		kvs[dir+"/"+n] = data
	}
	_, err := r.writeAll(ctx, kvs)
	return err
}

func (r *consulRaw) watchFloor(ctx context.Context, key string, data []byte) (time.Duration, error) {
	_, meta, err := r.cli.KV().Get(key, r.q(ctx))
	if err != nil {
		return 0, err
	}
	got := make(chan error, 1)
	go func() {
		q := r.q(ctx)
		q.WaitIndex, q.WaitTime = meta.LastIndex, time.Minute
		_, _, err := r.cli.KV().Get(key, q)
		got <- err
	}()
	time.Sleep(20 * time.Millisecond) // the blocking query is in place
	start := time.Now()
	if _, err := r.cli.KV().Put(&api.KVPair{Key: key, Value: data}, r.w(ctx)); err != nil {
		return 0, err
	}
	if err := <-got; err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func (r *consulRaw) close() {}
