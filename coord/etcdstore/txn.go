package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/txnplan"
)

// commit runs one transaction that may write: a commit whose answer did not
// come may have been applied, and says so (ErrOutcomeUnknown).
func (s *Store) commit(ctx context.Context, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	if n := requestBytes(cmps, then, els); n > s.reqBytes {
		return nil, fmt.Errorf("%w: a request of about %d bytes, over the cluster's %d (not sent)", coord.ErrTooLarge, n, s.reqBytes)
	}
	var resp *clientv3.TxnResponse
	var err error
	if s.dropWrite.CompareAndSwap(true, false) {
		// A test's fault: the request lost on its way, the connection dead.
		err = status.Error(codes.Unavailable, "error reading from server: EOF (request dropped by a test fault)")
	} else {
		resp, err = s.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	}
	if f := s.loseReply.Load(); err == nil && f != nil && s.loseReply.CompareAndSwap(f, nil) {
		// A test's fault: applied, and the answer lost on the way; then
		// (*f)(), what else the test does to the link at that instant.
		(*f)()
		resp, err = nil, status.Error(codes.Unavailable, "error reading from server: EOF (reply lost by a test fault)")
	}
	if err != nil {
		if mapped := mapErr(ctx, err); errors.Is(mapped, coord.ErrUnavailable) {
			// Sent, and no answer: it may have been applied.
			return nil, fmt.Errorf("%w: %w", coord.ErrOutcomeUnknown, mapped)
		}
		return nil, mapErr(ctx, err)
	}
	s.seen.See(resp.Header.Revision)
	return resp, nil
}

// requestBytes is a transaction's size on the wire, over-counted a little:
// its keys and values, and 16 bytes of encoding for each compare and op.
func requestBytes(cmps []clientv3.Cmp, then, els []clientv3.Op) int {
	n := 64 // the request's own framing
	for i := range cmps {
		c := cmps[i].GetCompare()
		n += len(c.Key) + len(c.RangeEnd) + len(c.GetValue()) + 16
	}
	for _, ops := range [][]clientv3.Op{then, els} {
		for _, op := range ops {
			n += len(op.KeyBytes()) + len(op.RangeBytes()) + len(op.ValueBytes()) + 16
		}
	}
	return n
}

// Txn implements coord.Store.
func (s *Store) Txn(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	if err := coord.CheckTxn(ctx, ops, s.limits); err != nil {
		return nil, err
	}
	var lease clientv3.LeaseID
	for _, op := range ops {
		if op.Kind == coord.OpCreate && op.Mode&coord.Ephemeral != 0 {
			sess, err := s.session(ctx)
			if err != nil {
				return nil, &coord.TxnError{Index: 0, Op: op, Err: err}
			}
			lease = sess.id
			break
		}
	}
	c, cancel, err := s.call(ctx)
	if err != nil {
		return nil, coord.Errorf("txn", ops[0].Path, err)
	}
	defer cancel()
	if setsAndChecks(ops) {
		res, err := s.txnSetCheck(c, ops)
		if err != nil {
			var te *coord.TxnError
			if !errors.As(err, &te) {
				err = coord.Errorf("txn", ops[0].Path, mapErr(ctx, err))
			}
		}
		return res, err
	}
	for {
		res, retry, err := s.txnOnce(c, ops, lease)
		if err != nil {
			var te *coord.TxnError
			if !errors.As(err, &te) {
				err = coord.Errorf("txn", ops[0].Path, mapErr(ctx, err))
			}
			if errors.Is(err, coord.ErrSessionExpired) {
				s.sessionLost(lease)
			}
			return nil, err
		}
		if !retry {
			return res, nil
		}
	}
}

// setsAndChecks reports whether ops only set and check nodes other than
// the root, each path once: such a transaction needs no planning read
// (txnSetCheck).
func setsAndChecks(ops []coord.Op) bool {
	seen := make(map[string]bool, len(ops))
	for _, op := range ops {
		if (op.Kind != coord.OpSet && op.Kind != coord.OpCheck) || op.Path == "/" || seen[op.Path] {
			return false
		}
		seen[op.Path] = true
	}
	return true
}

