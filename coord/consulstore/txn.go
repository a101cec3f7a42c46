package consulstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/consul/api"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/lifecycle"
	"github.com/coordkit/coord/internal/retry"
	"github.com/coordkit/coord/internal/txnplan"
)

// kvState is a key as read when planning a transaction.
type kvState struct {
	kv   *api.KVPair // nil: missing
	kids int         // children count (deletes only)
	// mark is the node's children mark (kidsKey), read with its counter
	// for a delete; nil: missing.
	mark *api.KVPair
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
	c, cancel := lifecycle.Bound(ctx, s.reqTO)
	defer cancel()
	if res, done, err := s.setsFast(c, ops); done {
		if err != nil {
			return nil, coord.Errorf("txn", ops[0].Path, mapErr(ctx, err))
		}
		return res, nil
	}
	if res, done, err := s.createsFast(c, ops, sessID); done {
		if err != nil {
			return nil, coord.Errorf("txn", ops[0].Path, mapErr(ctx, err))
		}
		return res, nil
	}
	if res, done, err := s.deletesFast(c, ops); done {
		if err != nil {
			return nil, coord.Errorf("txn", ops[0].Path, mapErr(ctx, err))
		}
		return res, nil
	}
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

// read fetches every key the ops depend on, in as few read transactions as
// Consul takes (getKeys), then lists the children of the nodes to delete:
// subtrees the child counters bound to what the ops delete with get-tree,
// many in one read transaction, the others one listing of key names each.
// A node to delete is read before its children are listed, so that a child
// created after the listing has moved the node's counter, which the commit
// checks.
func (s *Store) read(ctx context.Context, ops []coord.Op, extra []string) (nodes, seqs map[string]*kvState, err error) {
	nodes, seqs = map[string]*kvState{}, map[string]*kvState{}
	type job struct {
		m    map[string]*kvState
		path string
		key  string
		mark bool // fills m[path].mark, not .kv
	}
	var jobs []job
	needKids := map[string]bool{}
	for _, op := range ops {
		if op.Kind == coord.OpDelete {
			needKids[op.Path] = true
		}
	}
	add := func(m map[string]*kvState, path, key string, counter bool) {
		if _, ok := m[path]; ok || (path == "/" && !counter) {
			return
		}
		m[path] = &kvState{}
		jobs = append(jobs, job{m: m, path: path, key: key})
	}
	for _, op := range ops {
		add(nodes, op.Path, s.key(op.Path), false)
		switch op.Kind {
		case coord.OpCreate:
			// A sequential create moves its parent's child counter, a
			// plain one the parent's children mark; a delete of the
			// parent checks both.
			par := coord.Parent(op.Path)
			add(nodes, par, s.key(par), false)
			if op.Mode&coord.Sequential != 0 { // a plain create's plan needs no counter
				add(seqs, par, s.seqKey(par), true)
			}
		case coord.OpDelete:
			add(seqs, op.Path, s.seqKey(op.Path), true)
			jobs = append(jobs, job{m: seqs, path: op.Path, key: s.kidsKey(op.Path), mark: true})
		}
	}
	for _, p := range extra {
		add(nodes, p, s.key(p), false)
	}
	keys := make([]string, len(jobs))
	for i, j := range jobs {
		keys[i] = j.key
	}
	kvs, err := s.getKeys(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	for i, j := range jobs {
		if j.mark {
			j.m[j.path].mark = kvs[i]
		} else {
			j.m[j.path].kv = kvs[i]
		}
	}
	return nodes, seqs, s.countChildren(ctx, nodes, seqs, needKids)
}

// countChildren counts the children of the nodes to delete (needKids)
// that nodes says exist, into their kvState: subtrees the child counters
// and marks in seqs bound to what the ops delete with get-tree, many in
// one read transaction, the others one listing of key names each. The
// state in nodes and seqs must have been read (or last seen) before this
// is called, and the commit must check it: a child created after the
// listing has moved its parent's counter or mark.
func (s *Store) countChildren(ctx context.Context, nodes, seqs map[string]*kvState, needKids map[string]bool) (err error) {
	// A node deleted with its parent is counted from the listing of the
	// highest node of that chain (the whole subtree, read after every key
	// was), not listed on its own: deleting answers with their response
	// directory lists each directory once.
	top := func(p string) string {
		for p != "/" && needKids[coord.Parent(p)] {
			p = coord.Parent(p)
		}
		return p
	}
	subtree := map[string]bool{} // tops with a node below them deleted too
	for p := range needKids {
		if t := top(p); t != p {
			subtree[t] = true
		}
	}
	// A top whose subtree is small by its child counters is read with
	// get-tree in read transactions, many in one request (treeCounts); the
	// rest are listed one request each.
	deletedKids := map[string][]string{} // the existing children each node loses here
	for p := range needKids {
		if st := nodes[p]; p != "/" && st != nil && st.kv != nil {
			deletedKids[coord.Parent(p)] = append(deletedKids[coord.Parent(p)], p)
		}
	}
	var trees []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	for p := range needKids {
		if st := nodes[p]; p == "/" || st == nil || st.kv == nil || top(p) != p {
			continue
		}
		if smallSubtree(p, seqs, deletedKids) {
			trees = append(trees, p)
			continue
		}
		wg.Add(1)
		go func(path string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// The read found the node: only its children are listed.
			q, cancel, e := s.opts(ctx)
			counts := map[string]int{}
			if e == nil {
				if subtree[path] {
					counts, e = s.countKids(ctx, q, path)
				} else {
					var kids []string
					kids, _, e = s.list(ctx, q, path)
					counts[path] = len(kids)
				}
				cancel()
			}
			mu.Lock()
			defer mu.Unlock()
			for p, n := range counts {
				if st, ok := nodes[p]; ok && needKids[p] {
					st.kids = n
				}
			}
			if e != nil && err == nil {
				err = e
			}
		}(p)
	}
	if len(trees) > 0 {
		counts, e := s.treeCounts(ctx, trees)
		mu.Lock()
		if e != nil && err == nil {
			err = e
		}
		for p, n := range counts {
			if st, ok := nodes[p]; ok && needKids[p] {
				st.kids = n
			}
		}
		mu.Unlock()
	}
	wg.Wait()
	return err
}

// smallSubtree reports whether the child counters and marks read say that
// the subtree of path, a node to delete, holds only nodes this transaction
// deletes: no plain child was ever created under it (its children mark is
// missing), and its counter is missing (no sequential child either) or
// counts no more creates than it has children deleted here, each of which
// is small too. Every create moves its parent's counter or mark, so they
// bound what a subtree written through coord can hold; a key written under
// it by other means is still found and counted, at the cost of reading its
// value.
func smallSubtree(path string, seqs map[string]*kvState, deletedKids map[string][]string) bool {
	c := seqs[path]
	if c == nil || c.mark != nil {
		return false
	}
	if c.kv == nil {
		return true
	}
	made, err := strconv.ParseInt(string(c.kv.Value), 10, 64)
	if err != nil || made > int64(len(deletedKids[path])) {
		return false
	}
	for _, p := range deletedKids[path] {
		if !smallSubtree(p, seqs, deletedKids) {
			return false
		}
	}
	return true
}

// treeCounts reads the subtrees of paths with get-tree, as many as a read
// transaction takes in each request, and returns how many children each
// node in them has that has any. The reads are one snapshot per request,
// made after the nodes and their counters were read.
func (s *Store) treeCounts(ctx context.Context, paths []string) (map[string]int, error) {
	counts := map[string]int{}
	seen := map[string]bool{}
	for start := 0; start < len(paths); start += serverTxnOps {
		chunk := paths[start:min(start+serverTxnOps, len(paths))]
		ops := make(api.TxnOps, len(chunk))
		for i, p := range chunk {
			ops[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetTree, Key: s.key(p) + "/"}}
		}
		ok, resp, err := s.readTxn(ctx, ops)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, readFailed(resp, chunk[0])
		}
		for _, r := range resp.Results {
			if r.KV == nil {
				continue
			}
			rel, found := strings.CutPrefix(r.KV.Key, s.key("/")+"/")
			if !found {
				return nil, fmt.Errorf("%w: a read of %s answered the foreign key %s", coord.ErrUnavailable, chunk[0], r.KV.Key)
			}
			countPath(counts, seen, "/", rel)
		}
	}
	return counts, nil
}

