package conformance

import (
	"context"
	"errors"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
)

func testMutex(t *testing.T, s *suite) {
	const contenders, rounds = 4, 5
	ctx := ctxT(t)
	var holders, maxHolders, total atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, contenders)
	for c := 0; c < contenders; c++ {
		st := s.open(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				m := coord.NewMutex(st, "/LOCK", "lock-", []byte(`{"desc":"test"}`))
				if err := m.Lock(ctx); err != nil {
					errs <- err
					return
				}
				if n := holders.Add(1); n > maxHolders.Load() {
					maxHolders.Store(n)
				}
				total.Add(1)
				time.Sleep(time.Millisecond)
				holders.Add(-1)
				if err := m.Unlock(ctx); err != nil {
					errs <- err
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
	if maxHolders.Load() != 1 || total.Load() != contenders*rounds {
		t.Fatalf("%d holders at once, %d acquisitions; want 1 and %d", maxHolders.Load(), total.Load(), contenders*rounds)
	}
	// A waiting Lock gives up with its context and leaves no node behind.
	st := s.open(t)
	holder := coord.NewMutex(st, "/LOCK", "lock-", nil)
	must(t, holder.Lock(ctx))
	wctx, cancel := context.WithTimeout(ctx, time.Second) // a liveness bound: long enough on a loaded machine
	defer cancel()
	waiter := coord.NewMutex(s.open(t), "/LOCK", "lock-", nil)
	if err := waiter.Lock(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock past its deadline: %v", err)
	}
	kids, err := st.Children(ctx, "/LOCK")
	must(t, err)
	if len(kids) != 1 || "/LOCK/"+kids[0] != holder.Node() {
		t.Fatalf("lock nodes %v, want only the holder's %s", kids, holder.Node())
	}
	must(t, holder.Unlock(ctx))
}

func testMutexLost(t *testing.T, s *suite) {
	ctx := ctxT(t)
	a, b := s.open(t), s.open(t)
	ma := coord.NewMutex(a, "/LOCK", "lock-", nil)
	must(t, ma.Lock(ctx))
	got := make(chan error, 1)
	go func() {
		mb := coord.NewMutex(b, "/LOCK", "lock-", nil)
		got <- mb.Lock(ctx)
	}()
	select {
	case err := <-got:
		t.Fatalf("second Lock returned %v while the first is held", err)
	case <-time.After(300 * time.Millisecond):
	}
	lost := ma.Lost()
	s.b.Expire(t, a)
	select {
	case <-lost:
	case <-time.After(Timeout):
		t.Fatal("holder not told that its session ended")
	}
	select {
	case err := <-got:
		must(t, err)
	case <-time.After(Timeout):
		t.Fatal("waiter did not get the lock after the holder's session expired")
	}
}

// lockNodes lists the contender nodes under dir.
func lockNodes(t *testing.T, st coord.Store, dir string) []string {
	t.Helper()
	kids, err := st.Children(ctxT(t), dir)
	must(t, err)
	return kids
}

// A waiter whose session ends stops waiting with ErrLockLost, leaving the
// holder alone; it never "acquires" under a dead session.
func testMutexWaiterSessionEnds(t *testing.T, s *suite) {
	ctx := ctxT(t)
	a, b := s.open(t), s.open(t)
	ma := coord.NewMutex(a, "/LOCK", "lock-", nil)
	must(t, ma.Lock(ctx))
	got := make(chan error, 1)
	mb := coord.NewMutex(b, "/LOCK", "lock-", nil)
	go func() { got <- mb.Lock(ctx) }()
	waitFor(t, func() bool { return len(lockNodes(t, a, "/LOCK")) == 2 })
	s.b.Expire(t, b)
	expectWaiterLost(t, got, ma, "session ended")
	waitFor(t, func() bool { return len(lockNodes(t, a, "/LOCK")) == 1 })
	must(t, ma.Unlock(ctx))
}

// expectWaiterLost waits for a waiter's Lock (its result comes on got) to
// end with ErrLockLost, because its why ("session ended"), and checks that
// the holder ma kept the lock.
func expectWaiterLost(t *testing.T, got <-chan error, ma *coord.Mutex, why string) {
	t.Helper()
	select {
	case err := <-got:
		if !errors.Is(err, coord.ErrLockLost) {
			t.Fatalf("the waiter whose %s got %v, want ErrLockLost", why, err)
		}
	case <-time.After(Timeout):
		t.Fatalf("the waiter whose %s is still waiting while the lock is held", why)
	}
	select {
	case <-ma.Lost():
		t.Fatalf("the holder lost the lock when a waiter's %s", why)
	default:
	}
}

// A lock node deleted by someone else (Codis's ForceRemoveLock) is lost for
// its holder: Lost closes, and Unlock still succeeds.
func testMutexNodeDeleted(t *testing.T, s *suite) {
	ctx := ctxT(t)
	a, admin := s.open(t), s.open(t)
	ma := coord.NewMutex(a, "/LOCK", "lock-", nil)
	must(t, ma.Lock(ctx))
	lost := ma.Lost()
	must(t, admin.Delete(ctx, ma.Node(), coord.AnyVersion))
	select {
	case <-lost:
	case <-time.After(Timeout):
		t.Fatal("the holder was not told that its lock node was deleted")
	}
	must(t, ma.Unlock(ctx))
	if ma.Node() != "" || ma.Lost() != nil {
		t.Fatal("Unlock left the mutex looking held")
	}
}

// A waiter whose node is deleted by someone else stops waiting with
// ErrLockLost at once, not when the holder lets go (it would then "acquire"
// with no node, or wait behind a lock it no longer contends for).
func testMutexWaiterNodeDeleted(t *testing.T, s *suite) {
	ctx := ctxT(t)
	a, b, admin := s.open(t), s.open(t), s.open(t)
	ma := coord.NewMutex(a, "/LOCK", "lock-", nil)
	must(t, ma.Lock(ctx))
	got := make(chan error, 1)
	mb := coord.NewMutex(b, "/LOCK", "lock-", nil)
	go func() { got <- mb.Lock(ctx) }()
	var kids []string
	waitFor(t, func() bool { kids = lockNodes(t, admin, "/LOCK"); return len(kids) == 2 })
	waiter := ""
	for _, k := range kids {
		if "/LOCK/"+k != ma.Node() {
			waiter = "/LOCK/" + k
		}
	}
	must(t, admin.Delete(ctx, waiter, coord.AnyVersion))
	expectWaiterLost(t, got, ma, "node was deleted")
	if mb.Node() != "" {
		t.Fatalf("the waiter looks held: %s", mb.Node())
	}
	must(t, ma.Unlock(ctx))
	if kids := lockNodes(t, admin, "/LOCK"); len(kids) != 0 {
		t.Fatalf("lock nodes left: %v", kids)
	}
}

// TryLock takes a free lock, and refuses a held one with ErrLocked without
// leaving a node.
func testTryLock(t *testing.T, s *suite) {
	ctx := ctxT(t)
	a, b := s.open(t), s.open(t)
	ma := coord.NewMutex(a, "/LOCK", "lock-", nil)
	must(t, ma.TryLock(ctx))
	mb := coord.NewMutex(b, "/LOCK", "lock-", nil)
	if err := mb.TryLock(ctx); !errors.Is(err, coord.ErrLocked) {
		t.Fatalf("TryLock of a held lock: %v, want ErrLocked", err)
	}
	if kids := lockNodes(t, b, "/LOCK"); len(kids) != 1 {
		t.Fatalf("a refused TryLock left nodes: %v", kids)
	}
	must(t, ma.Unlock(ctx))
	must(t, mb.TryLock(ctx))
	must(t, mb.Unlock(ctx))
}

// Fencing: a holder's Fence op lets its Txn through while it holds the lock
// and fails it, writing nothing, once the lock is lost; the next holder's
// Token is larger.
func testMutexFence(t *testing.T, s *suite) {
	ctx := ctxT(t)
	a, b := s.open(t), s.open(t)
	_, err := a.Create(ctx, "/data", []byte("0"), coord.Persistent)
	must(t, err)
	ma := coord.NewMutex(a, "/LOCK", "lock-", nil)
	must(t, ma.Lock(ctx))
	stale, tokenA := ma.Fence(), ma.Token()
	_, err = a.Txn(ctx, stale, coord.SetOp("/data", []byte("a"), coord.AnyVersion))
	must(t, err)
	// a loses the lock (its node removed) and b takes it.
	must(t, b.Delete(ctx, ma.Node(), coord.AnyVersion))
	mb := coord.NewMutex(b, "/LOCK", "lock-", nil)
	must(t, mb.Lock(ctx))
	if mb.Token() <= tokenA {
		t.Fatalf("the next holder's token %d is not above %d", mb.Token(), tokenA)
	}
	_, err = a.Txn(ctx, stale, coord.SetOp("/data", []byte("stale"), coord.AnyVersion))
	var te *coord.TxnError
	if !errors.As(err, &te) || te.Index != 0 || !errors.Is(err, coord.ErrNoNode) {
		t.Fatalf("a stale holder's fenced txn: %v, want a TxnError on op 0 with ErrNoNode", err)
	}
	if data, _, err := b.Get(ctx, "/data"); err != nil || string(data) != "a" {
		t.Fatalf("after the refused write /data is %q (%v), want \"a\"", data, err)
	}
	_, err = b.Txn(ctx, mb.Fence(), coord.SetOp("/data", []byte("b"), coord.AnyVersion))
	must(t, err)
	must(t, ma.Unlock(ctx))
	if _, err := a.Txn(ctx, ma.Fence(), coord.SetOp("/data", nil, coord.AnyVersion)); !errors.Is(err, coord.ErrInvalidPath) {
		t.Fatalf("Fence of a mutex not held: %v, want ErrInvalidPath", err)
	}
	must(t, mb.Unlock(ctx))
}

// A waiter in the middle of the queue gives up: the one behind it waits on
// the holder instead, and gets the lock when the holder unlocks.
func testMutexMiddleWaiterGivesUp(t *testing.T, s *suite) {
	ctx := ctxT(t)
	a, b, c := s.open(t), s.open(t), s.open(t)
	ma := coord.NewMutex(a, "/LOCK", "lock-", nil)
	must(t, ma.Lock(ctx))
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	bErr := make(chan error, 1)
	go func() { bErr <- coord.NewMutex(b, "/LOCK", "lock-", nil).Lock(bctx) }()
	waitFor(t, func() bool { return len(lockNodes(t, a, "/LOCK")) == 2 })
	mc := coord.NewMutex(c, "/LOCK", "lock-", nil)
	cErr := make(chan error, 1)
	go func() { cErr <- mc.Lock(ctx) }()
	waitFor(t, func() bool { return len(lockNodes(t, a, "/LOCK")) == 3 })
	bcancel()
	if err := <-bErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the middle waiter: %v, want context.Canceled", err)
	}
	select {
	case err := <-cErr:
		t.Fatalf("the last waiter returned %v while the lock is held", err)
	case <-time.After(200 * time.Millisecond):
	}
	must(t, ma.Unlock(ctx))
	select {
	case err := <-cErr:
		must(t, err)
	case <-time.After(Timeout):
		t.Fatal("the last waiter did not get the lock")
	}
	must(t, mc.Unlock(ctx))
}

// waitFor polls cond until it holds or Timeout passes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within the timeout")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An election: one leader at a time, seen by an observer; a resignation
// hands over to the next candidate; a leader whose session ends loses
// leadership and the observer sees no leader.
func testElection(t *testing.T, s *suite) {
	ctx := ctxT(t)
	a, b, watcher := s.open(t), s.open(t), s.open(t)
	obs := coord.NewElection(watcher, "/leader", "n-")
	if _, err := obs.Leader(ctx); !errors.Is(err, coord.ErrNoLeader) {
		t.Fatalf("Leader of an empty election: %v, want ErrNoLeader", err)
	}
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	seen, err := obs.Observe(octx)
	must(t, err)
	next := func(want string) coord.Leader {
		t.Helper()
		for {
			select {
			case l, ok := <-seen:
				if !ok {
					t.Fatal("Observe ended")
				}
				if string(l.Value) == want {
					return l
				}
			case <-time.After(Timeout):
				t.Fatalf("the observer never saw leader %q", want)
			}
		}
	}
	next("") // no leader yet
	ea := coord.NewElection(a, "/leader", "n-")
	must(t, ea.Campaign(ctx, []byte("a")))
	la := next("a")
	if la.Token != ea.Token() || la.Node == "" {
		t.Fatalf("observed leader %+v, campaigner's token %d", la, ea.Token())
	}
	eb := coord.NewElection(b, "/leader", "n-")
	bErr := make(chan error, 1)
	go func() { bErr <- eb.Campaign(ctx, []byte("b")) }()
	select {
	case err := <-bErr:
		t.Fatalf("a second candidate led while the first leads: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if l, err := obs.Leader(ctx); err != nil || string(l.Value) != "a" {
		t.Fatalf("Leader: %q %v, want a", l.Value, err)
	}
	must(t, ea.Resign(ctx))
	must(t, <-bErr)
	lb := next("b")
	if lb.Token <= la.Token || eb.Token() != lb.Token {
		t.Fatalf("tokens: a %d, b %d (campaigner says %d)", la.Token, lb.Token, eb.Token())
	}
	lost := eb.Lost()
	s.b.Expire(t, b)
	select {
	case <-lost:
	case <-time.After(Timeout):
		t.Fatal("a leader whose session ended was not told")
	}
	next("")
	must(t, eb.Resign(ctx))
}

// The empty sequential prefix that Create takes ("/q/" makes "/q/0000000000")
// works in CreateAll, Mutex and Election too, and a child of the directory
// that is not a sequence name ("cfg", "-1", "+0000000001") is nobody's
// contender.
func testRecipeEmptyPrefix(t *testing.T, s *suite) {
	ctx := ctxT(t)
	a, b := s.open(t), s.open(t)
	node, err := coord.CreateAll(ctx, a, "/deep/q/", []byte("x"), coord.Sequential)
	must(t, err)
	if !regexp.MustCompile(`^/deep/q/\d{10}$`).MatchString(node) {
		t.Fatalf("CreateAll(/deep/q/) made %q", node)
	}
	for _, name := range []string{"/L/cfg", "/L/-1", "/L/+0000000001"} {
		_, err := coord.CreateAll(ctx, a, name, nil, coord.Persistent)
		must(t, err)
	}
	ma := coord.NewMutex(a, "/L", "", []byte("a"))
	must(t, ma.TryLock(ctx))
	if !regexp.MustCompile(`^/L/\d{10}$`).MatchString(ma.Node()) {
		t.Fatalf("mutex node %q", ma.Node())
	}
	mb := coord.NewMutex(b, "/L", "", []byte("b"))
	if err := mb.TryLock(ctx); !errors.Is(err, coord.ErrLocked) {
		t.Fatalf("TryLock of a held lock: %v, want ErrLocked", err)
	}
	must(t, ma.Unlock(ctx))
	must(t, mb.Lock(ctx))
	must(t, mb.Unlock(ctx))

	ea := coord.NewElection(a, "/E", "")
	must(t, ea.Campaign(ctx, []byte("a")))
	l, err := coord.NewElection(b, "/E", "").Leader(ctx)
	must(t, err)
	if string(l.Value) != "a" || l.Token != ea.Token() {
		t.Fatalf("leader %+v, want a with token %d", l, ea.Token())
	}
	must(t, ea.Resign(ctx))
}