// txnSetCheck commits sets and checks of distinct nodes in one request, as
// setOne does one set: each node's version is compared, the sets keep the
// nodes' leases, and a refused transaction reads the nodes in its Else
// branch, which tells the first op that failed and why.
func (s *Store) txnSetCheck(ctx context.Context, ops []coord.Op) ([]coord.OpResult, error) {
	cmps := make([]clientv3.Cmp, len(ops))
	then := make([]clientv3.Op, len(ops))
	els := make([]clientv3.Op, len(ops))
	for i, op := range ops {
		key := s.nodeKey(op.Path)
		cmps[i] = versionCmp(key, op.Version)
		if op.Kind == coord.OpSet {
			then[i] = clientv3.OpPut(key, string(op.Data), clientv3.WithIgnoreLease(), clientv3.WithPrevKV())
		} else {
			then[i] = clientv3.OpGet(key)
		}
		els[i] = clientv3.OpGet(key)
	}
	resp, err := s.commit(ctx, cmps, then, els)
	if err != nil {
		return nil, err
	}
	res := make([]coord.OpResult, len(ops))
	for i, op := range ops {
		var kv *mvccpb.KeyValue
		r := resp.Responses[i]
		if put := r.GetResponsePut(); put != nil {
			kv = put.PrevKv
		} else if kvs := r.GetResponseRange().GetKvs(); len(kvs) > 0 {
			kv = kvs[0]
		}
		if !resp.Succeeded {
			switch {
			case kv == nil:
				return nil, &coord.TxnError{Index: i, Op: op, Err: coord.ErrNoNode}
			case op.Version != coord.AnyVersion && kv.Version-1 != op.Version:
				return nil, &coord.TxnError{Index: i, Op: op, Err: fmt.Errorf("%w: expected %d, is %d", coord.ErrBadVersion, op.Version, kv.Version-1)}
			}
			continue
		}
		if kv == nil {
			return nil, fmt.Errorf("%w: no previous state of %s in the reply", coord.ErrUnavailable, op.Path)
		}
		ver := kv.Version - 1
		if op.Kind == coord.OpSet {
			ver++
		}
		res[i] = coord.OpResult{Path: op.Path, Stat: coord.Stat{Version: ver, Ephemeral: kv.Lease != 0, Owner: leaseOwner(kv.Lease)}}
	}
	if !resp.Succeeded {
		// Every compare held on the state read: it changed in between.
		return nil, fmt.Errorf("%w: the transaction was refused, then every node it names was found as expected", coord.ErrUnavailable)
	}
	return res, nil
}

// plan is what a transaction reads before it is built, at one revision: the
// nodes it names, the parents of the nodes it creates, their sequence
// counters and, for deletes, the number of children. The commit compares all
// of it, so it applies only to the state it was planned on.
type plan struct {
	rev  int64
	kvs  map[string]*kvState // nodes, by path
	seq  map[string]*kvState // sequence counters, by parent path
	kids map[string]int64    // children counts, by path (deletes only)
}

type kvState struct {
	exists bool
	ver    int64 // coord version
	modRev int64
	lease  int64
	value  []byte
}

func (s *Store) read(ctx context.Context, ops []coord.Op, extra []string) (*plan, error) {
	p := &plan{kvs: map[string]*kvState{}, seq: map[string]*kvState{}, kids: map[string]int64{}}
	type get struct {
		key   string
		count bool // count the keys under the prefix key
	}
	var gets []get
	var fill []func(*pb.RangeResponse)
	node := func(m map[string]*kvState, path, key string) {
		// The root is no key, but it has a sequence counter.
		if _, ok := m[path]; ok || (path == "/" && key != s.seqKey(path)) {
			return
		}
		st := &kvState{}
		m[path] = st
		gets = append(gets, get{key: key})
		fill = append(fill, func(rr *pb.RangeResponse) {
			if len(rr.Kvs) > 0 {
				kv := rr.Kvs[0]
				*st = kvState{exists: true, ver: kv.Version - 1, modRev: kv.ModRevision, lease: kv.Lease, value: kv.Value}
			}
		})
	}
	for _, op := range ops {
		node(p.kvs, op.Path, s.nodeKey(op.Path))
		switch op.Kind {
		case coord.OpCreate:
			par := coord.Parent(op.Path)
			node(p.kvs, par, s.nodeKey(par))
			if op.Mode&coord.Sequential != 0 {
				node(p.seq, par, s.seqKey(par))
			}
		case coord.OpDelete:
			if _, ok := p.kids[op.Path]; !ok {
				path := op.Path
				p.kids[path] = 0
				gets = append(gets, get{key: s.childPrefix(path), count: true})
				fill = append(fill, func(rr *pb.RangeResponse) { p.kids[path] = rr.Count })
			}
		}
	}
	for _, path := range extra {
		node(p.kvs, path, s.nodeKey(path))
	}
	// Read in chunks the server accepts, all at the revision of the first.
	for start := 0; start < len(gets); start += s.serverOps {
		var chunk []clientv3.Op
		for _, g := range gets[start:min(start+s.serverOps, len(gets))] {
			var opts []clientv3.OpOption
			if g.count {
				opts = append(opts, clientv3.WithPrefix(), clientv3.WithCountOnly())
			}
			if start > 0 {
				opts = append(opts, clientv3.WithRev(p.rev))
			}
			chunk = append(chunk, clientv3.OpGet(g.key, opts...))
		}
		resp, err := s.readTxn(ctx, chunk...)
		if err != nil {
			return nil, err
		}
		if start == 0 {
			p.rev = resp.Header.Revision
			s.seen.See(p.rev)
		}
		for i := range chunk {
			fill[start+i](resp.Responses[i].GetResponseRange())
		}
	}
	return p, nil
}