// countPath counts in counts, once each (seen), the nodes on the way from
// parent down the relative key rel, each as a child of the one above it.
func countPath(counts map[string]int, seen map[string]bool, parent, rel string) {
	for name := range strings.SplitSeq(rel, "/") {
		if name == "" {
			return
		}
		child := coord.Join(parent, name)
		if !seen[child] {
			seen[child] = true
			counts[parent]++
		}
		parent = child
	}
}

// countKids lists the whole subtree of path in one request and returns how
// many children each node in it has that has any (path itself included).
func (s *Store) countKids(ctx context.Context, q *api.QueryOptions, path string) (map[string]int, error) {
	base := s.key(path) + "/"
	var keys []string
	err := retry.Do(q.Context(), transientRead, func() error {
		var err error
		keys, _, err = s.cli.KV().Keys(base, "", q)
		return err
	})
	if err != nil {
		return nil, mapErr(ctx, err)
	}
	seen := map[string]bool{}
	counts := map[string]int{}
	for _, k := range keys {
		countPath(counts, seen, path, strings.TrimPrefix(k, base))
	}
	return counts, nil
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
		for len(missing) > 0 && err == nil && assumeMissing(nodes, missing) {
			// The names sequential creates would take are taken as
			// missing, which the commit guards ("not exists"): no read
			// of them, unless the commit finds one taken.
			extra = append(extra, missing...)
			res, txn, missing, err = s.plan(nodes, seqs, ops, sessID)
		}
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
		ok, resp, err := s.commit(ctx, txn, sessID)
		if err != nil {
			return nil, false, err
		}
		if ok {
			s.learn(ops, res, txn, resp)
			return res, false, nil
		}
		// A guard failed: the state changed since it was read. Plan again.
	}
}

