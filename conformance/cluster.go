package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
)

// Cluster is a running cluster of the backend's servers, of the suite's own
// (three members, say), whose members a case may stop and start again.
type Cluster interface {
	// Open returns a new store on namespace ns that knows every member,
	// with the given session timeout (TTL). The suite closes it.
	Open(t testing.TB, ns string, sessionTimeout time.Duration) coord.Store
	// Members is the number of members.
	Members() int
	// Leader returns the index of the member that leads, waiting (within
	// Timeout) for the running members to agree on one.
	Leader(t testing.TB) int
	// Stop stops member i as a crash would (its data stays).
	Stop(t testing.TB, i int)
	// Start starts stopped member i again and returns once it has rejoined.
	Start(t testing.TB, i int)
}

// quorumDeadline is the deadline of a call made while the quorum is gone.
const quorumDeadline = 3 * time.Second

func (s *suite) cluster(t *testing.T) *trackedCluster {
	t.Helper()
	if s.b.Cluster == nil {
		t.Skip("the backend offers no Cluster")
	}
	c := &trackedCluster{Cluster: s.b.Cluster(t), down: map[int]bool{}}
	// A case that fails with members down leaves them up for the next.
	t.Cleanup(func() {
		for i := range c.down {
			c.Start(t, i)
		}
	})
	return c
}

type trackedCluster struct {
	Cluster
	down map[int]bool
}

func (c *trackedCluster) Stop(t testing.TB, i int) {
	c.down[i] = true
	c.Cluster.Stop(t, i)
}

func (c *trackedCluster) Start(t testing.TB, i int) {
	c.Cluster.Start(t, i)
	delete(c.down, i)
}

// writer sets a node again and again until stopped, each Set with a
// deadline of Timeout, and records the first failure. A set in flight on a
// connection that dies with its server is ErrOutcomeUnknown, as the
// contract allows: it counts those apart (unknown).
type writer struct {
	stop    chan struct{}
	once    sync.Once
	done    chan struct{}
	mu      sync.Mutex
	n       int
	unknown int
	acked   string   // the value of the newest set that succeeded
	since   []string // the values of the sets of unknown outcome after it
	err     error
}

func startWriter(st coord.Store, path string) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), Timeout)
			value := strconv.Itoa(i)
			_, err := st.Set(ctx, path, []byte(value), coord.AnyVersion)
			cancel()
			w.mu.Lock()
			switch {
			case errors.Is(err, coord.ErrOutcomeUnknown):
				w.unknown++
				w.since = append(w.since, value)
			case err != nil && w.err == nil:
				w.err = fmt.Errorf("set number %d: %w", i, err)
			case err == nil:
				w.n++
				w.acked, w.since = value, nil
			}
			w.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return w
}

// count returns the number of sets that succeeded so far and the first
// error; more sets of unknown outcome than members stopped is one.
func (w *writer) count() (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil && w.unknown > 2 {
		return w.n, fmt.Errorf("%d sets of unknown outcome: more than the two in flight when a member stopped", w.unknown)
	}
	return w.n, w.err
}

// end stops w (once) and returns what count does.
func (w *writer) end() (int, error) {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return w.count()
}

// final checks, once w has ended, that data (the node's value read after
// the end) is one w may have left: the newest set that succeeded, or one of
// unknown outcome made after it (a set cut short as a member stopped may or
// may not have been applied, and is often not).
func (w *writer) final(data []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if string(data) == w.acked || slices.Contains(w.since, string(data)) {
		return nil
	}
	return fmt.Errorf("the node holds %q: neither the newest acknowledged set (%q) nor one of unknown outcome after it (%q)", data, w.acked, w.since)
}

// waitWrites waits until w has made more than n sets.
func waitWrites(t *testing.T, w *writer, n int, what string) {
	t.Helper()
	for deadline := time.Now().Add(Timeout); ; time.Sleep(20 * time.Millisecond) {
		got, err := w.count()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got > n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no set succeeded within %v", what, Timeout)
		}
	}
}

