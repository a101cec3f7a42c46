package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
)

// Faults injects network faults between one store and its server.
type Faults interface {
	// Stall holds every byte both ways while connections stay open.
	Stall()
	// Cut closes the store's connections (new ones are allowed).
	Cut()
	// Block refuses new connections, as a server that is down.
	Block()
	// LoseReplies lets the store's requests reach the server and throws the
	// server's answers away until Resume: requests are applied, their
	// replies lost. A backend whose writes read first may lose the answer
	// of the next write that applies, and hold every answer after it until
	// Resume.
	LoseReplies()
	// LoseRefusal is LoseReplies for a write the server refuses: the answer
	// of the store's next write that is refused (a create of a node that
	// exists, say) is lost, and every answer after it held until Resume. A
	// backend whose LoseReplies loses every answer may do just that.
	LoseRefusal()
	// Resume ends a Stall, a Block, LoseReplies or LoseRefusal.
	Resume() error
	// DropNextWrite makes the store's next write request (the one that
	// applies a create, set, delete or transaction, after any read that
	// plans it) get lost on its way: it is not applied, and the store sees
	// its connection die before an answer.
	DropNextWrite()
}

// FaultTrials is how many times the fault cases repeat their experiment:
// COORD_FAULT_TRIALS when set, else 3.
func FaultTrials() int {
	if n, err := strconv.Atoi(os.Getenv("COORD_FAULT_TRIALS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// faultSessionTimeout is the session timeout (TTL) of the stores the fault
// cases stall: short, so that a case takes seconds, and long enough that a
// loaded machine keeps a healthy session.
const faultSessionTimeout = 3 * time.Second

func (s *suite) openFaulty(t *testing.T) (coord.Store, Faults) {
	t.Helper()
	if s.b.OpenFaulty == nil {
		t.Skip("the backend offers no OpenFaulty")
	}
	st, f := s.b.OpenFaulty(t, s.ns, faultSessionTimeout)
	t.Cleanup(func() {
		_ = f.Resume()
		_ = st.Close()
	})
	return st, f
}

// stamp records when ch closes: *at is set once done is closed.
func stamp(ch <-chan struct{}) (at *time.Time, done <-chan struct{}) {
	at, d := new(time.Time), make(chan struct{})
	go func() {
		<-ch
		*at = time.Now()
		close(d)
	}()
	return at, d
}

func resume(t *testing.T, f Faults) {
	t.Helper()
	if err := f.Resume(); err != nil {
		t.Fatal(err)
	}
}

// faultyEphemeral opens a store behind faults, with an ephemeral node /e of
// its session, and a second store to observe it.
func (s *suite) faultyEphemeral(t *testing.T) (context.Context, coord.Store, Faults, coord.Store, coord.Session) {
	t.Helper()
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	obs := s.open(t)
	sess, err := st.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, "/e", []byte("mine"), coord.Ephemeral); err != nil {
		t.Fatal(err)
	}
	return ctx, st, f, obs, sess
}

// A store cut off from its server (stalled: no error, no byte) ends its
// session before the server can have deleted the session's ephemeral nodes,
// on the client's clock, without waiting for the link to heal. Then, once the
// link is back, it makes a new session.
func testFaultSessionLostFirst(t *testing.T, s *suite) {
	ctx, st, f, obs, sess := s.faultyEphemeral(t)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := obs.WatchData(wctx, "/e")
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-events; !ev.Exists {
		t.Fatal("the observer does not see the ephemeral node")
	}
	if on, _ := sess.Suspended(); on {
		t.Fatal("a healthy session says it is suspended")
	}
	doneAt, doneCh := stamp(sess.Done())
	suspAt, suspCh := stamp(suspension(sess, true))
	stalled := time.Now()
	f.Stall()
	var gone time.Time
	for ev := range events {
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
		if !ev.Exists {
			gone = time.Now()
			break
		}
	}
	select {
	case <-doneCh:
	default:
		t.Fatalf("the server deleted the ephemeral node %v after the stall, and the session is still not Done",
			gone.Sub(stalled).Round(time.Millisecond))
	}
	done := *doneAt
	select {
	case <-suspCh:
		if (*suspAt).After(done) {
			t.Fatalf("suspended %v after the stall, after Done (%v)", suspAt.Sub(stalled), done.Sub(stalled))
		}
	default:
		t.Fatal("the session ended without being suspended first")
	}
	if !done.Before(gone) {
		t.Fatalf("Done closed %v after the stall, not before the node was deleted (%v)", done.Sub(stalled), gone.Sub(stalled))
	}
	t.Logf("Done %v after the stall; node deleted %v after", done.Sub(stalled).Round(time.Millisecond), gone.Sub(stalled).Round(time.Millisecond))
	if !errors.Is(sess.Err(), coord.ErrSessionExpired) {
		t.Errorf("Err() = %v, want ErrSessionExpired", sess.Err())
	}
	resume(t, f)
	next, err := st.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next.ID() == sess.ID() {
		t.Fatalf("after the loss the store kept session %s", sess.ID())
	}
	if _, err := st.Create(ctx, "/e2", nil, coord.Ephemeral); err != nil {
		t.Fatalf("an ephemeral node on the new session: %v", err)
	}
	if _, ok, err := obs.Exists(ctx, "/e"); err != nil || ok {
		t.Fatalf("the old session's node came back: %v %v", ok, err)
	}
}

// A stall shorter than a third of the session timeout ends nothing: the
// session, its ephemeral node and a watch carry on.
func testFaultShortStall(t *testing.T, s *suite) {
	ctx, st, f, obs, sess := s.faultyEphemeral(t)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := st.WatchData(wctx, "/w")
	if err != nil {
		t.Fatal(err)
	}
	<-events
	f.Stall()
	time.Sleep(faultSessionTimeout / 4)
	if _, err := obs.Create(ctx, "/w", []byte("during"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	resume(t, f)
	until(t, events, "the change made during the fault", func(ev coord.Event) bool {
		return ev.Exists && string(ev.Data) == "during"
	})
	select {
	case <-sess.Done():
		t.Fatalf("a short stall ended the session: %v", sess.Err())
	default:
	}
	if _, ok, err := obs.Exists(ctx, "/e"); err != nil || !ok {
		t.Fatalf("the ephemeral node did not survive a short stall: %v %v", ok, err)
	}
}

// A watched node deleted and made again, with the same children, while
// the watcher's connection is stalled: when the stall ends, the children
// watch ends with ErrNoNode (the node it watched is gone; the one there now
// is another), although the children it would list are the same.
func testFaultWatchRecreatedInStall(t *testing.T, s *suite) {
	watchRecreated(t, s, "stall", func(f Faults) { f.Stall() })
}

// The same with the watcher's connection cut and reconnecting refused while
// the node is made again: on ZooKeeper the client then re-arms its watches
// on reconnect, in the same session, and the server tells only of changes
// to the node's children since the last zxid the client saw.
func testFaultWatchRecreatedWhileCut(t *testing.T, s *suite) {
	watchRecreated(t, s, "cut", func(f Faults) {
		f.Block()
		f.Cut()
	})
}

// watchRecreated runs the two cases above, with fault for the stall.
func watchRecreated(t *testing.T, s *suite, what string, fault func(Faults)) {
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	obs := s.open(t)
	for _, p := range []string{"/w", "/w/a"} {
		_, err := obs.Create(ctx, p, nil, coord.Persistent)
		must(t, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := st.WatchChildren(wctx, "/w")
	must(t, err)
	if ev := next(t, events); !slices.Equal(ev.Children, []string{"a"}) {
		t.Fatalf("first event %+v, want the children [a]", ev)
	}
	fault(f)
	must(t, coord.DeleteAll(ctx, obs, "/w"))
	for _, p := range []string{"/w", "/w/a"} {
		_, err := obs.Create(ctx, p, nil, coord.Persistent)
		must(t, err)
	}
	time.Sleep(faultSessionTimeout / 10)
	resume(t, f)
	deadline := time.After(Timeout)
	for {
		select {
		case ev, open := <-events:
			if !open {
				t.Fatal("the watch closed without an event saying its node went")
			}
			if ev.Err != nil {
				if !errors.Is(ev.Err, coord.ErrNoNode) {
					t.Fatalf("the watch ended with %v, want ErrNoNode", ev.Err)
				}
				return
			}
		case <-deadline:
			t.Fatalf("no ErrNoNode %v after the %s: the watch took the new node for the one it watched", Timeout, what)
		}
	}
}

// suspension returns a channel closed once sess.Suspended() says want; it
// stays open if the session ends first in the other state.
func suspension(sess coord.Session, want bool) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for {
			on, next := sess.Suspended()
			if on == want {
				close(ch)
				return
			}
			select {
			case <-next:
			case <-sess.Done():
				if on, _ := sess.Suspended(); on == want {
					close(ch)
				}
				return
			}
		}
	}()
	return ch
}

// awaitSuspension waits until sess.Suspended() says want; the session
// ending first, or Timeout passing, fails the test. who names the session
// in the message.
func awaitSuspension(t *testing.T, sess coord.Session, want bool, who string) {
	t.Helper()
	select {
	case <-suspension(sess, want):
	case <-sess.Done():
		t.Fatalf("%s ended before its suspension became %v: %v", who, want, sess.Err())
	case <-time.After(Timeout):
		t.Fatalf("%s: its suspension never became %v", who, want)
	}
}

// staysSuspended fails the test if sess's suspension ends, or the session,
// within d (the fault still on).
func staysSuspended(t *testing.T, sess coord.Session, d time.Duration, who string) {
	t.Helper()
	end := time.After(d)
	for {
		on, next := sess.Suspended()
		if !on {
			t.Fatalf("%s: its suspension ended while the fault lasted", who)
		}
		select {
		case <-next:
		case <-sess.Done():
			t.Fatalf("%s ended %v into the fault's hold: %v", who, d, sess.Err())
		case <-end:
			return
		}
	}
}

// A stalled connection suspends the session before it is lost; when the
// link heals in time the suspension ends and the session, its ephemeral
// node and a watch carry on.
func testFaultSuspended(t *testing.T, s *suite) {
	ctx, st, f, obs, sess := s.faultyEphemeral(t)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := st.WatchData(wctx, "/w")
	if err != nil {
		t.Fatal(err)
	}
	<-events
	if on, _ := sess.Suspended(); on {
		t.Fatal("a healthy session says it is suspended")
	}
	stalled := time.Now()
	f.Stall()
	awaitSuspension(t, sess, true, "a stalled session")
	after := time.Since(stalled)
	if _, err := obs.Create(ctx, "/w", []byte("during"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	resume(t, f)
	awaitSuspension(t, sess, false, fmt.Sprintf("a session suspended %v after the stall, the link healed at once,", after))
	t.Logf("suspended %v after the stall", after.Round(time.Millisecond))
	until(t, events, "the change made during the fault", func(ev coord.Event) bool {
		return ev.Exists && string(ev.Data) == "during"
	})
	if sess.Err() != nil {
		t.Fatalf("the session ended: %v", sess.Err())
	}
	if _, ok, err := obs.Exists(ctx, "/e"); err != nil || !ok {
		t.Fatalf("the ephemeral node did not survive: %v %v", ok, err)
	}
	// The same when the server refuses connections (renewals fail at once
	// instead of hanging).
	f.Block()
	f.Cut()
	awaitSuspension(t, sess, true, "a session whose server refuses connections")
	// Renewals that fail at once, one after another, do not flap it.
	staysSuspended(t, sess, 300*time.Millisecond, "a session whose server refuses connections")
	resume(t, f)
	awaitSuspension(t, sess, false, "a session whose server is back")
}

// locker is what the no-overlap cases hold: a Mutex or an Election.
type locker interface {
	lock(ctx context.Context) error
	unlock(ctx context.Context) error
	lost() <-chan struct{}
}

type mutexLocker struct{ *coord.Mutex }

func (m mutexLocker) lock(ctx context.Context) error   { return m.Lock(ctx) }
func (m mutexLocker) unlock(ctx context.Context) error { return m.Unlock(ctx) }
func (m mutexLocker) lost() <-chan struct{}            { return m.Lost() }

type electionLocker struct{ *coord.Election }

func (e electionLocker) lock(ctx context.Context) error   { return e.Campaign(ctx, []byte("me")) }
func (e electionLocker) unlock(ctx context.Context) error { return e.Resign(ctx) }
func (e electionLocker) lost() <-chan struct{}            { return e.Lost() }

// Two stores contend for one Mutex; the holder is stalled past its session
// timeout, so the other gets the lock. On one clock, the stalled holder's
// Lost() must close before the other's Lock returns: never two holders.
func testFaultMutexNoOverlap(t *testing.T, s *suite) {
	testFaultNoOverlap(t, s, func(st coord.Store) locker { return mutexLocker{coord.NewMutex(st, "/lock", "lock-", nil)} })
}

// The same for leadership: never two leaders.
func testFaultElectionNoOverlap(t *testing.T, s *suite) {
	testFaultNoOverlap(t, s, func(st coord.Store) locker { return electionLocker{coord.NewElection(st, "/leader", "n-")} })
}

func testFaultNoOverlap(t *testing.T, s *suite, newLocker func(coord.Store) locker) {
	st, f := s.openFaulty(t)
	other := s.open(t)
	for trial := 0; trial < FaultTrials(); trial++ {
		ctx := ctxT(t) // each trial has the whole bound
		a := newLocker(st)
		if err := a.lock(ctx); err != nil {
			t.Fatalf("trial %d: a.lock: %v", trial, err)
		}
		b := newLocker(other)
		var bGot time.Time
		var bErr error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			bErr = b.lock(ctx)
			bGot = time.Now()
		}()
		aLostAt, lost := stamp(a.lost())
		stalled := time.Now()
		f.Stall()
		wg.Wait()
		if bErr != nil {
			t.Fatalf("trial %d: b.lock: %v", trial, bErr)
		}
		select {
		case <-lost:
		default:
			t.Fatalf("trial %d: two holders: b got it %v after the stall and a has not lost it",
				trial, bGot.Sub(stalled).Round(time.Millisecond))
		}
		aLost := *aLostAt
		if !aLost.Before(bGot) {
			t.Fatalf("trial %d: two holders: a lost it at %v, b got it at %v", trial, aLost.Sub(stalled), bGot.Sub(stalled))
		}
		t.Logf("trial %d: a lost it %v after the stall, b got it %v after (gap %v)", trial,
			aLost.Sub(stalled).Round(time.Millisecond), bGot.Sub(stalled).Round(time.Millisecond), bGot.Sub(aLost).Round(time.Millisecond))
		resume(t, f)
		_ = a.unlock(ctx) // its node went with its session
		if err := b.unlock(ctx); err != nil {
			t.Fatalf("trial %d: b.unlock: %v", trial, err)
		}
	}
}

// A Lock whose context ends while its create is held up in a stalled link
// leaves no contender node once the link is back: another contender gets the
// lock at once.
func testFaultLockCancelledInFlight(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	other := s.open(t)
	if _, err := coord.CreateAll(ctx, other, "/LOCK/x", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Session(ctx); err != nil {
		t.Fatal(err)
	}
	f.Stall()
	lctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- coord.NewMutex(st, "/LOCK", "lock-", nil).Lock(lctx) }()
	time.Sleep(faultSessionTimeout / 4)
	resume(t, f)
	select {
	case err := <-res:
		if err == nil {
			t.Fatal("Lock succeeded past its deadline")
		}
	case <-time.After(Timeout):
		t.Fatal("Lock did not return")
	}
	// A create queued in the client while the link stalled is sent when it
	// heals; a read through the same store comes after it.
	if _, _, err := st.Exists(ctx, "/LOCK"); err != nil {
		t.Fatal(err)
	}
	if kids, err := other.Children(ctx, "/LOCK"); err != nil || len(kids) != 1 {
		t.Fatalf("after the cancelled Lock the lock holds %v (%v), want only x", kids, err)
	}
	m := coord.NewMutex(other, "/LOCK", "lock-", nil)
	if err := m.TryLock(ctx); err != nil {
		kids, _ := other.Children(ctx, "/LOCK")
		t.Fatalf("after the cancelled Lock, TryLock: %v (nodes %v)", err, kids)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// A Lock whose context ends after the server applied its create, the reply
// lost (so the store cannot find out what it made before the context
// ends), removes the node it may have made once the link is back: it does
// not stay behind under the live session, blocking every other contender.
func testFaultLockCancelledReplyLost(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	other := s.open(t)
	if _, err := coord.CreateAll(ctx, other, "/LOCK/x", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	sess, err := st.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Exists(ctx, "/LOCK"); err != nil {
		t.Fatal(err)
	}
	f.LoseReplies()
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- coord.NewMutex(st, "/LOCK", "lock-", nil).Lock(lctx) }()
	deadline := time.Now().Add(Timeout)
	for {
		kids, err := other.Children(ctx, "/LOCK")
		must(t, err)
		if len(kids) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the contender's create never reached the server")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	time.Sleep(200 * time.Millisecond) // the Lock gives up finding out
	f.Block()
	f.Cut()
	resume(t, f)
	select {
	case err := <-res:
		if err == nil {
			t.Fatal("a cancelled Lock succeeded")
		}
	case <-time.After(2 * Timeout):
		t.Fatal("Lock did not return")
	}
	if sess.Err() != nil {
		t.Fatalf("the session ended: %v", sess.Err())
	}
	if kids, err := other.Children(ctx, "/LOCK"); err != nil || len(kids) != 1 {
		t.Fatalf("after the cancelled Lock the lock holds %v (%v), want only x", kids, err)
	}
	m := coord.NewMutex(other, "/LOCK", "lock-", nil)
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("after the cancelled Lock, TryLock: %v", err)
	}
	must(t, m.Unlock(ctx))
}

// Calls made while the server is down for a moment (connections cut, new
// ones refused) wait it out within their context: a read and a create both
// succeed once it is back, and the create made exactly one node.
func testFaultOutageRiddenOut(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	obs := s.open(t)
	if _, err := st.Create(ctx, "/dir", []byte("d"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	f.Block()
	f.Cut()
	// Calls made once the outage is there. (A call sent at the instant of
	// the cut has an unknown outcome: that is a lost reply, another fault.)
	time.Sleep(200 * time.Millisecond)
	type result struct {
		what string
		err  error
	}
	results := make(chan result, 3)
	go func() {
		_, _, err := st.Get(ctx, "/dir")
		results <- result{"get", err}
	}()
	go func() {
		_, err := st.GetMany(ctx, "/dir", "/")
		results <- result{"getmany", err}
	}()
	go func() {
		_, err := st.Create(ctx, "/dir/made", []byte("x"), coord.Persistent)
		results <- result{"create", err}
	}()
	time.Sleep(time.Second)
	resume(t, f)
	for i := 0; i < 3; i++ {
		select {
		case r := <-results:
			if r.err != nil {
				t.Errorf("%s during a one-second outage: %v", r.what, r.err)
			}
		case <-time.After(Timeout):
			t.Fatal("a call did not return after the outage")
		}
	}
	kids, err := obs.Children(ctx, "/dir")
	if err != nil {
		t.Fatal(err)
	}
	if len(kids) != 1 || kids[0] != "made" {
		t.Fatalf("after the outage /dir holds %v, want [made]", kids)
	}
}

// longOutage is how long Fault/BackPromptly keeps the server away: long
// enough that a reconnection backoff left to grow (gRPC's default doubles,
// roughly, from one second up to two minutes) would wait seconds more.
const longOutage = 12 * time.Second

// backWithin is how soon after a long outage ends a store must answer
// again: its reconnection attempts are at most a second apart (see each
// backend's Config), plus room for a loaded machine.
const backWithin = 3 * time.Second

// After a long outage (connections cut, new ones refused, calls failing
// all along), the store answers reads and writes within backWithin of the
// server's return: its attempts to reconnect have not backed off to
// longer than that.
func testFaultBackPromptly(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	if _, err := st.Create(ctx, "/n", []byte("0"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	f.Block()
	f.Cut()
	end := time.Now().Add(longOutage)
	for time.Now().Before(end) {
		c, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, _, err := st.Get(c, "/n")
		cancel()
		if err == nil {
			t.Fatal("a Get succeeded while the server refused connections")
		}
		is(t, err, coord.ErrUnavailable)
		time.Sleep(500 * time.Millisecond)
	}
	resume(t, f)
	back := time.Now()
	c, cancel := context.WithTimeout(ctx, backWithin)
	defer cancel()
	if _, _, err := st.Get(c, "/n"); err != nil {
		t.Fatalf("a Get %v after a %v outage ended: %v", time.Since(back).Round(time.Millisecond), longOutage, err)
	}
	if _, err := st.Set(c, "/n", []byte("1"), coord.AnyVersion); err != nil {
		t.Fatalf("a Set %v after a %v outage ended: %v", time.Since(back).Round(time.Millisecond), longOutage, err)
	}
	t.Logf("answered again %v after the outage", time.Since(back).Round(time.Millisecond))
}

// A create whose reply is lost (the server applied it, the connection died
// before the answer came) is resolved, not guessed: Create returns the node
// it made, and there is exactly that one node, for every mode.
func testFaultLostCreateReply(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	obs := s.open(t)
	for i, mode := range []coord.Mode{coord.Persistent, coord.Ephemeral, coord.Sequential, coord.EphemeralSequential} {
		dir := fmt.Sprintf("/d%d", i)
		if _, err := obs.Create(ctx, dir, nil, coord.Persistent); err != nil {
			t.Fatal(err)
		}
		// Nodes of the same parent made before, with the same data, are
		// not the one this create made.
		if _, err := obs.Create(ctx, dir+"/n-", []byte("x"), coord.Sequential); err != nil {
			t.Fatal(err)
		}
		path := dir + "/n"
		if mode&coord.Sequential != 0 {
			path = dir + "/n-"
		}
		// Connected again after the last round, so the request is sent.
		if _, _, err := st.Exists(ctx, dir); err != nil {
			t.Fatal(err)
		}
		sess, err := st.Session(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f.LoseReplies()
		type result struct {
			path string
			err  error
		}
		res := make(chan result, 1)
		go func() {
			p, err := st.Create(ctx, path, []byte("x"), mode)
			res <- result{p, err}
		}()
		// Wait until the server has applied it.
		deadline := time.Now().Add(Timeout)
		for {
			kids, err := obs.Children(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(kids) == 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v: the create never reached the server", mode)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The connection dies before the answer: no new one until the
		// old one is gone, so the lost answer cannot come through.
		f.Block()
		f.Cut()
		resume(t, f)
		var r result
		select {
		case r = <-res:
		case <-time.After(2 * Timeout):
			t.Fatalf("%v: Create did not return after its reply was lost", mode)
		}
		if r.err != nil {
			t.Fatalf("%v: a create applied on the server, its reply lost: %v", mode, r.err)
		}
		kids, err := obs.Children(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(kids) != 2 {
			t.Fatalf("%v: %d nodes after one create with a lost reply (and one before): %v", mode, len(kids), kids)
		}
		data, stat, err := obs.Get(ctx, r.path)
		if err != nil || string(data) != "x" || stat.Version != 0 {
			t.Fatalf("%v: Create returned %q: %q %+v %v", mode, r.path, data, stat, err)
		}
		if mode&coord.Sequential != 0 && r.path == dir+"/"+kids[0] {
			t.Fatalf("%v: Create returned the node made before it, %s", mode, r.path)
		}
		if mode&coord.Ephemeral != 0 && stat.Owner != sess.ID() {
			t.Fatalf("%v: the node is owned by %q, the session is %q", mode, stat.Owner, sess.ID())
		}
	}
}

// A create refused by the server (the node exists, with the same data,
// made before by another client) whose answer is lost is not taken for a
// create of ours: it fails with ErrNodeExists.
func testFaultLostCreateReplyExisting(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	obs := s.open(t)
	if _, err := obs.Create(ctx, "/n", []byte("x"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Exists(ctx, "/n"); err != nil { // connected, stamps seen
		t.Fatal(err)
	}
	f.LoseRefusal()
	res := make(chan error, 1)
	go func() {
		_, err := st.Create(ctx, "/n", []byte("x"), coord.Persistent)
		res <- err
	}()
	time.Sleep(500 * time.Millisecond) // the request reaches the server, which refuses it
	f.Block()
	f.Cut()
	resume(t, f)
	select {
	case err := <-res:
		if !errors.Is(err, coord.ErrNodeExists) {
			t.Fatalf("a create of an existing node, its answer lost: %v, want ErrNodeExists", err)
		}
	case <-time.After(2 * Timeout):
		t.Fatal("Create did not return after its reply was lost")
	}
}

// A Set, Delete or Txn whose reply is lost fails with ErrOutcomeUnknown
// (and ErrUnavailable): the caller is told that it may have been applied,
// which it was.
func testFaultLostWriteReply(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	obs := s.open(t)
	_, err := obs.Create(ctx, "/n", []byte("0"), coord.Persistent)
	must(t, err)
	writes := []struct {
		name    string
		do      func() error
		applied func() bool
	}{
		{"set", func() error {
			_, err := st.Set(ctx, "/n", []byte("1"), 0)
			return err
		}, func() bool {
			data, _, err := obs.Get(ctx, "/n")
			return err == nil && string(data) == "1"
		}},
		{"txn", func() error {
			_, err := st.Txn(ctx, coord.SetOp("/n", []byte("2"), 1), coord.CreateOp("/m", nil, coord.Persistent))
			return err
		}, func() bool {
			_, ok, err := obs.Exists(ctx, "/m")
			return err == nil && ok
		}},
		{"delete", func() error { return st.Delete(ctx, "/m", 0) }, func() bool {
			_, ok, err := obs.Exists(ctx, "/m")
			return err == nil && !ok
		}},
	}
	for _, w := range writes {
		// Connected again after the last round, so the request is sent.
		_, _, err := st.Exists(ctx, "/n")
		must(t, err)
		f.LoseReplies()
		res := make(chan error, 1)
		go func() { res <- w.do() }()
		deadline := time.Now().Add(Timeout)
		for !w.applied() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: never reached the server", w.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
		f.Block()
		f.Cut()
		resume(t, f)
		select {
		case err = <-res:
		case <-time.After(2 * Timeout):
			t.Fatalf("%s: did not return after its reply was lost", w.name)
		}
		if !errors.Is(err, coord.ErrOutcomeUnknown) || !errors.Is(err, coord.ErrUnavailable) {
			t.Fatalf("%s applied, its reply lost: %v, want ErrOutcomeUnknown and ErrUnavailable", w.name, err)
		}
	}
}

// A read in flight when the connection is cut is sent again, within its
// context: it succeeds once the link is back.
func testFaultReadCutInFlight(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	_, err := st.Create(ctx, "/n", []byte("v"), coord.Persistent)
	must(t, err)
	_, err = st.Create(ctx, "/n/k", nil, coord.Persistent)
	must(t, err)
	reads := []struct {
		name string
		do   func() error
	}{
		{"get", func() error {
			data, _, err := st.Get(ctx, "/n")
			if err == nil && string(data) != "v" {
				err = fmt.Errorf("data %q", data)
			}
			return err
		}},
		{"getmany", func() error {
			res, err := st.GetMany(ctx, "/n", "/n/k", "/n/missing")
			if err == nil && (string(res[0].Data) != "v" || res[1].Err != nil || !errors.Is(res[2].Err, coord.ErrNoNode)) {
				err = fmt.Errorf("results %+v", res)
			}
			return err
		}},
		{"exists", func() error {
			_, ok, err := st.Exists(ctx, "/n")
			if err == nil && !ok {
				err = errors.New("not found")
			}
			return err
		}},
		{"children", func() error {
			kids, err := st.Children(ctx, "/n")
			if err == nil && len(kids) != 1 {
				err = fmt.Errorf("children %v", kids)
			}
			return err
		}},
	}
	for _, r := range reads {
		f.Stall()
		res := make(chan error, 1)
		go func() { res <- r.do() }()
		time.Sleep(100 * time.Millisecond) // sent, held by the stall
		f.Cut()
		resume(t, f)
		select {
		case err := <-res:
			if err != nil {
				t.Fatalf("%s in flight when the connection was cut: %v", r.name, err)
			}
		case <-time.After(2 * Timeout):
			t.Fatalf("%s did not return", r.name)
		}
	}
}

// A session lost while the link was down releases what it held once the
// link is back, even if the server had not expired it yet: its ephemeral
// nodes go, so that a lock held by a session its owner gave up does not
// block everyone until the server's own expiry (or forever).
func testFaultLostSessionReleases(t *testing.T, s *suite) {
	ctx, _, f, obs, sess := s.faultyEphemeral(t)
	if s.b.KeepAlive != nil {
		// The server never expires the session by itself.
		stop := make(chan struct{})
		renewed := make(chan struct{})
		go func() {
			defer close(renewed)
			for {
				_ = s.b.KeepAlive(ctx, obs, sess.ID())
				select {
				case <-stop:
					return
				case <-time.After(faultSessionTimeout / 6):
				}
			}
		}()
		defer func() { close(stop); <-renewed }()
	}
	f.Stall()
	select {
	case <-sess.Done():
	case <-time.After(Timeout):
		t.Fatal("the stalled session never ended")
	}
	// Back before the server expires the session (it waits the whole
	// timeout after the last contact; Done came a margin earlier).
	resume(t, f)
	deadline := time.Now().Add(Timeout)
	for {
		_, ok, err := obs.Exists(ctx, "/e")
		must(t, err)
		if !ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lost session's ephemeral node is still there %v after the link came back (kept alive by another client: %v)", Timeout, s.b.KeepAlive != nil)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A waiter cut off from its server (stalled: no error, no byte) gives up
// with ErrLockLost when its session is lost, on its own clock, without
// waiting for the link to heal.
func testFaultWaiterStalled(t *testing.T, s *suite) {
	ctx := ctxT(t)
	holder := s.open(t)
	st, f := s.openFaulty(t)
	mh := coord.NewMutex(holder, "/LOCK", "lock-", nil)
	must(t, mh.Lock(ctx))
	sess, err := st.Session(ctx)
	must(t, err)
	got := make(chan error, 1)
	go func() { got <- coord.NewMutex(st, "/LOCK", "lock-", nil).Lock(ctx) }()
	waitFor(t, func() bool { return len(lockNodes(t, holder, "/LOCK")) == 2 })
	f.Stall()
	select {
	case err := <-got:
		if !errors.Is(err, coord.ErrLockLost) {
			t.Fatalf("a stalled waiter whose session was lost got %v, want ErrLockLost", err)
		}
	case <-time.After(Timeout):
		t.Fatalf("a stalled waiter is still waiting %v after the stall (session err: %v)", Timeout, sess.Err())
	}
	if sess.Err() == nil {
		t.Fatal("the waiter gave up while its session lives")
	}
	resume(t, f)
	must(t, mh.Unlock(ctx))
}

// A write lost on its way to the server (DropNextWrite: not applied, the
// connection dead before an answer). A create is resolved: it finds it made
// nothing and sends the create again, so it returns a new node, and does not
// take for its own an older node with the same data that the store has read
// (GetMany); a Set, a Delete and a Txn fail with ErrOutcomeUnknown and
// ErrUnavailable, having changed nothing.
func testFaultWriteDropped(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	obs := s.open(t)
	for i, mode := range []coord.Mode{coord.Persistent, coord.Ephemeral, coord.Sequential, coord.Sequential, coord.EphemeralSequential} {
		dir := fmt.Sprintf("/d%d", i)
		_, err := obs.Create(ctx, dir, nil, coord.Persistent)
		must(t, err)
		older, err := obs.Create(ctx, dir+"/n-", []byte("x"), coord.Sequential)
		must(t, err)
		// The store has seen the older node: through GetMany, or through
		// a transaction refused after reading it.
		if i == 3 {
			_, err = st.Txn(ctx, coord.CheckOp(older, 7), coord.CreateOp(dir+"/m-", nil, coord.Sequential))
			is(t, err, coord.ErrBadVersion)
		} else {
			res, err := st.GetMany(ctx, older)
			must(t, err)
			must(t, res[0].Err)
		}
		path := dir + "/n"
		if mode&coord.Sequential != 0 {
			path = dir + "/n-"
		}
		f.DropNextWrite()
		made, err := st.Create(ctx, path, []byte("x"), mode)
		if err != nil {
			t.Fatalf("%v: Create after its request was lost: %v", mode, err)
		}
		if made == older {
			t.Fatalf("%v: Create took %s, made before it by another store, for its own", mode, older)
		}
		kids, err := obs.Children(ctx, dir)
		must(t, err)
		if len(kids) != 2 {
			t.Fatalf("%v: %v under %s, want the older node and one made by the create", mode, kids, dir)
		}
		data, stat, err := obs.Get(ctx, made)
		if err != nil || string(data) != "x" || stat.Ephemeral != (mode&coord.Ephemeral != 0) {
			t.Fatalf("%v: Create returned %s: %q, %+v, %v", mode, made, data, stat, err)
		}
	}
	// Set, Delete and Txn: in doubt for the caller, and not applied.
	_, err := st.Create(ctx, "/w", []byte("1"), coord.Persistent)
	must(t, err)
	for _, w := range []struct {
		name string
		do   func() error
	}{
		{"Set", func() error { _, err := st.Set(ctx, "/w", []byte("2"), 0); return err }},
		{"Delete", func() error { return st.Delete(ctx, "/w", 0) }},
		{"Txn", func() error {
			_, err := st.Txn(ctx, coord.SetOp("/w", []byte("3"), 0), coord.CreateOp("/w2", nil, coord.Persistent))
			return err
		}},
	} {
		f.DropNextWrite()
		err := w.do()
		if !errors.Is(err, coord.ErrOutcomeUnknown) || !errors.Is(err, coord.ErrUnavailable) {
			t.Fatalf("%s whose request was lost: %v, want ErrOutcomeUnknown and ErrUnavailable", w.name, err)
		}
		data, stat, err := obs.Get(ctx, "/w")
		if err != nil || string(data) != "1" || stat.Version != 0 {
			t.Fatalf("after a %s that was lost, /w is %q at %d (%v), want \"1\" at 0", w.name, data, stat.Version, err)
		}
		if _, ok, err := obs.Exists(ctx, "/w2"); err != nil || ok {
			t.Fatalf("after a %s that was lost, /w2 exists: %v, %v", w.name, ok, err)
		}
	}
	// The fault is spent: the next write goes through.
	_, err = st.Set(ctx, "/w", []byte("4"), 0)
	must(t, err)
}

// A create cut off before it reached the server (its request held by a
// stall, then the connection cut) was not applied: Create sends it again
// and returns a new node, and does not take for its own a node with the
// same data made earlier, nor one another client made meanwhile.
func testFaultCreateCutBeforeServer(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	obs := s.open(t)
	for i, mode := range []coord.Mode{coord.Sequential, coord.EphemeralSequential} {
		dir := fmt.Sprintf("/d%d", i)
		_, err := obs.Create(ctx, dir, nil, coord.Persistent)
		must(t, err)
		before, err := obs.Create(ctx, dir+"/n-", []byte("x"), coord.Sequential)
		must(t, err)
		// The store has seen that node (a GetMany for the persistent mode,
		// whose lookup could take it for its own, an Exists of the parent
		// for the other): what it made must be newer.
		if mode == coord.Sequential {
			_, err = st.GetMany(ctx, before)
		} else {
			_, _, err = st.Exists(ctx, dir)
		}
		must(t, err)
		f.Stall()
		res := make(chan error, 1)
		var made string
		go func() {
			p, err := st.Create(ctx, dir+"/n-", []byte("x"), mode)
			made = p
			res <- err
		}()
		time.Sleep(100 * time.Millisecond) // sent, held by the stall
		_, err = obs.Create(ctx, dir+"/n-", []byte("other"), coord.Sequential)
		must(t, err)
		f.Block()
		f.Cut()
		resume(t, f)
		select {
		case err := <-res:
			must(t, err)
		case <-time.After(2 * Timeout):
			t.Fatalf("%v: Create did not return", mode)
		}
		kids, err := obs.Children(ctx, dir)
		must(t, err)
		if len(kids) != 3 {
			t.Fatalf("%v: %d nodes after a create cut before the server and two others: %v", mode, len(kids), kids)
		}
		data, _, err := obs.Get(ctx, made)
		if err != nil || string(data) != "x" || made == dir+"/"+kids[0] {
			t.Fatalf("%v: Create returned %s (%q, %v), the nodes are %v", mode, made, data, err, kids)
		}
	}
}

// A call whose deadline passes while the connection is stalled returns by
// its deadline (with room for a loaded machine) with an error that is both
// context.DeadlineExceeded and ErrUnavailable: the backend did not answer.
// A call cancelled in flight is context.Canceled, and not ErrUnavailable:
// the caller gave up, which says nothing of the backend.
func testFaultDeadlineInFlight(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st, f := s.openFaulty(t)
	_, err := st.Create(ctx, "/n", []byte("x"), coord.Persistent)
	must(t, err)
	const deadline = 500 * time.Millisecond
	for _, call := range []struct {
		what string
		do   func(context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, _, err := st.Get(ctx, "/n"); return err }},
		{"Children", func(ctx context.Context) error { _, err := st.Children(ctx, "/n"); return err }},
		{"Set", func(ctx context.Context) error {
			_, err := st.Set(ctx, "/n", []byte("y"), coord.AnyVersion)
			return err
		}},
		{"Create", func(ctx context.Context) error {
			_, err := st.Create(ctx, "/n/c", nil, coord.Persistent)
			return err
		}},
	} {
		// One short stall per call, contact confirmed between them: a
		// session silent for most of its timeout is ended by the store
		// (ZooKeeper's guard), and a write in flight is then
		// ErrOutcomeUnknown before its deadline.
		f.Stall()
		dctx, cancel := context.WithTimeout(ctx, deadline)
		began := time.Now()
		err := call.do(dctx)
		took := time.Since(began)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, coord.ErrUnavailable) {
			t.Errorf("%s on a stalled connection, past its deadline: %v, want context.DeadlineExceeded and ErrUnavailable", call.what, err)
		}
		if took > deadline+Timeout/4 {
			t.Errorf("%s on a stalled connection returned %v after its deadline", call.what, took-deadline)
		}
		cctx, cancelNow := context.WithCancel(ctx)
		time.AfterFunc(deadline/2, cancelNow)
		err = call.do(cctx)
		cancelNow()
		if !errors.Is(err, context.Canceled) || errors.Is(err, coord.ErrUnavailable) {
			t.Errorf("%s on a stalled connection, cancelled: %v, want context.Canceled alone", call.what, err)
		}
		resume(t, f)
		_, _, err = st.Get(ctx, "/n")
		must(t, err)
	}
}