// assumeMissing adds paths to nodes as missing, unless one is there
// already (then only a read can tell).
func assumeMissing(nodes map[string]*kvState, paths []string) bool {
	for _, p := range paths {
		if _, ok := nodes[p]; ok {
			return false
		}
	}
	for _, p := range paths {
		nodes[p] = &kvState{}
	}
	return true
}

// knownTxnOps bounds the transactions createsFast plans on remembered state.
const knownTxnOps = 16

// createsFast commits a small Txn of creates, sets and checks (no delete)
// planned on the state the store remembers (knownKeys: the parents, their
// child counters, the nodes set or checked), without the planning read.
// The nodes to create, and the names sequential creates take, are assumed
// missing; a counter the store never saw, unset. The commit guards all of
// it as a planned Txn does (every key's index, "not exists" for what is
// assumed missing), so a stale assumption fails it and nothing is applied.
// done is false, with nothing applied, when it does not apply, the plan
// fails (only a read can tell whether that is so) or the commit is
// refused; the Txn then reads and plans, and reports what it finds.
func (s *Store) createsFast(ctx context.Context, ops []coord.Op, sessID string) (res []coord.OpResult, done bool, err error) {
	nodes, seqs, ok := s.knownState(ops)
	if !ok {
		return nil, false, nil
	}
	for {
		res, txn, missing, err := s.plan(nodes, seqs, ops, sessID)
		if err != nil {
			return nil, false, nil
		}
		if len(missing) > 0 {
			if !assumeMissing(nodes, missing) {
				return nil, false, nil
			}
			continue
		}
		return s.commitKnown(ctx, ops, res, txn, sessID)
	}
}

// remembered is the key's state as the store last saw it, if it did.
func (s *Store) remembered(key string) (*api.KVPair, bool) {
	k, ok := s.known.get(key)
	if !ok {
		return nil, false
	}
	return &api.KVPair{Key: key, ModifyIndex: k.index, Flags: uint64(k.version), Session: k.session, Value: k.value}, true
}