// txnOnce plans and commits the transaction once. retry is true when the
// state changed after it was read (nothing was applied).
func (s *Store) txnOnce(ctx context.Context, ops []coord.Op, lease clientv3.LeaseID) ([]coord.OpResult, bool, error) {
	var extra []string
	for {
		p, err := s.read(ctx, ops, extra)
		if err != nil {
			return nil, false, err
		}
		res, then, missing, err := s.simulate(p, ops, lease)
		if err != nil {
			return nil, false, err
		}
		if len(missing) > 0 { // sequential names not read yet: read them too
			extra = append(extra, missing...)
			continue
		}
		var cmps []clientv3.Cmp
		for path, kv := range p.kvs {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.nodeKey(path)), "=", kv.modRev))
		}
		for par, kv := range p.seq {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.seqKey(par)), "=", kv.modRev))
		}
		for path := range p.kids {
			// No child created or changed since the read.
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.childPrefix(path)), "<", p.rev+1).WithPrefix())
		}
		resp, err := s.commit(ctx, cmps, then, nil)
		if err != nil {
			return nil, false, err
		}
		return res, !resp.Succeeded, nil
	}
}

// simulate plans the ops on the state read (see package txnplan) and
// returns the results and the etcd ops to commit. missing lists paths to
// read before planning again.
func (s *Store) simulate(p *plan, ops []coord.Op, lease clientv3.LeaseID) ([]coord.OpResult, []clientv3.Op, []string, error) {
	next := map[string]int64{}
	for par, kv := range p.seq {
		if kv.exists {
			n, err := strconv.ParseInt(string(kv.value), 10, 64)
			if err != nil || n < 0 {
				return nil, nil, nil, fmt.Errorf("%w: corrupt sequence counter %s: %q", coord.ErrUnavailable, s.seqKey(par), kv.value)
			}
			next[par] = n
		}
	}
	read := func(path string) (txnplan.Node, bool) {
		kv, ok := p.kvs[path]
		if !ok {
			return txnplan.Node{}, false
		}
		return txnplan.Node{Exists: kv.exists, Ephemeral: kv.lease != 0, Owner: leaseOwner(kv.lease), Version: kv.ver, Kids: p.kids[path]}, true
	}
	steps, res, missing, err := txnplan.Plan(ops, leaseOwner(int64(lease)), read, func(par string) int64 { return next[par] })
	if err != nil || len(missing) > 0 {
		return nil, nil, missing, err
	}
	// The plan writes each node once (coord.CheckTxn sees to it).
	var then []clientv3.Op
	for _, st := range steps {
		key := s.nodeKey(st.Path)
		switch st.Op.Kind {
		case coord.OpCreate:
			if st.After.Ephemeral {
				then = append(then, clientv3.OpPut(key, string(st.Op.Data), clientv3.WithLease(lease)))
			} else {
				then = append(then, clientv3.OpPut(key, string(st.Op.Data)))
			}
		case coord.OpSet:
			then = append(then, clientv3.OpPut(key, string(st.Op.Data), clientv3.WithIgnoreLease()))
		case coord.OpDelete:
			then = append(then, clientv3.OpDelete(key), clientv3.OpDelete(s.seqKey(st.Path)))
		}
	}
	counters := txnplan.Counters(steps)
	for _, par := range slices.Sorted(maps.Keys(counters)) {
		then = append(then, clientv3.OpPut(s.seqKey(par), strconv.FormatInt(counters[par], 10)))
	}
	return res, then, nil, nil
}
