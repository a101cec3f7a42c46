package consulstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/consul/api"

	"github.com/coordkit/coord/coord"
)

// kvState is a key as read when planning a transaction.
type kvState struct {
	kv   *api.KVPair // nil: missing
	kids int         // children count (deletes only)
}

// Txn implements coord.Store on /v1/txn.
func (s *Store) Txn(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	if err := coord.CheckTxn(ctx, ops, s.limits); err != nil {
		return nil, err
	}
	var sessID string
	for _, op := range ops {
		if op.Kind == coord.OpCreate && op.Mode&coord.Ephemeral != 0 {
			sess, err := s.session(ctx)
			if err != nil {
				return nil, &coord.TxnError{Index: 0, Op: op, Err: err}
			}
			sessID = sess.id
			break
		}
	}
	c, cancel := ctx, context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		c, cancel = context.WithTimeout(ctx, s.reqTO)
	}
	defer cancel()
	for {
		res, retry, err := s.txnOnce(c, ops, sessID)
		if err != nil {
			if _, ok := err.(*coord.TxnError); !ok {
				err = coord.Errorf("txn", ops[0].Path, mapErr(ctx, err))
			}
			return nil, err
		}
		if !retry {
			return res, nil
		}
	}
}

// read fetches, concurrently, every key the ops depend on. A node to delete
// is read before its children are listed, so that a child created after the
// listing has moved the node's ModifyIndex, which the commit checks.
func (s *Store) read(ctx context.Context, ops []coord.Op, extra []string) (nodes, seqs map[string]*kvState, err error) {
	nodes, seqs = map[string]*kvState{}, map[string]*kvState{}
	type job struct {
		m    map[string]*kvState
		path string
		key  string
		kids bool
	}
	var jobs []job
	needKids := map[string]bool{}
	for _, op := range ops {
		if op.Kind == coord.OpDelete {
			needKids[op.Path] = true
		}
	}
	add := func(m map[string]*kvState, path, key string, counter bool) {
		if _, ok := m[path]; ok || path == "/" {
			return
		}
		m[path] = &kvState{}
		jobs = append(jobs, job{m, path, key, !counter && needKids[path]})
	}
	for _, op := range ops {
		add(nodes, op.Path, s.key(op.Path), false)
		if op.Kind == coord.OpCreate {
			par := coord.Parent(op.Path)
			add(nodes, par, s.key(par), false)
			if op.Mode&coord.Sequential != 0 {
				add(seqs, par, s.seqKey(par), true)
			}
		}
	}
	for _, p := range extra {
		add(nodes, p, s.key(p), false)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	for _, j := range jobs {
		wg.Add(1)
		go func(j job) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			q, cancel, e := s.opts(ctx)
			if e == nil {
				defer cancel()
				var kv *api.KVPair
				kv, _, e = s.cli.KV().Get(j.key, q)
				if e == nil {
					j.m[j.path].kv = kv
					if j.kids && kv != nil {
						var kids []string
						kids, _, _, e = s.children(ctx, j.path, 0)
						j.m[j.path].kids = len(kids)
					}
				}
			}
			if e != nil {
				mu.Lock()
				if err == nil {
					err = e
				}
				mu.Unlock()
			}
		}(j)
	}
	wg.Wait()
	return nodes, seqs, err
}