// deletesFast commits a small Txn of deletes and checks of nodes the store
// remembers without the planning read: the nodes' state, and their child
// counters and marks, are taken as last seen (a counter or mark never seen
// as missing), the children are counted after that (countChildren), and
// the commit checks all of it, so a child made since, or a stale memory,
// fails it and nothing is applied. A node deleted with its parent is left
// to the read. done is false, with nothing applied, when it does not
// apply, a listing or the plan fails (only a read can tell whether that
// is so) or the commit is refused; the Txn then reads and plans, and
// reports what it finds.
func (s *Store) deletesFast(ctx context.Context, ops []coord.Op) (res []coord.OpResult, done bool, err error) {
	if len(ops) > knownTxnOps {
		return nil, false, nil
	}
	needKids := map[string]bool{}
	for _, op := range ops {
		switch op.Kind {
		case coord.OpDelete:
			needKids[op.Path] = true
		case coord.OpCheck:
		default:
			return nil, false, nil
		}
	}
	if len(needKids) == 0 {
		return nil, false, nil
	}
	nodes, seqs := map[string]*kvState{}, map[string]*kvState{}
	for _, op := range ops {
		if op.Path == "/" || needKids[coord.Parent(op.Path)] {
			return nil, false, nil
		}
		if _, seen := nodes[op.Path]; !seen {
			kv, ok := s.remembered(s.key(op.Path))
			if !ok {
				return nil, false, nil
			}
			nodes[op.Path] = &kvState{kv: kv}
		}
		if op.Kind == coord.OpDelete {
			counter, _ := s.remembered(s.seqKey(op.Path))
			if counter != nil && counter.Value == nil {
				return nil, false, nil // seen, but its value was not kept
			}
			mark, _ := s.remembered(s.kidsKey(op.Path))
			seqs[op.Path] = &kvState{kv: counter, mark: mark}
		}
	}
	if s.countChildren(ctx, nodes, seqs, needKids) != nil {
		return nil, false, nil
	}
	res, txn, missing, err := s.plan(nodes, seqs, ops, "")
	if err != nil || len(missing) > 0 {
		return nil, false, nil
	}
	return s.commitKnown(ctx, ops, res, txn, "")
}

// commitKnown commits a transaction planned on remembered state. Refused
// (ok false, nothing applied), it forgets every key the transaction named
// and returns done false; the Txn then reads and plans. Failed, it returns
// the error, done.
func (s *Store) commitKnown(ctx context.Context, ops []coord.Op, res []coord.OpResult, txn api.TxnOps, sessID string) ([]coord.OpResult, bool, error) {
	ok, resp, err := s.commit(ctx, txn, sessID)
	if err != nil || !ok {
		for _, op := range txn {
			s.known.forget(op.KV.Key)
		}
		return nil, err != nil, err
	}
	s.learn(ops, res, txn, resp)
	return res, true, nil
}

// knownState is the state a plan of ops needs, as the store remembers it;
// ok is false when it does not remember enough, or ops delete (a delete
// needs the node's children, which only a read gives) or are many.
func (s *Store) knownState(ops []coord.Op) (nodes, seqs map[string]*kvState, ok bool) {
	if len(ops) > knownTxnOps {
		return nil, nil, false
	}
	nodes, seqs = map[string]*kvState{}, map[string]*kvState{}
	creates := false
	for _, op := range ops {
		switch op.Kind {
		case coord.OpDelete:
			return nil, nil, false
		case coord.OpCreate:
			creates = true
			par := coord.Parent(op.Path)
			if _, done := nodes[par]; !done && par != "/" {
				kv, ok := s.remembered(s.key(par))
				if !ok {
					return nil, nil, false
				}
				nodes[par] = &kvState{kv: kv}
			}
			if _, done := seqs[par]; !done && op.Mode&coord.Sequential != 0 {
				kv, ok := s.remembered(s.seqKey(par))
				if ok && kv.Value == nil {
					return nil, nil, false // seen, but its value was not kept
				}
				seqs[par] = &kvState{kv: kv} // never seen: taken as unset
			}
			if _, done := nodes[op.Path]; !done && op.Mode&coord.Sequential == 0 {
				kv, _ := s.remembered(s.key(op.Path))
				nodes[op.Path] = &kvState{kv: kv} // nil: taken as missing
			}
		default:
			if _, done := nodes[op.Path]; !done {
				kv, ok := s.remembered(s.key(op.Path))
				if !ok || op.Path == "/" {
					return nil, nil, false
				}
				nodes[op.Path] = &kvState{kv: kv}
			}
		}
	}
	return nodes, seqs, creates
}

