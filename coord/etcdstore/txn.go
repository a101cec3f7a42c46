package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"

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
	if f := s.beforeCommit.Load(); f != nil && s.beforeCommit.CompareAndSwap(f, nil) {
		(*f)() // a test's fault: another client writes after the plan
	}
	var resp *clientv3.TxnResponse
	var err error
	if s.dropWrite.CompareAndSwap(true, false) {
		// A test's fault: the request lost on its way, the connection dead.
		err = status.Error(codes.Unavailable, "error reading from server: EOF (request dropped by a test fault)")
	} else {
		resp, err = s.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	}
	if err == nil {
		// A test's fault: applied (or refused), and the answer lost on the
		// way; then (*f)(), what else the test does to the link at that
		// instant.
		lose := &s.loseReply
		if !resp.Succeeded {
			lose = &s.loseRefusal
		}
		if f := lose.Load(); f != nil && lose.CompareAndSwap(f, nil) {
			(*f)()
			resp, err = nil, status.Error(codes.Unavailable, "error reading from server: EOF (answer lost by a test fault)")
		}
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
	// remembered: the state is what the store remembers, not a read (see
	// knownPlan); rev is then 0. guessed: some nodes, names that
	// sequential creates would take, were not read but assumed missing
	// (see assumeMissing).
	remembered, guessed bool
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
		fill = append(fill, func(rr *pb.RangeResponse) { *st = stateOf(rr) })
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
	s.rememberPlan(p)
	return p, nil
}

