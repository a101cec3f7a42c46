package proxyagent_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/models"
)

// movingStore is a store that gives up on its session while the server
// keeps it, as a store does when it cannot confirm its session in time
// (zkstore's watchdog over a quorum loss, a lease whose keepalives go
// unanswered): at each move, the session it handed out ends, and later
// calls go through the next of its real stores, under another session. The
// stores left behind stay open, so their sessions, and the ephemeral nodes
// they own, live on in the server.
type movingStore struct {
	mu     sync.Mutex
	stores []coord.Store // calls go to stores[0]; a move drops it
	given  *givenUp      // stores[0]'s session as handed out
	gate   *gate         // when set, Session waits at it
}

// givenUp is a real session that movingStore can end on the client side
// alone.
type givenUp struct {
	coord.Session
	done chan struct{}
	once sync.Once
}

func (g *givenUp) Done() <-chan struct{} { return g.done }

func (g *givenUp) Err() error {
	select {
	case <-g.done:
		return coord.ErrSessionExpired
	default:
		return nil
	}
}

// gate holds Session calls until open is closed; held is closed when the
// first one waits.
type gate struct {
	open, held chan struct{}
	once       sync.Once
}

// move ends the session handed out (on the client side) and sends later
// calls to the next store. With hold, Session calls wait until release is
// called; held is closed when the first one waits (the agent is about to
// register again).
func (m *movingStore) move(hold bool) (held <-chan struct{}, release func()) {
	m.mu.Lock()
	g := m.given
	m.stores, m.given = m.stores[1:], nil
	m.gate = nil
	if hold {
		m.gate = &gate{open: make(chan struct{}), held: make(chan struct{})}
		held, release = m.gate.held, func() { close(m.gate.open) }
	}
	m.mu.Unlock()
	if g != nil {
		g.once.Do(func() { close(g.done) })
	}
	return held, release
}

func (m *movingStore) store() coord.Store {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stores[0]
}