// commit sends a planned transaction. ok is false, with a nil error, when a
// guard failed: nothing was applied.
func (s *Store) commit(ctx context.Context, txn api.TxnOps, sessID string) (bool, *api.TxnResponse, error) {
	if f := s.beforeCommit.Swap(nil); f != nil {
		(*f)() // a test's fault: another writer between plan and commit
	}
	// A failed commit is repeated only when it cannot have been applied.
	var ok bool
	var resp *api.TxnResponse
	var err error
	if s.dropWrite.CompareAndSwap(true, false) {
		// A test's fault: the request lost on its way, the connection dead.
		err = fmt.Errorf("PUT /v1/txn: the request was dropped by a test fault: %w", io.ErrUnexpectedEOF)
	} else {
		ok, resp, err = s.sendTxn(ctx, txn, notApplied)
	}
	if err == nil {
		// A test's fault: applied (or refused), and the answer lost on the
		// way; then (*f)(), what else the test does to the link at that
		// instant.
		lose := &s.loseReply
		if !ok {
			lose = &s.loseRefusal
		}
		if f := lose.Load(); f != nil && lose.CompareAndSwap(f, nil) {
			(*f)()
			ok, err = false, fmt.Errorf("the answer to PUT /v1/txn was lost by a test fault: %w", io.ErrUnexpectedEOF)
		}
	}
	if err != nil {
		if mapped := mapErr(ctx, err); errors.Is(mapped, coord.ErrUnavailable) {
			// Sent, and no answer: it may have been applied.
			return false, nil, fmt.Errorf("%w: %w", coord.ErrOutcomeUnknown, mapped)
		}
		return false, nil, err
	}
	if ok {
		return true, resp, nil
	}
	for _, e := range resp.Errors {
		switch {
		case strings.Contains(e.What, "Permission denied"), strings.Contains(e.What, "ACL"):
			return false, nil, fmt.Errorf("%w: %s", coord.ErrPermission, e.What)
		case strings.Contains(e.What, "invalid session"), strings.Contains(e.What, "Invalid session"):
			s.sessionLost(sessID)
			return false, nil, coord.ErrSessionExpired
		}
	}
	return false, resp, nil
}

// setsFast commits a Txn of only sets and checks, on distinct nodes whose
// state is known (knownKeys) and matches the versions asked, without the
// planning read: a set is a check-and-set on the index last seen, a check an
// index check. done is false, with nothing applied, when it does not apply
// or a key has moved since it was seen; the Txn then reads and plans, and
// reports what it finds.
func (s *Store) setsFast(ctx context.Context, ops []coord.Op) (res []coord.OpResult, done bool, err error) {
	if len(ops) > serverTxnOps {
		return nil, false, nil
	}
	txn := make(api.TxnOps, len(ops))
	res = make([]coord.OpResult, len(ops))
	paths := make(map[string]bool, len(ops))
	for i, op := range ops {
		if (op.Kind != coord.OpSet && op.Kind != coord.OpCheck) || op.Path == "/" || paths[op.Path] {
			return nil, false, nil
		}
		paths[op.Path] = true
		key := s.key(op.Path)
		k, ok := s.known.get(key)
		if !ok || (op.Version != coord.AnyVersion && op.Version != k.version) {
			return nil, false, nil
		}
		st := coord.Stat{Version: k.version, Ephemeral: k.session != "", Owner: k.session}
		if op.Kind == coord.OpSet {
			st.Version++
			txn[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: key, Value: op.Data, Flags: uint64(st.Version), Index: k.index}}
		} else {
			txn[i] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCheckIndex, Key: key, Index: k.index}}
		}
		res[i] = coord.OpResult{Path: op.Path, Stat: st}
	}
	if s.checkBody(txn) != nil {
		return nil, false, nil // the planned Txn refuses it
	}
	ok, resp, err := s.commit(ctx, txn, "")
	if err != nil || !ok {
		for p := range paths {
			s.known.forget(s.key(p))
		}
		return nil, err != nil, err
	}
	s.learn(ops, res, txn, resp)
	return res, true, nil
}

// learn records in knownKeys what a committed Txn (txn, as sent) made of
// its nodes, the Stats it returned, and of the child counters it wrote, at
// the indexes the reply gives.
func (s *Store) learn(ops []coord.Op, res []coord.OpResult, txn api.TxnOps, resp *api.TxnResponse) {
	index := make(map[string]uint64, len(resp.Results))
	for _, r := range resp.Results {
		if r.KV != nil {
			index[r.KV.Key] = max(index[r.KV.Key], r.KV.ModifyIndex)
			s.seen.See(int64(r.KV.ModifyIndex))
		}
	}
	for i, op := range ops {
		switch op.Kind {
		case coord.OpDelete:
			// The node's child counter and children mark went with it.
			s.known.forget(s.key(op.Path))
			s.known.forget(s.seqKey(op.Path))
			s.known.forget(s.kidsKey(op.Path))
		case coord.OpCreate, coord.OpSet:
			key := s.key(res[i].Path)
			if n := index[key]; n != 0 {
				s.known.put(key, known{index: n, version: res[i].Stat.Version, session: res[i].Stat.Owner})
			} else {
				s.known.forget(key)
			}
		}
	}
	// The child counters it wrote, with their values: the next create
	// under those parents plans on them.
	seqRoot := s.seqKey("/")
	for _, op := range txn {
		kv := op.KV
		if kv.Verb != api.KVCAS || (kv.Key != seqRoot && !strings.HasPrefix(kv.Key, seqRoot+"/")) {
			continue
		}
		if n := index[kv.Key]; n != 0 {
			s.known.put(kv.Key, known{index: n, value: kv.Value})
		}
	}
}