// txnOnce plans and commits once; retry is true when the state changed after
// it was read (nothing was applied).
func (s *Store) txnOnce(ctx context.Context, ops []coord.Op, sessID string) ([]coord.OpResult, bool, error) {
	var extra []string
	for {
		nodes, seqs, err := s.read(ctx, ops, extra)
		if err != nil {
			return nil, false, err
		}
		res, txn, missing, err := s.plan(nodes, seqs, ops, sessID)
		if _, failed := err.(*coord.TxnError); failed {
			// The keys were read one by one: confirm the failure on a
			// snapshot by reading them again and finding nothing moved.
			again, againSeqs, rerr := s.read(ctx, ops, extra)
			if rerr != nil {
				return nil, false, rerr
			}
			if !sameIndexes(nodes, again) || !sameIndexes(seqs, againSeqs) {
				continue
			}
		}
		if err != nil {
			return nil, false, err
		}
		if len(missing) > 0 {
			extra = append(extra, missing...)
			continue
		}
		q, cancel, err := s.opts(ctx)
		if err != nil {
			return nil, false, err
		}
		ok, resp, _, err := s.cli.Txn().Txn(txn, q)
		cancel()
		if err != nil {
			return nil, false, err
		}
		if ok {
			return res, false, nil
		}
		for _, e := range resp.Errors {
			switch {
			case strings.Contains(e.What, "Permission denied"), strings.Contains(e.What, "ACL"):
				return nil, false, fmt.Errorf("%w: %s", coord.ErrPermission, e.What)
			case strings.Contains(e.What, "invalid session"), strings.Contains(e.What, "Invalid session"):
				s.sessionLost(sessID)
				return nil, false, coord.ErrSessionExpired
			}
		}
		// A guard failed: the state changed since it was read. Plan again.
	}
}