// txnOnce plans and commits the transaction once. retry is true when the
// state changed after it was read (nothing was applied).
//
// A small transaction is committed without a read first where it can be:
// one without deletes is planned on the state the store remembers
// (knownPlan), and the names sequential creates would take are assumed
// free (assumeMissing). Its compares refuse the commit if any of that is
// not so, and its Else branch then reads every key the plan names, on
// which it is planned again: a sequential create is one request, and two
// when another client moved the counter, not three.
func (s *Store) txnOnce(ctx context.Context, ops []coord.Op, lease clientv3.LeaseID) ([]coord.OpResult, bool, error) {
	var extra []string
	guess := len(ops) <= knownOps
	var p *plan
	if guess {
		p = s.knownPlan(ops)
	}
	for {
		if p == nil {
			var err error
			if p, err = s.read(ctx, ops, extra); err != nil {
				return nil, false, err
			}
		}
		steps, res, then, missing, err := s.simulate(p, ops, lease)
		if len(missing) > 0 { // sequential names not read yet
			extra = append(extra, missing...)
			if guess && s.assumeMissing(p, missing) {
				continue
			}
			p = nil // read them too
			continue
		}
		if err != nil {
			if p.remembered {
				// A failure planned on remembered state may be out of
				// date: only the server's state can tell.
				p = nil
				continue
			}
			return nil, false, err
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
		var els []clientv3.Op
		var keys []planKey
		if p.remembered || p.guessed {
			keys, els = s.planReads(p)
			if len(els) > s.serverOps || requestBytes(cmps, then, els) > s.reqBytes {
				guess, p = false, nil // too large to read in the Else branch: read first
				continue
			}
		}
		resp, err := s.commit(ctx, cmps, then, els)
		if err != nil {
			return nil, false, err
		}
		if resp.Succeeded {
			s.rememberCommit(p, steps, lease, resp.Header.Revision)
			return res, false, nil
		}
		if els == nil {
			return res, true, nil
		}
		p = s.elsePlan(resp, keys)
	}
}

// simulate plans the ops on the state read (see package txnplan) and
// returns the results and the etcd ops to commit. missing lists paths to
// read before planning again.
func (s *Store) simulate(p *plan, ops []coord.Op, lease clientv3.LeaseID) ([]txnplan.Step, []coord.OpResult, []clientv3.Op, []string, error) {
	next := map[string]int64{}
	for par, kv := range p.seq {
		if kv.exists {
			n, err := strconv.ParseInt(string(kv.value), 10, 64)
			if err != nil || n < 0 {
				return nil, nil, nil, nil, fmt.Errorf("%w: corrupt sequence counter %s: %q", coord.ErrUnavailable, s.seqKey(par), kv.value)
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
		return nil, nil, nil, missing, err
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
	return steps, res, then, nil, nil
}

// knownOps bounds the transactions planned on remembered state: their Else
// branch reads every key the plan names, and must stay well inside the
// server's limits.
const knownOps = 16

// knownLimit bounds the keys whose state a store remembers; past it the
// memory starts afresh.
const knownLimit = 16384

// knownKeys is the state of the keys the store last read in a plan or wrote
// in a transaction, each with the revision it was seen at. It only saves
// requests: a commit planned on it compares every key's mod revision, so a
// state that is out of date refuses the commit, and nothing is applied.
type knownKeys struct {
	mu sync.Mutex
	m  map[string]knownKey
}

type knownKey struct {
	st kvState
	at int64 // the revision it was seen at
}

// see records the state of key at revision at, unless a later one is known.
func (k *knownKeys) see(key string, st kvState, at int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old, ok := k.m[key]
	if ok && old.at > at {
		return
	}
	if k.m == nil || (!ok && len(k.m) >= knownLimit) {
		k.m = make(map[string]knownKey)
	}
	k.m[key] = knownKey{st: st, at: at}
}

// get returns the remembered state of key.
func (k *knownKeys) get(key string) (kvState, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	kk, ok := k.m[key]
	return kk.st, ok
}

// knownPlan plans ops on the state the store remembers, or returns nil if
// it lacks some of it, or the transaction deletes (a delete needs the
// number of children, which only a read gives) or is large. A node to be
// created that it knows nothing of is taken as missing, and a sequence
// counter it knows nothing of as unset: a missing key's mod revision is 0,
// which the commit compares.
func (s *Store) knownPlan(ops []coord.Op) *plan {
	if len(ops) > knownOps {
		return nil
	}
	p := &plan{kvs: map[string]*kvState{}, seq: map[string]*kvState{}, kids: map[string]int64{}, remembered: true}
	node := func(path string, orMissing bool) bool {
		if _, ok := p.kvs[path]; ok || path == "/" {
			return true
		}
		st, ok := s.known.get(s.nodeKey(path))
		if !ok && !orMissing {
			return false
		}
		p.kvs[path] = &st
		return true
	}
	for _, op := range ops {
		switch op.Kind {
		case coord.OpDelete:
			return nil
		case coord.OpCreate:
			par := coord.Parent(op.Path)
			if !node(par, false) {
				return nil
			}
			if op.Mode&coord.Sequential != 0 {
				if _, ok := p.seq[par]; !ok {
					st, _ := s.known.get(s.seqKey(par))
					p.seq[par] = &st
				}
				continue
			}
			node(op.Path, true)
		default:
			if !node(op.Path, false) {
				return nil
			}
		}
	}
	return p
}

// assumeMissing adds to a plan the paths it lacks (the names that
// sequential creates would take) as missing, which the commit's compares
// check. It reports false if one was in the plan already (planning again
// would not help), or the plan deletes (the number of children that a
// delete needs is not read in the Else branch).
func (s *Store) assumeMissing(p *plan, missing []string) bool {
	if len(p.kids) > 0 {
		return false
	}
	for _, path := range missing {
		if _, ok := p.kvs[path]; ok {
			return false
		}
	}
	for _, path := range missing {
		p.kvs[path] = &kvState{}
	}
	p.guessed = true
	return true
}

// planKey names one key of a plan: a node, or a parent's sequence counter.
type planKey struct {
	path string
	seq  bool
}

// planReads returns the reads of every key a plan holds (it deletes
// nothing), for a commit's Else branch, and what each reads.
func (s *Store) planReads(p *plan) ([]planKey, []clientv3.Op) {
	var keys []planKey
	var reads []clientv3.Op
	for _, path := range slices.Sorted(maps.Keys(p.kvs)) {
		keys, reads = append(keys, planKey{path, false}), append(reads, clientv3.OpGet(s.nodeKey(path)))
	}
	for _, par := range slices.Sorted(maps.Keys(p.seq)) {
		keys, reads = append(keys, planKey{par, true}), append(reads, clientv3.OpGet(s.seqKey(par)))
	}
	return keys, reads
}

// elsePlan is the plan that the Else branch of a refused commit read: what
// the refused plan held, at the commit's revision.
func (s *Store) elsePlan(resp *clientv3.TxnResponse, keys []planKey) *plan {
	p := &plan{rev: resp.Header.Revision, kvs: map[string]*kvState{}, seq: map[string]*kvState{}, kids: map[string]int64{}}
	s.seen.See(p.rev)
	for i, k := range keys {
		st := stateOf(resp.Responses[i].GetResponseRange())
		if k.seq {
			p.seq[k.path] = &st
		} else {
			p.kvs[k.path] = &st
		}
	}
	s.rememberPlan(p)
	return p
}

// stateOf is the state of the key a read of one key found (missing if none).
func stateOf(rr *pb.RangeResponse) kvState {
	if len(rr.GetKvs()) == 0 {
		return kvState{}
	}
	kv := rr.Kvs[0]
	return kvState{exists: true, ver: kv.Version - 1, modRev: kv.ModRevision, lease: kv.Lease, value: kv.Value}
}

// rememberPlan records the state a plan read. Node data is not kept: a
// plan needs only the counters' values.
func (s *Store) rememberPlan(p *plan) {
	for path, st := range p.kvs {
		if path != "/" {
			s.known.see(s.nodeKey(path), kvState{exists: st.exists, ver: st.ver, modRev: st.modRev, lease: st.lease}, p.rev)
		}
	}
	for par, st := range p.seq {
		s.known.see(s.seqKey(par), *st, p.rev)
	}
}

// rememberCommit records the state a committed plan left at revision rev:
// every node it wrote and every counter it moved has that mod revision.
func (s *Store) rememberCommit(p *plan, steps []txnplan.Step, lease clientv3.LeaseID, rev int64) {
	final := map[string]txnplan.Step{}
	for _, st := range steps {
		if st.Op.Kind != coord.OpCheck {
			final[st.Path] = st
		}
	}
	for path, st := range final {
		if !st.After.Exists {
			s.known.see(s.nodeKey(path), kvState{}, rev)
			s.known.see(s.seqKey(path), kvState{}, rev)
			continue
		}
		var l int64
		if old, ok := p.kvs[path]; ok && old.exists && st.Op.Kind == coord.OpSet {
			l = old.lease // a set keeps the node's lease
		} else if st.After.Ephemeral {
			l = int64(lease)
		}
		s.known.see(s.nodeKey(path), kvState{exists: true, ver: st.After.Version, modRev: rev, lease: l}, rev)
	}
	for par, n := range txnplan.Counters(steps) {
		s.known.see(s.seqKey(par), kvState{exists: true, modRev: rev, value: []byte(strconv.FormatInt(n, 10))}, rev)
	}
}