// known is a key's state as a reply showed it. At one ModifyIndex a key has
// one value, flags (the node's version) and session, so a check-and-set on
// that index applies only if the key is still in that state.
type known struct {
	index   uint64
	version int64
	session string
	value   []byte // kept when small (a child counter's), else nil
}

// maxKnownValue is the largest value knownKeys keeps: enough for a child
// counter, which a create plans on.
const maxKnownValue = 24

// maxKnown bounds knownKeys; when full, it starts again empty.
const maxKnown = 1 << 14

// knownKeys is the last state replies showed of recently read or written
// keys, which lets a Txn of sets and checks skip the planning read
// (setsFast). An entry may be stale (another client wrote the key since):
// the commit's index checks then fail and nothing is applied.
type knownKeys struct {
	mu sync.Mutex
	m  map[string]known
}

func (c *knownKeys) get(key string) (known, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.m[key]
	return k, ok
}

func (c *knownKeys) put(key string, k known) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[key]; ok && old.index > k.index {
		return // a newer state is known
	}
	if c.m == nil || len(c.m) >= maxKnown {
		c.m = make(map[string]known)
	}
	c.m[key] = k
}

// see records a key as a read found it (nil: missing).
func (c *knownKeys) see(key string, kv *api.KVPair) {
	if kv == nil {
		c.forget(key)
		return
	}
	k := known{index: kv.ModifyIndex, version: int64(kv.Flags), session: kv.Session}
	if len(kv.Value) <= maxKnownValue {
		k.value = bytes.Clone(kv.Value)
		if k.value == nil {
			k.value = []byte{}
		}
	}
	c.put(key, k)
}

func (c *knownKeys) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}