func (m *movingStore) Session(ctx context.Context) (coord.Session, error) {
	m.mu.Lock()
	g := m.gate
	m.mu.Unlock()
	if g != nil {
		g.once.Do(func() { close(g.held) })
		select {
		case <-g.open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.given == nil {
		sess, err := m.stores[0].Session(ctx)
		if err != nil {
			return nil, err
		}
		m.given = &givenUp{Session: sess, done: make(chan struct{})}
	}
	return m.given, nil
}

func (m *movingStore) Create(ctx context.Context, path string, data []byte, mode coord.Mode) (string, error) {
	return m.store().Create(ctx, path, data, mode)
}
func (m *movingStore) Get(ctx context.Context, path string) ([]byte, coord.Stat, error) {
	return m.store().Get(ctx, path)
}
func (m *movingStore) GetMany(ctx context.Context, paths ...string) ([]coord.GetResult, error) {
	return m.store().GetMany(ctx, paths...)
}
func (m *movingStore) Set(ctx context.Context, path string, data []byte, version int64) (coord.Stat, error) {
	return m.store().Set(ctx, path, data, version)
}
func (m *movingStore) Delete(ctx context.Context, path string, version int64) error {
	return m.store().Delete(ctx, path, version)
}
func (m *movingStore) Exists(ctx context.Context, path string) (coord.Stat, bool, error) {
	return m.store().Exists(ctx, path)
}
func (m *movingStore) Children(ctx context.Context, path string) ([]string, error) {
	return m.store().Children(ctx, path)
}
func (m *movingStore) WatchData(ctx context.Context, path string) (<-chan coord.Event, error) {
	return m.store().WatchData(ctx, path)
}
func (m *movingStore) WatchChildren(ctx context.Context, path string) (<-chan coord.Event, error) {
	return m.store().WatchChildren(ctx, path)
}
func (m *movingStore) Txn(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	return m.store().Txn(ctx, ops...)
}
func (m *movingStore) Limits() coord.Limits { return m.store().Limits() }
func (m *movingStore) Close() error         { return nil } // the stores are closed by the test

// TestOwnOldNode: an agent whose store gave up on its session while the
// server keeps it finds its node still there, owned by that session.
//
// It deletes the node and makes it again under its new session at once,
// rather than waiting, unregistered and answering nothing, for the server
// to end the old session (which it does not here: the old store stays
// open). Actions go on being delivered in order, once each, and answered.
//
// Then the store gives up on that session too, and the proxy is set
// mark_offline before the agent registers again: the agent finds the mark
// on its old node and shuts down cleanly instead of registering online.
// The node and the fence go, and the mark_offline call returns.
func TestOwnOldNode(t *testing.T) {
	noLeaks(t)
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setup(t, s)
		first, second := open(), open()
		ms := &movingStore{stores: []coord.Store{first, second, open()}}
		r := &recorder{}
		a := startAgent(t, ms, "agent_1", r)
		old, err := first.Session(ctx)
		must(t, err)
		sl, err := models.GetSlot(ctx, s, product, 1)
		must(t, err)
		must(t, sl.Update(ctx, s))
		p := models.GetProxyPath(product) + "/agent_1"
		if st, _, err := s.Exists(ctx, p); err != nil || st.Owner != old.ID() {
			t.Fatalf("before the move: %+v, %v; want the node of session %s", st, err, old.ID())
		}

		ms.move(false)
		waitFor(t, "the agent registered under its new session", func() bool {
			st, ok, err := s.Exists(ctx, p)
			return a.Registrations() == 2 && err == nil && ok && st.Owner != old.ID()
		})
		if old.Err() != nil {
			t.Fatalf("the old session ended on the server (%v): the case needs it alive", old.Err())
		}
		newSess, err := second.Session(ctx)
		must(t, err)
		st, _, err := s.Exists(ctx, p)
		must(t, err)
		if !st.Ephemeral || st.Owner != newSess.ID() {
			t.Fatalf("the node is %+v, want an ephemeral of the new session %s", st, newSess.ID())
		}
		pi, err := models.GetProxyInfo(ctx, s, product, "agent_1")
		must(t, err)
		if pi.State != models.PROXY_STATE_ONLINE {
			t.Fatalf("registered again as %q", pi.State)
		}
		sl.State.LastOpTs = "after the move"
		must(t, sl.Update(ctx, s))
		seqs := actionSeqs(t, s)
		if !answered(t, s, seqs[len(seqs)-1], "agent_1") {
			t.Fatalf("the confirmed action %d after the move: not answered", seqs[len(seqs)-1])
		}
		waitFor(t, "the last action delivered", func() bool { return a.Last() == seqs[len(seqs)-1] })
		if got := r.seqs(); !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Fatalf("deliveries out of order or repeated: %v", got)
		}

		// Marked offline between sessions.
		held, release := ms.move(true)
		<-held // the agent is about to register again
		marked := make(chan error, 1)
		go func() { marked <- models.SetProxyStatus(ctx, s, product, "agent_1", models.PROXY_STATE_MARK_OFFLINE) }()
		waitFor(t, "the mark on the old node", func() bool {
			pi, err := models.GetProxyInfo(ctx, s, product, "agent_1")
			return err == nil && pi.State == models.PROXY_STATE_MARK_OFFLINE
		})
		release()
		select {
		case <-a.Done():
		case <-ctx.Done():
			t.Fatal("the agent did not stop")
		}
		if err := a.Err(); err != nil {
			t.Fatalf("the agent stopped with %v, want a clean shutdown", err)
		}
		if err := <-marked; err != nil {
			t.Fatalf("mark_offline: %v", err)
		}
		for _, path := range []string{p, coord.Join(models.GetProxyFencePath(product), pi.Addr)} {
			if _, ok, err := s.Exists(ctx, path); err != nil || ok {
				t.Fatalf("%s after the clean shutdown: exists %v, %v", path, ok, err)
			}
		}
		if a.Registrations() != 2 {
			t.Fatalf("registered %d times, want twice", a.Registrations())
		}
	})
}
