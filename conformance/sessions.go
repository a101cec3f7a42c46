package conformance

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
)

var seqRe = regexp.MustCompile(`^item-(\d{10})$`)

func seqOf(t *testing.T, name string) int64 {
	t.Helper()
	m := seqRe.FindStringSubmatch(name)
	if m == nil {
		t.Fatalf("sequential name %q is not item- plus 10 digits", name)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	must(t, err)
	if fmt.Sprintf("item-%010d", n) != name {
		t.Fatalf("sequential name %q does not survive Atoi and %%010d", name)
	}
	return n
}

func testSequentialFormat(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/q", nil, coord.Persistent)
	must(t, err)
	last := int64(-1)
	for i := 0; i < 5; i++ {
		mode := coord.Sequential
		if i%2 == 1 {
			mode = coord.EphemeralSequential
		}
		p, err := st.Create(ctx, "/q/item-", []byte(fmt.Sprint(i)), mode)
		must(t, err)
		n := seqOf(t, coord.Base(p))
		if n <= last {
			t.Fatalf("sequence %d after %d", n, last)
		}
		last = n
		data, stat, err := st.Get(ctx, p)
		must(t, err)
		if string(data) != fmt.Sprint(i) || stat.Ephemeral != (mode == coord.EphemeralSequential) {
			t.Fatalf("%s: %q %+v", p, data, stat)
		}
		// Other children (not sequential) do not break the order.
		_, err = st.Create(ctx, fmt.Sprintf("/q/other%d", i), nil, coord.Persistent)
		must(t, err)
	}
	// An empty prefix makes bare numbers, as Codis names its actions.
	p, err := st.Create(ctx, "/q/", []byte("bare"), coord.Sequential)
	must(t, err)
	if !regexp.MustCompile(`^/q/\d{10}$`).MatchString(p) {
		t.Fatalf("sequential create of /q/ made %q", p)
	}
	if data, _, err := st.Get(ctx, p); err != nil || string(data) != "bare" {
		t.Fatalf("%s: %q %v", p, data, err)
	}
	// Sequence numbers are per parent.
	_, err = st.Create(ctx, "/q2", nil, coord.Persistent)
	must(t, err)
	p, err = st.Create(ctx, "/q2/item-", nil, coord.Sequential)
	must(t, err)
	if n := seqOf(t, coord.Base(p)); n > last {
		t.Logf("note: /q2 starts at %d", n)
	}
}

func testSequentialConcurrent(t *testing.T, s *suite) {
	const creators, each = 6, 15
	ctx := ctxT(t)
	first := s.open(t)
	_, err := first.Create(ctx, "/q", nil, coord.Persistent)
	must(t, err)
	var mu sync.Mutex
	var all []string
	var wg sync.WaitGroup
	errs := make(chan error, creators)
	for c := 0; c < creators; c++ {
		st := s.open(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var prev int64 = -1
			for i := 0; i < each; i++ {
				p, err := st.Create(ctx, "/q/item-", nil, coord.Sequential)
				if err != nil {
					errs <- err
					return
				}
				m := seqRe.FindStringSubmatch(coord.Base(p))
				if m == nil {
					errs <- fmt.Errorf("bad name %q", p)
					return
				}
				n, _ := strconv.ParseInt(m[1], 10, 64)
				if n <= prev {
					errs <- fmt.Errorf("one creator got %d after %d", n, prev)
					return
				}
				prev = n
				mu.Lock()
				all = append(all, coord.Base(p))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, n := range all {
		if seen[n] {
			t.Fatalf("name %s given twice", n)
		}
		seen[n] = true
		seqOf(t, n)
	}
	kids, err := first.Children(ctx, "/q")
	must(t, err)
	if len(kids) != creators*each || len(all) != creators*each {
		t.Fatalf("%d children, %d names returned, want %d", len(kids), len(all), creators*each)
	}
	sort.Strings(all)
	if fmt.Sprint(all) != fmt.Sprint(kids) {
		t.Fatal("the names returned are not the children listed")
	}
}

func testSequentialAfterDelete(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/q", nil, coord.Persistent)
	must(t, err)
	// Under a node and under the root, whose counter some backends keep
	// apart.
	for _, prefix := range []string{"/q/item-", "/item-"} {
		a, err := st.Create(ctx, prefix, nil, coord.Sequential)
		must(t, err)
		b, err := st.Create(ctx, prefix, nil, coord.Sequential)
		must(t, err)
		must(t, st.Delete(ctx, b, 0))
		c, err := st.Create(ctx, prefix, nil, coord.Sequential)
		must(t, err)
		na, nb, nc := seqOf(t, coord.Base(a)), seqOf(t, coord.Base(b)), seqOf(t, coord.Base(c))
		if !(na < nb && nb < nc) {
			t.Fatalf("%s: numbers %d, %d, then after deleting the newest %d: a name was reused", prefix, na, nb, nc)
		}
		// Stores that never saw the counter (their first call, a create
		// and a transaction that checks a node too) do not reuse the
		// deleted newest name either.
		last, lastPath := nc, c
		for _, first := range []func(coord.Store) (string, error){
			func(o coord.Store) (string, error) { return o.Create(ctx, prefix, nil, coord.Sequential) },
			func(o coord.Store) (string, error) {
				res, err := o.Txn(ctx, coord.CheckOp(a, coord.AnyVersion), coord.CreateOp(prefix, nil, coord.Sequential))
				if err != nil {
					return "", err
				}
				return res[1].Path, nil
			},
		} {
			must(t, st.Delete(ctx, lastPath, 0))
			d, err := first(s.open(t))
			must(t, err)
			nd := seqOf(t, coord.Base(d))
			if nd <= last {
				t.Fatalf("%s: a new store made number %d after %d was made and deleted: a name was reused", prefix, nd, last)
			}
			last, lastPath = nd, d
		}
	}
}

// testSequentialPlanted: nodes created by name where sequential names go
// (the next name, and one further ahead) never make a sequential create
// fail, in a call or in a transaction, and no name is made twice.
func testSequentialPlanted(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/q", nil, coord.Persistent)
	must(t, err)
	a, err := st.Create(ctx, "/q/item-", nil, coord.Sequential)
	must(t, err)
	na := seqOf(t, coord.Base(a))
	planted := map[string]bool{}
	for _, n := range []int64{na + 1, na + 2, na + 4} {
		p := fmt.Sprintf("/q/item-%010d", n)
		_, err := st.Create(ctx, p, []byte("planted"), coord.Persistent)
		must(t, err)
		planted[coord.Base(p)] = true
	}
	seen := map[string]bool{coord.Base(a): true}
	last := na
	for i := 0; i < 8; i++ {
		var p string
		if i%2 == 0 {
			p, err = st.Create(ctx, "/q/item-", []byte("mine"), coord.Sequential)
		} else {
			// Planted just ahead of the last name made, where ZooKeeper
			// (whose next number counts every child made, by name too)
			// puts the transaction's create.
			if name := fmt.Sprintf("item-%010d", last+2); !planted[name] && !seen[name] {
				_, err := st.Create(ctx, "/q/"+name, []byte("planted"), coord.Persistent)
				must(t, err)
				planted[name] = true
			}
			var res []coord.OpResult
			res, err = st.Txn(ctx, coord.CreateOp("/q/item-", []byte("mine"), coord.Sequential))
			if err == nil {
				p = res[0].Path
			}
		}
		if err != nil {
			t.Fatalf("sequential create %d after nodes were planted under its parent: %v", i, err)
		}
		name := coord.Base(p)
		last = seqOf(t, name)
		if planted[name] || seen[name] {
			t.Fatalf("sequential create %d made %s, a name already taken", i, name)
		}
		seen[name] = true
		data, _, err := st.Get(ctx, p)
		must(t, err)
		if string(data) != "mine" {
			t.Fatalf("%s holds %q, not the data of the create", p, data)
		}
	}
	for name := range planted {
		data, _, err := st.Get(ctx, "/q/"+name)
		must(t, err)
		if string(data) != "planted" {
			t.Fatalf("planted %s now holds %q", name, data)
		}
	}
	kids, err := st.Children(ctx, "/q")
	must(t, err)
	if want := 1 + len(planted) + 8; len(kids) != want {
		t.Fatalf("/q has children %v, want %d (no helper node left behind)", kids, want)
	}
}

// waitGone waits until path does not exist, as seen by st, through a watch.
func waitGone(t *testing.T, st coord.Store, path string) {
	t.Helper()
	waitGoneWithin(t, st, path, Timeout)
}

// closeGrace bounds how long after Close returns a closed session's
// ephemeral nodes may still be seen: Close ends the session on the server
// before it returns, so this covers only the observer's round trip. It is
// shorter than the session timeout of any test store, so nodes that merely
// expire do not pass.
const closeGrace = time.Second

func waitGoneWithin(t *testing.T, st coord.Store, path string, limit time.Duration) {
	t.Helper()
	ctx := ctxT(t)
	ch, err := st.WatchData(ctx, path)
	must(t, err)
	deadline := time.After(limit)
	for {
		select {
		case ev, ok := <-ch:
			if !ok || ev.Err != nil {
				t.Fatalf("watch on %s ended: %v", path, ev.Err)
			}
			if !ev.Exists {
				return
			}
		case <-deadline:
			t.Fatalf("%s still exists %v later", path, limit)
		}
	}
}

func waitDone(t *testing.T, sess coord.Session, want error) {
	t.Helper()
	select {
	case <-sess.Done():
	case <-time.After(Timeout):
		t.Fatalf("session %s not done after %v", sess.ID(), Timeout)
	}
	if !errors.Is(sess.Err(), want) {
		t.Fatalf("ended session's Err = %v, want %v", sess.Err(), want)
	}
}

func testEphemeralClose(t *testing.T, s *suite) {
	ctx := ctxT(t)
	owner, watcher := s.open(t), s.open(t)
	_, err := owner.Create(ctx, "/dir", nil, coord.Persistent)
	must(t, err)
	_, err = owner.Create(ctx, "/dir/eph", []byte("me"), coord.Ephemeral)
	must(t, err)
	seq, err := owner.Create(ctx, "/dir/seq-", nil, coord.EphemeralSequential)
	must(t, err)
	_, stat, err := watcher.Get(ctx, "/dir/eph")
	must(t, err)
	if !stat.Ephemeral {
		t.Fatal("another store does not see the node as ephemeral")
	}
	must(t, owner.Close())
	// Promptly: Close ends the session, the nodes do not wait for expiry.
	waitGoneWithin(t, watcher, "/dir/eph", closeGrace)
	waitGoneWithin(t, watcher, seq, closeGrace)
	if _, ok, _ := watcher.Exists(ctx, "/dir"); !ok {
		t.Fatal("the persistent parent went with the session")
	}
}

func testEphemeralExpire(t *testing.T, s *suite) {
	ctx := ctxT(t)
	owner, watcher := s.open(t), s.open(t)
	sess, err := owner.Session(ctx)
	must(t, err)
	_, err = owner.Create(ctx, "/eph", nil, coord.Ephemeral)
	must(t, err)
	_, err = owner.Create(ctx, "/persist", nil, coord.Persistent)
	must(t, err)
	s.b.Expire(t, owner)
	waitDone(t, sess, coord.ErrSessionExpired)
	waitGone(t, watcher, "/eph")
	// The store goes on: a new session owns new ephemeral nodes.
	var again coord.Session
	deadline := time.Now().Add(Timeout)
	for {
		_, err = owner.Create(ctx, "/eph2", nil, coord.Ephemeral)
		if err == nil {
			break
		}
		if !errors.Is(err, coord.ErrSessionExpired) || time.Now().After(deadline) {
			t.Fatalf("create after expiry: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	again, err = owner.Session(ctx)
	must(t, err)
	if again.ID() == sess.ID() || again.Err() != nil {
		t.Fatalf("after expiry the session is %s (err %v), the expired one was %s", again.ID(), again.Err(), sess.ID())
	}
	if _, ok, _ := watcher.Exists(ctx, "/persist"); !ok {
		t.Fatal("a persistent node went with the session")
	}
	must(t, owner.Close())
	waitGone(t, watcher, "/eph2")
}

func testSessionClose(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st := s.open(t)
	sess, err := st.Session(ctx)
	must(t, err)
	if sess.ID() == "" || sess.Err() != nil {
		t.Fatalf("live session: id %q err %v", sess.ID(), sess.Err())
	}
	select {
	case <-sess.Done():
		t.Fatal("live session is done")
	default:
	}
	must(t, st.Close())
	waitDone(t, sess, coord.ErrClosed)
	must(t, st.Close()) // idempotent
}

func testSessionShared(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st := s.open(t)
	a, err := st.Session(ctx)
	must(t, err)
	b, err := st.Session(ctx)
	must(t, err)
	if a.ID() != b.ID() {
		t.Fatalf("one store, two live sessions: %s %s", a.ID(), b.ID())
	}
	other := s.open(t)
	c, err := other.Session(ctx)
	must(t, err)
	if c.ID() == a.ID() {
		t.Fatal("two stores share a session")
	}
}

// Every Stat of an ephemeral node names its owner, the ID of the session
// that holds it, as seen by any store; a persistent node has no owner.
func testEphemeralOwner(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st, other := s.open(t), s.open(t)
	sess, err := st.Session(ctx)
	must(t, err)
	want := sess.ID()
	check := func(what string, stat coord.Stat, owner string) {
		t.Helper()
		if stat.Owner != owner || stat.Ephemeral != (owner != "") {
			t.Errorf("%s: Owner %q Ephemeral %v, want Owner %q", what, stat.Owner, stat.Ephemeral, owner)
		}
	}
	_, err = st.Create(ctx, "/p", nil, coord.Persistent)
	must(t, err)
	_, err = st.Create(ctx, "/e", nil, coord.Ephemeral)
	must(t, err)
	res, err := st.Txn(ctx, coord.CreateOp("/p/seq-", nil, coord.EphemeralSequential), coord.CheckOp("/e", coord.AnyVersion),
		coord.CheckOp("/p", 0), coord.SetOp("/e", []byte("x"), 0))
	must(t, err)
	check("txn create result", res[0].Stat, want)
	check("txn check result of an ephemeral node", res[1].Stat, want)
	check("txn check result of a persistent node", res[2].Stat, "")
	check("txn set result", res[3].Stat, want)
	for _, reader := range []coord.Store{st, other} {
		_, stat, err := reader.Get(ctx, "/e")
		must(t, err)
		check("get", stat, want)
		stat, _, err = reader.Exists(ctx, res[0].Path)
		must(t, err)
		check("exists", stat, want)
		_, stat, err = reader.Get(ctx, "/p")
		must(t, err)
		check("get of a persistent node", stat, "")
	}
	stat, err := st.Set(ctx, "/e", []byte("y"), coord.AnyVersion)
	must(t, err)
	check("set", stat, want)
	// Written right after its create, with no read between.
	_, err = st.Create(ctx, "/e2", nil, coord.Ephemeral)
	must(t, err)
	stat, err = st.Set(ctx, "/e2", []byte("z"), 0)
	must(t, err)
	check("set right after the create", stat, want)
	res, err = st.Txn(ctx, coord.SetOp("/e2", nil, 1), coord.CheckOp("/e", 2))
	must(t, err)
	check("txn set right after a set", res[0].Stat, want)
	check("txn check right after a set", res[1].Stat, want)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := other.WatchData(wctx, "/e")
	must(t, err)
	check("watch event", (<-events).Stat, want)
}

// A parent deleted and made again starts its sequence again at 0, as on
// ZooKeeper (the counter goes with the node); sequential creates with
// different prefixes under one parent share its counter, also when made
// concurrently.
func testSequentialParentRecreated(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/q", nil, coord.Persistent)
	must(t, err)
	for range 3 {
		_, err := st.Create(ctx, "/q/a-", nil, coord.Sequential)
		must(t, err)
	}
	must(t, coord.DeleteAll(ctx, st, "/q"))
	_, err = st.Create(ctx, "/q", nil, coord.Persistent)
	must(t, err)
	p, err := st.Create(ctx, "/q/a-", nil, coord.Sequential)
	must(t, err)
	if p != "/q/a-0000000000" {
		t.Fatalf("first sequential node of a parent made again: %s, want /q/a-0000000000", p)
	}
	// The same when the parent goes in a transaction with its children.
	p2, err := st.Create(ctx, "/q/a-", nil, coord.Sequential)
	must(t, err)
	_, err = st.Txn(ctx, coord.DeleteOp(p, coord.AnyVersion), coord.DeleteOp(p2, coord.AnyVersion), coord.DeleteOp("/q", coord.AnyVersion))
	must(t, err)
	_, err = st.Create(ctx, "/q", nil, coord.Persistent)
	must(t, err)
	if p, err = st.Create(ctx, "/q/a-", nil, coord.Sequential); err != nil || p != "/q/a-0000000000" {
		t.Fatalf("first sequential node of a parent deleted in a transaction and made again: %s (%v), want /q/a-0000000000", p, err)
	}
	// Under the root too, and after other creates there.
	r1, err := st.Create(ctx, "/r-", nil, coord.Sequential)
	must(t, err)
	_, err = st.Create(ctx, "/plain", nil, coord.Persistent)
	must(t, err)
	r2, err := st.Create(ctx, "/r-", nil, coord.Sequential)
	must(t, err)
	if r2 <= r1 {
		t.Fatalf("sequential nodes under the root: %s then %s", r1, r2)
	}
	// Different prefixes, concurrently, from several stores: one counter.
	var mu sync.Mutex
	seen := map[int64]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		w := s.open(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				prefix := fmt.Sprintf("/q/p%d-", i)
				p, err := w.Create(ctx, prefix, nil, coord.Sequential)
				if err != nil {
					errs <- err
					return
				}
				n, err := strconv.ParseInt(p[len(p)-10:], 10, 64)
				if err != nil {
					errs <- fmt.Errorf("sequential name %q", p)
					return
				}
				mu.Lock()
				other, dup := seen[n]
				seen[n] = p
				mu.Unlock()
				if dup { // one error a creator: errs never fills
					errs <- fmt.Errorf("%s and %s share sequence number %d", other, p, n)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// A parent deleted while a child is being created under it never leaves
// the child behind without its parent.
func testDeleteRacesChildCreate(t *testing.T, s *suite) {
	ctx := ctxT(t)
	a, b := s.open(t), s.open(t)
	for i := range 20 {
		_, err := a.Create(ctx, "/p", nil, coord.Persistent)
		must(t, err)
		if i%2 == 1 { // /p has had a child before
			_, err := a.Create(ctx, "/p/x", nil, coord.Persistent)
			must(t, err)
			must(t, a.Delete(ctx, "/p/x", 0))
		}
		var wg sync.WaitGroup
		var delErr, createErr error
		wg.Add(2)
		go func() { defer wg.Done(); delErr = a.Delete(ctx, "/p", coord.AnyVersion) }()
		go func() { defer wg.Done(); _, createErr = b.Create(ctx, "/p/c", nil, coord.Persistent) }()
		wg.Wait()
		_, parent, err := a.Exists(ctx, "/p")
		must(t, err)
		_, child, err := a.Exists(ctx, "/p/c")
		must(t, err)
		switch {
		case child && !parent:
			t.Fatalf("round %d: /p/c exists without /p (delete: %v, create: %v)", i, delErr, createErr)
		case delErr == nil && createErr == nil:
			t.Fatalf("round %d: both the delete of /p and the create of /p/c succeeded", i)
		case delErr != nil && !errors.Is(delErr, coord.ErrNotEmpty):
			t.Fatalf("round %d: delete: %v", i, delErr)
		case createErr != nil && !errors.Is(createErr, coord.ErrNoNode):
			t.Fatalf("round %d: create: %v", i, createErr)
		}
		must(t, coord.DeleteAll(ctx, a, "/p"))
	}
}

// A write that finds its session expired on the server ends the session at
// once: the next ephemeral create gets a new session instead of failing
// again on the dead one.
func testSessionExpiredWrite(t *testing.T, s *suite) {
	expiredWrite(t, s, func(ctx context.Context, st coord.Store, path string) error {
		_, err := st.Create(ctx, path, nil, coord.Ephemeral)
		return err
	})
}

// The same with the ephemeral create in a transaction.
func testSessionExpiredTxn(t *testing.T, s *suite) {
	expiredWrite(t, s, func(ctx context.Context, st coord.Store, path string) error {
		_, err := st.Txn(ctx, coord.CreateOp(path, nil, coord.Ephemeral))
		return err
	})
}

// expiredWrite runs the cases above, with write making an ephemeral node.
func expiredWrite(t *testing.T, s *suite, write func(ctx context.Context, st coord.Store, path string) error) {
	ctx := ctxT(t)
	owner := s.open(t)
	sess, err := owner.Session(ctx)
	must(t, err)
	_, err = owner.Create(ctx, "/e", nil, coord.Ephemeral)
	must(t, err)
	s.b.Expire(t, owner)
	if err := write(ctx, owner, "/e2"); err != nil {
		switch {
		case errors.Is(err, coord.ErrSessionExpired):
			select {
			case <-sess.Done():
			default:
				t.Fatal("a write was refused for an expired session, and the session is still not Done")
			}
		case errors.Is(err, coord.ErrOutcomeUnknown):
			// ZooKeeper: a request that waited on the connection the store
			// gave up with its session cannot be told from one that was
			// sent on it. The store goes on with a new session.
		default:
			t.Fatalf("an ephemeral create on an expired session: %v, want ErrSessionExpired", err)
		}
		must(t, write(ctx, owner, "/e2"))
	}
	select {
	case <-sess.Done():
	default:
		t.Fatal("the expired session is not Done after a write on the next one")
	}
	next, err := owner.Session(ctx)
	must(t, err)
	if next.ID() == sess.ID() {
		t.Fatal("the expired session is still the store's")
	}
}