// plan plans the ops on the state read (see package txnplan) and builds the
// guarded Consul transaction. missing lists paths to read before planning
// again.
func (s *Store) plan(nodes, seqs map[string]*kvState, ops []coord.Op, sessID string) ([]coord.OpResult, api.TxnOps, []string, error) {
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
	read := func(path string) (txnplan.Node, bool) {
		st, ok := nodes[path]
		if !ok {
			return txnplan.Node{}, false
		}
		n := txnplan.Node{Kids: int64(st.kids)}
		if st.kv != nil {
			n.Exists, n.Ephemeral, n.Owner, n.Version = true, st.kv.Session != "", st.kv.Session, int64(st.kv.Flags)
		}
		return n, true
	}
	steps, res, missing, err := txnplan.Plan(ops, sessID, read, func(par string) int64 { return next[par] })
	if err != nil || len(missing) > 0 {
		return nil, nil, missing, err
	}
	index := func(path string) uint64 {
		if st, ok := nodes[path]; ok && st.kv != nil {
			return st.kv.ModifyIndex
		}
		return 0
	}
	var txn api.TxnOps
	kvOp := func(o api.KVTxnOp) { txn = append(txn, &api.TxnOp{KV: &o}) }
	written := map[string]bool{}
	var parents []string // of created nodes, checked unchanged
	for _, st := range steps {
		key := s.key(st.Path)
		switch st.Op.Kind {
		case coord.OpCreate:
			if st.After.Ephemeral {
				kvOp(api.KVTxnOp{Verb: api.KVCheckNotExists, Key: key})
				kvOp(api.KVTxnOp{Verb: api.KVLock, Key: key, Value: st.Op.Data, Session: sessID})
			} else {
				kvOp(api.KVTxnOp{Verb: api.KVCAS, Key: key, Value: st.Op.Data, Index: 0})
			}
			if par := coord.Parent(st.Path); !slices.Contains(parents, par) {
				parents = append(parents, par)
			}
		case coord.OpSet:
			kvOp(api.KVTxnOp{Verb: api.KVCAS, Key: key, Value: st.Op.Data, Flags: uint64(st.After.Version), Index: index(st.Path)})
		case coord.OpCheck:
			if !st.Written { // after a write by this txn the index has moved; the plan checked the version
				kvOp(api.KVTxnOp{Verb: api.KVCheckIndex, Key: key, Index: index(st.Path)})
			}
		case coord.OpDelete:
			// Checked, then deleted: Consul's delete-cas of a key that is
			// gone succeeds, and so would a delete of a node another
			// client deleted since it was read.
			kvOp(api.KVTxnOp{Verb: api.KVCheckIndex, Key: key, Index: index(st.Path)})
			kvOp(api.KVTxnOp{Verb: api.KVDelete, Key: key})
			// The child counter as read: a child created since has moved
			// it (or made it), and fails the delete.
			c := seqs[st.Path]
			if c != nil && c.kv != nil {
				kvOp(api.KVTxnOp{Verb: api.KVDeleteCAS, Key: s.seqKey(st.Path), Index: c.kv.ModifyIndex})
			} else {
				kvOp(api.KVTxnOp{Verb: api.KVCheckNotExists, Key: s.seqKey(st.Path)})
			}
			// And the children mark as read: a plain child created since
			// has moved it (or made it).
			if c != nil && c.mark != nil {
				kvOp(api.KVTxnOp{Verb: api.KVDeleteCAS, Key: s.kidsKey(st.Path), Index: c.mark.ModifyIndex})
			} else {
				kvOp(api.KVTxnOp{Verb: api.KVCheckNotExists, Key: s.kidsKey(st.Path)})
			}
		}
		if st.Op.Kind != coord.OpCheck {
			written[st.Path] = true
		}
	}
	for _, par := range parents {
		st := nodes[par]
		if par == "/" || written[par] || st == nil || st.kv == nil {
			continue // the root, or written (or created) by this txn: guarded already
		}
		kvOp(api.KVTxnOp{Verb: api.KVCheckIndex, Key: st.kv.Key, Index: st.kv.ModifyIndex})
	}
	// A sequential create moves its parent's child counter past the
	// numbers handed out, under check-and-set (its name comes from the
	// counter's value). A plain create moves the parent's children mark
	// instead, by a set of a value never written before: plain creates
	// under one parent do not refuse one another (under check-and-set they
	// committed one at a time), and a concurrent delete of the parent,
	// which checks the counter and the mark as it read them, fails instead
	// of orphaning the child. (The value must be new: Consul leaves the
	// index of a key rewritten unchanged where it was.)
	counters := txnplan.Counters(steps)
	for _, par := range slices.Sorted(maps.Keys(counters)) {
		kvOp(api.KVTxnOp{Verb: api.KVCAS, Key: s.seqKey(par), Value: []byte(strconv.FormatInt(counters[par], 10)), Index: seqIndex(seqs[par])})
	}
	var marked []string
	for _, st := range steps {
		if par := coord.Parent(st.Path); st.Op.Kind == coord.OpCreate && st.Seq < 0 && par != "/" && !slices.Contains(marked, par) {
			marked = append(marked, par)
			kvOp(api.KVTxnOp{Verb: api.KVSet, Key: s.kidsKey(par), Value: s.newMark()})
		}
	}
	if err := s.checkBody(txn); err != nil {
		return nil, nil, nil, &coord.TxnError{Index: 0, Op: ops[0], Err: err}
	}
	return res, txn, nil, nil
}

// checkBody refuses, before it is sent, a transaction whose request body
// would exceed the agent's limit: the agent drops the connection while the
// body is still being written, which would look like a lost reply. Data is
// counted against Limits already; long keys can still push the body over.
func (s *Store) checkBody(txn api.TxnOps) error {
	rough := 0
	for _, op := range txn {
		rough += len(op.KV.Key) + (len(op.KV.Value)+2)/3*4 + 128
	}
	if rough < s.maxReq/2 {
		return nil
	}
	body, err := json.Marshal(txn)
	if err != nil {
		return fmt.Errorf("%w: %v", coord.ErrInvalidArgument, err)
	}
	if len(body) > s.maxReq-1024 {
		return fmt.Errorf("%w: a request body of %d bytes (keys and data), the agent's limit is %d", coord.ErrTooLarge, len(body), s.maxReq)
	}
	return nil
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
		if (x.mark == nil) != (y.mark == nil) || (x.mark != nil && x.mark.ModifyIndex != y.mark.ModifyIndex) {
			return false
		}
	}
	return true
}