// plan applies ops in order to the state read, as ZooKeeper would, and
// builds the guarded Consul transaction. missing lists sequential names
// that were not read yet.
func (s *Store) plan(nodes, seqs map[string]*kvState, ops []coord.Op, sessID string) ([]coord.OpResult, api.TxnOps, []string, error) {
	type node struct {
		exists, ephemeral bool
		ver               int64
		kids              int
		written           bool // created, set or deleted by this txn
	}
	state := map[string]*node{"/": {exists: true}}
	get := func(path string) *node {
		if n, ok := state[path]; ok {
			return n
		}
		n := &node{}
		if st, ok := nodes[path]; ok {
			n.kids = st.kids
			if st.kv != nil {
				n.exists, n.ver, n.ephemeral = true, int64(st.kv.Flags), st.kv.Session != ""
			}
		}
		state[path] = n
		return n
	}
	next := map[string]int64{}
	for par, st := range seqs {
		if st.kv != nil {
			n, err := strconv.ParseInt(string(st.kv.Value), 10, 64)
			if err != nil || n < 0 {
				return nil, nil, nil, fmt.Errorf("%w: corrupt sequence counter %s: %q", coord.ErrUnavailable, s.seqKey(par), st.kv.Value)
			}
			next[par] = n
		}
	}
	fail := func(i int, err error) ([]coord.OpResult, api.TxnOps, []string, error) {
		return nil, nil, nil, &coord.TxnError{Index: i, Op: ops[i], Err: err}
	}
	var txn api.TxnOps
	kvOp := func(o api.KVTxnOp) { txn = append(txn, &api.TxnOp{KV: &o}) }
	index := func(path string) uint64 {
		if st, ok := nodes[path]; ok && st.kv != nil {
			return st.kv.ModifyIndex
		}
		return 0
	}
	var parents []string // parents of created nodes, rewritten unchanged to move their index
	bumped := map[string]bool{}
	seqUsed := map[string]bool{}
	var missing []string
	res := make([]coord.OpResult, len(ops))
	for i, op := range ops {
		path := op.Path
		switch op.Kind {
		case coord.OpCreate:
			par := coord.Parent(path)
			pn := get(par)
			if !pn.exists {
				return fail(i, fmt.Errorf("%w: parent %s", coord.ErrNoNode, par))
			}
			if pn.ephemeral {
				return fail(i, fmt.Errorf("%w: parent %s", coord.ErrEphemeralParent, par))
			}
			if op.Mode&coord.Sequential != 0 {
				n := next[par]
				next[par] = n + 1
				seqUsed[par] = true
				path = coord.SequenceName(op.Path, n)
				if _, ok := nodes[path]; !ok {
					missing = append(missing, path)
					continue
				}
			}
			n := get(path)
			if n.exists {
				return fail(i, coord.ErrNodeExists)
			}
			*n = node{exists: true, ephemeral: op.Mode&coord.Ephemeral != 0, written: true}
			pn.kids++
			if par != "/" && !bumped[par] {
				bumped[par] = true
				parents = append(parents, par)
			}
			if n.ephemeral {
				kvOp(api.KVTxnOp{Verb: api.KVCheckNotExists, Key: s.key(path)})
				kvOp(api.KVTxnOp{Verb: api.KVLock, Key: s.key(path), Value: op.Data, Session: sessID})
			} else {
				kvOp(api.KVTxnOp{Verb: api.KVCAS, Key: s.key(path), Value: op.Data, Index: 0})
			}
			res[i] = coord.OpResult{Path: path, Stat: coord.Stat{Ephemeral: n.ephemeral}}
		case coord.OpSet, coord.OpCheck:
			n := get(path)
			if !n.exists {
				return fail(i, coord.ErrNoNode)
			}
			if op.Version != coord.AnyVersion && op.Version != n.ver {
				return fail(i, fmt.Errorf("%w: expected %d, is %d", coord.ErrBadVersion, op.Version, n.ver))
			}
			if op.Kind == coord.OpSet {
				n.ver++
				n.written = true
				kvOp(api.KVTxnOp{Verb: api.KVCAS, Key: s.key(path), Value: op.Data, Flags: uint64(n.ver), Index: index(path)})
			} else if !n.written {
				// (After a write by this txn the index has moved; the plan
				// checked the version.)
				kvOp(api.KVTxnOp{Verb: api.KVCheckIndex, Key: s.key(path), Index: index(path)})
			}
			res[i] = coord.OpResult{Path: path, Stat: coord.Stat{Version: n.ver, Ephemeral: n.ephemeral}}
		case coord.OpDelete:
			n := get(path)
			if !n.exists {
				return fail(i, coord.ErrNoNode)
			}
			if op.Version != coord.AnyVersion && op.Version != n.ver {
				return fail(i, fmt.Errorf("%w: expected %d, is %d", coord.ErrBadVersion, op.Version, n.ver))
			}
			if n.kids > 0 {
				return fail(i, coord.ErrNotEmpty)
			}
			*n = node{written: true}
			get(coord.Parent(path)).kids--
			delete(next, path)
			kvOp(api.KVTxnOp{Verb: api.KVDeleteCAS, Key: s.key(path), Index: index(path)})
			kvOp(api.KVTxnOp{Verb: api.KVDelete, Key: s.seqKey(path)})
			res[i] = coord.OpResult{Path: path}
		}
	}
	if len(missing) > 0 {
		return nil, nil, missing, nil
	}
	size := 0
	for _, par := range parents {
		if state[par].written || nodes[par] == nil || nodes[par].kv == nil {
			continue // written (or created) by this txn: already guarded
		}
		kv := nodes[par].kv
		size += len(kv.Value)
		kvOp(api.KVTxnOp{Verb: api.KVCAS, Key: kv.Key, Value: kv.Value, Flags: kv.Flags, Index: kv.ModifyIndex})
	}
	for par := range seqUsed {
		if _, ok := next[par]; !ok {
			continue // the parent is deleted by this txn
		}
		kvOp(api.KVTxnOp{Verb: api.KVCAS, Key: s.seqKey(par), Value: []byte(strconv.FormatInt(next[par], 10)), Index: seqIndex(seqs[par])})
	}
	for _, op := range ops {
		size += len(op.Data)
	}
	if size > s.limits.MaxTxnBytes {
		return fail(0, fmt.Errorf("%w: %d bytes with the parents rewritten, the limit is %d", coord.ErrTooLarge, size, s.limits.MaxTxnBytes))
	}
	return res, txn, nil, nil
}

func seqIndex(st *kvState) uint64 {
	if st == nil || st.kv == nil {
		return 0
	}
	return st.kv.ModifyIndex
}

// sameIndexes reports whether two reads of the same keys found each in the
// same state.
func sameIndexes(a, b map[string]*kvState) bool {
	if len(a) != len(b) {
		return false
	}
	for p, x := range a {
		y, ok := b[p]
		if !ok || (x.kv == nil) != (y.kv == nil) || x.kids != y.kids {
			return false
		}
		if x.kv != nil && x.kv.ModifyIndex != y.kv.ModifyIndex {
			return false
		}
	}
	return true
}