// Members of a cluster stop mid-run, a follower and then the leader, each
// started again before the next: calls in flight and calls made meanwhile
// succeed within their deadline; the session, its ephemeral node and a
// Mutex it holds survive; a watch armed before sees what is written after.
// With the quorum gone, a call fails within its deadline with
// ErrUnavailable, and once the quorum is back calls succeed again.
func testClusterMemberLoss(t *testing.T, s *suite) {
	c := s.cluster(t)
	ctx := ctxT(t)
	st := c.Open(t, s.ns, restartSessionTimeout)
	t.Cleanup(func() { _ = st.Close() })
	other := c.Open(t, s.ns, restartSessionTimeout)
	t.Cleanup(func() { _ = other.Close() })
	_, err := st.Create(ctx, "/dir", []byte("0"), coord.Persistent)
	must(t, err)
	_, err = st.Create(ctx, "/e", []byte("mine"), coord.Ephemeral)
	must(t, err)
	sess, err := st.Session(ctx)
	must(t, err)
	holder := coord.NewMutex(st, "/lock", "lock-", nil)
	must(t, holder.Lock(ctx))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	data, err := other.WatchData(wctx, "/dir")
	must(t, err)
	next(t, data)

	w := startWriter(st, "/dir")
	defer w.end()
	waitWrites(t, w, 0, "before any member stopped")
	for _, role := range []string{"a follower", "the leader"} {
		lead := c.Leader(t)
		victim := lead
		if role == "a follower" {
			victim = (lead + 1) % c.Members()
		}
		n, _ := w.count()
		c.Stop(t, victim)
		stopped := time.Now()
		// A call made while the member is down, from the other store.
		name := "/dir-" + strconv.Itoa(victim)
		if _, err := other.Create(ctx, name, []byte(role), coord.Persistent); err != nil {
			t.Fatalf("a create with %s (member %d) down: %v", role, victim, err)
		}
		if d, _, err := other.Get(ctx, name); err != nil || string(d) != role {
			t.Fatalf("a read with %s (member %d) down: %q, %v", role, victim, d, err)
		}
		waitWrites(t, w, n+3, "sets with "+role+" down")
		t.Logf("%s (member %d) down: calls went on within %v", role, victim, time.Since(stopped).Round(time.Millisecond))
		c.Start(t, victim)
	}
	if _, err := w.end(); err != nil {
		t.Fatalf("sets while members stopped: %v", err)
	}
	// The node's value now is what the writer left, and the watch armed
	// before the members stopped delivers it.
	last, _, err := st.Get(ctx, "/dir")
	must(t, err)
	if err := w.final(last); err != nil {
		t.Fatal(err)
	}
	until(t, data, fmt.Sprintf("the value the writer left (%q), through a watch armed before the members stopped", last), func(ev coord.Event) bool { return bytes.Equal(ev.Data, last) })
	select {
	case <-sess.Done():
		t.Fatalf("the session ended when one member at a time stopped: %v", sess.Err())
	case <-holder.Lost():
		t.Fatal("the Mutex was lost when one member at a time stopped")
	default:
	}
	if d, _, err := other.Get(ctx, "/e"); err != nil || string(d) != "mine" {
		t.Fatalf("the ephemeral node after the member losses: %q, %v", d, err)
	}

	// The quorum goes: all members but one stop.
	lead := c.Leader(t)
	for i := 0; i < c.Members(); i++ {
		if i != lead && len(c.down) < c.Members()-1 {
			c.Stop(t, i)
		}
	}
	for _, call := range []struct {
		what string
		do   func(context.Context) error
	}{
		{"a set", func(ctx context.Context) error {
			_, err := other.Set(ctx, "/dir", []byte("no quorum"), coord.AnyVersion)
			return err
		}},
		{"a read", func(ctx context.Context) error { _, _, err := other.Get(ctx, "/dir"); return err }},
	} {
		qctx, qcancel := context.WithTimeout(ctx, quorumDeadline)
		began := time.Now()
		err := call.do(qctx)
		took := time.Since(began)
		qcancel()
		if !errors.Is(err, coord.ErrUnavailable) && !(call.what == "a set" && errors.Is(err, coord.ErrOutcomeUnknown)) {
			t.Fatalf("%s without a quorum: %v, want ErrUnavailable", call.what, err)
		}
		if took > quorumDeadline+Timeout/4 {
			t.Fatalf("%s without a quorum returned after %v, its deadline was %v", call.what, took, quorumDeadline)
		}
		t.Logf("%s without a quorum: %v after %v", call.what, err, took.Round(time.Millisecond))
	}
	for i := range c.down {
		c.Start(t, i)
	}
	if _, err := other.Set(ctx, "/dir", []byte("quorum back"), coord.AnyVersion); err != nil {
		t.Fatalf("a set once the quorum is back: %v", err)
	}
	if d, _, err := st.Get(ctx, "/dir"); err != nil || string(d) != "quorum back" {
		t.Fatalf("a read once the quorum is back: %q, %v", d, err)
	}
}
