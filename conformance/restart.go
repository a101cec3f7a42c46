package conformance

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
)

// Server is a server of the backend that a test stops and starts again, as
// an operator's restart or a crash and reboot does: its data is kept and it
// comes back on the same address.
type Server interface {
	// Open returns a new store on namespace ns of this server, with the
	// given session timeout (TTL). The suite closes it.
	Open(t testing.TB, ns string, sessionTimeout time.Duration) coord.Store
	// Stop stops the server process: its connections close and new ones
	// are refused until Start.
	Stop(t testing.TB)
	// Start starts the stopped server again and returns once it serves.
	Start(t testing.TB)
}

// restartSessionTimeout is the session timeout of the stores that must ride
// out a restart: longer than a stop of a second plus the server's start on a
// loaded machine (a ZooKeeper JVM, a Consul server electing itself).
const restartSessionTimeout = 20 * time.Second

func (s *suite) restartable(t *testing.T) Server {
	t.Helper()
	if s.b.Restartable == nil {
		t.Skip("the backend offers no Restartable")
	}
	srv := &tracked{Server: s.b.Restartable(t)}
	// A case that fails while the server is down leaves it up for the next.
	t.Cleanup(func() {
		if srv.down {
			srv.Start(t)
		}
	})
	return srv
}

// openOn opens a store on the case's namespace of srv, closed at the end.
func (s *suite) openOn(t *testing.T, srv Server, sessionTimeout time.Duration) coord.Store {
	st := srv.Open(t, s.ns, sessionTimeout)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// tracked knows whether its server is down.
type tracked struct {
	Server
	down bool
}

func (s *tracked) Stop(t testing.TB) {
	s.down = true
	s.Server.Stop(t)
}

func (s *tracked) Start(t testing.TB) {
	s.Server.Start(t)
	s.down = false
}

// result is what a call made in the background returned.
type result struct {
	what string
	data []byte
	err  error
}

// A restart of the server shorter than the session timeout loses nothing:
// calls made while it is down succeed once it is back, within their
// deadline; the session, its ephemeral node and a Mutex it holds survive;
// a waiting contender keeps waiting; and watches armed before the restart
// deliver the state after it.
func testRestartRiddenOut(t *testing.T, s *suite) {
	srv := s.restartable(t)
	ctx := ctxT(t)
	st, other := s.openOn(t, srv, restartSessionTimeout), s.openOn(t, srv, restartSessionTimeout)
	if _, err := st.Create(ctx, "/dir", []byte("before"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, "/e", []byte("mine"), coord.Ephemeral); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, "/s", []byte("before"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	sess, err := st.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	holder := coord.NewMutex(st, "/lock", "lock-", nil)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	contender := coord.NewMutex(other, "/lock", "lock-", nil)
	contended := make(chan error, 1)
	go func() { contended <- contender.Lock(ctx) }()
	waitChildren(t, other, "/lock", 2)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	data, err := st.WatchData(wctx, "/dir")
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, data); !bytes.Equal(ev.Data, []byte("before")) {
		t.Fatalf("first data event %q, want before", ev.Data)
	}
	kids, err := st.WatchChildren(wctx, "/dir")
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, kids); len(ev.Children) != 0 {
		t.Fatalf("first children event %v, want none", ev.Children)
	}

	stopped := time.Now()
	srv.Stop(t)
	time.Sleep(200 * time.Millisecond) // calls made while it is down
	results := make(chan result, 3)
	go func() {
		d, _, err := st.Get(ctx, "/dir")
		results <- result{"get", d, err}
	}()
	go func() {
		_, err := st.Create(ctx, "/dir/made", []byte("x"), coord.Persistent)
		results <- result{"create", nil, err}
	}()
	go func() {
		// Refused while the server is down, so never applied: a write
		// that waits, not one in doubt.
		_, err := st.Set(ctx, "/s", []byte("during"), 0)
		results <- result{"set", nil, err}
	}()
	time.Sleep(time.Second)
	srv.Start(t)
	t.Logf("the server was down %v", time.Since(stopped).Round(time.Millisecond))
	for i := 0; i < 3; i++ {
		select {
		case r := <-results:
			if r.err != nil {
				t.Errorf("%s made while the server was down: %v", r.what, r.err)
			} else if r.what == "get" && !bytes.Equal(r.data, []byte("before")) {
				t.Errorf("get made while the server was down read %q, want before", r.data)
			}
		case <-time.After(Timeout):
			t.Fatal("a call made while the server was down did not return after it was back")
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The session and what it holds outlived the restart.
	select {
	case <-sess.Done():
		t.Fatalf("the session ended over a restart shorter than its timeout: %v", sess.Err())
	case <-holder.Lost():
		t.Fatal("the Mutex was lost over a restart shorter than the session timeout")
	case err := <-contended:
		t.Fatalf("the contender returned (%v) while the holder still holds the lock", err)
	default:
	}
	if d, _, err := other.Get(ctx, "/e"); err != nil || !bytes.Equal(d, []byte("mine")) {
		t.Fatalf("the ephemeral node after the restart: %q, %v", d, err)
	}
	if d, st, err := other.Get(ctx, "/s"); err != nil || !bytes.Equal(d, []byte("during")) || st.Version != 1 {
		t.Fatalf("the node set during the restart: %q at %d, %v; want \"during\" at 1", d, st.Version, err)
	}

	// Watches armed before the restart see changes made after it.
	if _, err := other.Set(ctx, "/dir", []byte("after"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	until(t, data, "the data set after the restart", func(ev coord.Event) bool { return bytes.Equal(ev.Data, []byte("after")) })
	until(t, kids, "the child made during the restart", func(ev coord.Event) bool { return slices.Equal(ev.Children, []string{"made"}) })
	if names, err := other.Children(ctx, "/dir"); err != nil || !slices.Equal(names, []string{"made"}) {
		t.Fatalf("after the restart /dir holds %v (%v), want [made]", names, err)
	}

	// The lock passes on as usual.
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-contended:
		if err != nil {
			t.Fatalf("the contender after the holder unlocked: %v", err)
		}
	case <-time.After(Timeout):
		t.Fatal("the contender did not get the lock after the holder unlocked")
	}
	if err := contender.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// A server down for longer than the session timeout: the holder of a Mutex
// learns it lost the lock while the server is still down (no later than its
// session's timeout after the stop, on its own clock), and once the server is
// back another process gets the lock, and the first store works again under a
// new session.
func testRestartPastSession(t *testing.T, s *suite) {
	srv := s.restartable(t)
	ctx := ctxT(t)
	open := func() coord.Store { return s.openOn(t, srv, faultSessionTimeout) }
	st := open()
	holder := coord.NewMutex(st, "/lock", "lock-", nil)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	sess, err := st.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lostAt, lost := stamp(holder.Lost())
	stopped := time.Now() // (a graceful stop may take seconds)
	srv.Stop(t)
	select {
	case <-lost:
	case <-time.After(Timeout):
		t.Fatalf("the holder has not lost the lock %v after the server stopped", Timeout)
	}
	if d := lostAt.Sub(stopped); d >= faultSessionTimeout {
		t.Fatalf("the holder lost the lock %v after the server stopped, not within the session timeout %v", d, faultSessionTimeout)
	}
	waitDone(t, sess, coord.ErrSessionExpired)
	// Down past the session timeout, as a server that takes its time.
	time.Sleep(time.Until(stopped.Add(faultSessionTimeout + time.Second)))
	srv.Start(t)
	restarted := time.Now()

	other := open()
	next := coord.NewMutex(other, "/lock", "lock-", nil)
	if err := next.Lock(ctx); err != nil {
		t.Fatalf("another process after the restart: %v", err)
	}
	t.Logf("the holder lost the lock %v after the stop; another got it %v after the restart",
		lostAt.Sub(stopped).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	if err := holder.Unlock(ctx); err != nil { // lost: nothing to release
		t.Fatalf("Unlock of the lost lock: %v", err)
	}
	if err := next.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// The first store is usable again, under a new session.
	again := coord.NewMutex(st, "/lock", "lock-", nil)
	if err := again.Lock(ctx); err != nil {
		t.Fatalf("the first store after the restart: %v", err)
	}
	sess2, err := st.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sess2.ID() == sess.ID() {
		t.Fatalf("the store kept session %s, which it had given up", sess.ID())
	}
	if err := again.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitChildren waits until path has n children.
func waitChildren(t *testing.T, st coord.Store, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		kids, err := st.Children(context.Background(), path)
		if err == nil && len(kids) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %v (%v), want %d children", path, kids, err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
