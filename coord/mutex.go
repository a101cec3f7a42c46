package coord

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// ErrLocked: TryLock found the lock held by another contender.
var ErrLocked = errors.New("lock held by another contender")

// ErrLockLost: the lock was lost while it was held or awaited: its session
// ended, or its node was deleted by someone else (a forced removal).
var ErrLockLost = errors.New("lock lost")

// cleanupTimeout bounds the clean-up of a contender node after a failed
// Lock, which runs on a context of its own (the caller's may be done).
const cleanupTimeout = 10 * time.Second

// Mutex is a distributed lock on a directory node, ZooKeeper's recipe: each
// contender creates an ephemeral sequential child "<prefix><seq>" owned by
// the store's session; the lowest sequence number holds the lock; the others
// each wait on the node just before theirs (no herd). The holder's node
// carries data (Codis keeps a JSON description of the holder there).
//
// What a holder can rely on:
//   - Lost is closed as soon as the lock may no longer be held: the session
//     ended (which the store reports before the server can have given the
//     lock to anyone else; see Store.Session) or the node was deleted.
//   - Token is the node's sequence number: a later holder has a larger one.
//   - Fence is an op to put in a Txn: the transaction then fails once this
//     holder has lost the lock, so a stale holder cannot write.
//
// A waiter whose session ends stops waiting with ErrLockLost. A create
// whose outcome is unknown (the reply was lost, or ctx ended while it was in
// flight) leaves no node behind: Lock finds the nodes its session owns that
// no contender of this process claims, and deletes them.
//
// A Mutex is one contender: Lock, then Unlock, then Lock again. Its methods
// are safe for concurrent use.
type Mutex struct {
	s      Store
	dir    string
	prefix string
	data   []byte

	mu    sync.Mutex
	node  string
	seq   int64
	sess  Session
	lost  chan struct{}
	stop  context.CancelFunc
	watch chan struct{} // closed when the goroutine watching the node ends
}

// NewMutex returns a mutex on dir whose nodes are named prefix+sequence
// ("lock-" makes "lock-0000000007"; "" makes bare numbers). dir is created
// when missing.
func NewMutex(s Store, dir, prefix string, data []byte) *Mutex {
	return &Mutex{s: s, dir: dir, prefix: prefix, data: data}
}

// contenders records the contender nodes of this process's Mutexes, per
// store and directory, so that the clean-up after an unknown outcome never
// takes a live contender's node for its own. Its lock also orders a create
// with that clean-up.
var contenders = struct {
	sync.Mutex
	nodes map[contenderKey]bool
}{nodes: map[contenderKey]bool{}}

type contenderKey struct {
	s    Store
	path string
}

// Lock blocks until the lock is held, or ctx ends, or the session ends while
// waiting (ErrLockLost). On error nothing is held and no node is left.
func (m *Mutex) Lock(ctx context.Context) error {
	return m.lock(ctx, false)
}

// TryLock takes the lock if no other contender holds or awaits it, and
// returns an error wrapping ErrLocked otherwise, without waiting.
func (m *Mutex) TryLock(ctx context.Context) error {
	return m.lock(ctx, true)
}

func (m *Mutex) lock(ctx context.Context, try bool) error {
	op := "lock"
	if try {
		op = "trylock"
	}
	m.mu.Lock()
	held := m.node != ""
	m.mu.Unlock()
	if held {
		return Errorf(op, m.dir, fmt.Errorf("%w: already held", ErrInvalidArgument))
	}
	sess, err := m.s.Session(ctx)
	if err != nil {
		return err
	}
	// Calls made until the lock is held end with the session: a contender
	// cut off from its server gives up when its session is lost, not when
	// the link heals.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	node, kids, own, err := m.create(ctx, sess)
	if err != nil {
		if sess.Err() != nil {
			return Errorf(op, m.dir, fmt.Errorf("%w: the session ended: %v", ErrLockLost, sess.Err()))
		}
		return err
	}
	if err := m.wait(ctx, sess, node, try, kids, own.events); err != nil {
		own.stop()
		if sess.Err() == nil {
			m.release(ctx, node)
		} else {
			// The node goes with the session; deleting it could only wait
			// for a server that cannot be reached.
			m.forget(node)
		}
		return Errorf(op, node, err)
	}
	m.hold(node, sess, own)
	return nil
}

// ownWatch is the data watch of a contender's own node, armed in the
// background as soon as the node is made, so that no call waits for it:
// its events tell the waiter, and then the holder, that the node was
// deleted. events is closed when the watch ends (stop ends it); a watch
// that could not be armed sends one event with Err set.
type ownWatch struct {
	events chan Event
	stop   context.CancelFunc
}

// watchOwn starts arming the watch of node.
func (m *Mutex) watchOwn(node string) *ownWatch {
	wctx, stop := context.WithCancel(context.Background())
	w := &ownWatch{events: make(chan Event), stop: stop}
	go func() {
		defer close(w.events)
		events, err := m.s.WatchData(wctx, node)
		if err != nil {
			select {
			case w.events <- Event{Path: node, Err: err}:
			case <-wctx.Done():
			}
			return
		}
		for ev := range events {
			select {
			case w.events <- ev:
			case <-wctx.Done():
				return
			}
		}
	}()
	return w
}

// create makes this contender's node, owned by sess, and starts its watch.
// It also returns the contenders listed after the node was made (nil if
// that listing failed), for wait's first look.
func (m *Mutex) create(ctx context.Context, sess Session) (string, []string, *ownWatch, error) {
	contenders.Lock()
	defer contenders.Unlock()
	node, err := CreateAll(ctx, m.s, Join(m.dir, m.prefix), m.data, EphemeralSequential)
	if err != nil {
		if unknownOutcome(err) {
			m.removeOrphans(ctx, sess)
		}
		return "", nil, nil, err
	}
	contenders.nodes[contenderKey{m.s, node}] = true
	own := m.watchOwn(node)
	// The contenders are listed while the node's owner is read: two reads
	// that do not depend on each other, one round trip instead of two. The
	// listing is used only once the owner is known to be sess.
	var kids []string
	var kerr error
	listed := make(chan struct{})
	go func() {
		defer close(listed)
		kids, kerr = m.s.Children(ctx, m.dir)
	}()
	// A create can run on a session made after sess (a client library may
	// queue requests across a reconnect): then the lock would not end with
	// the session the holder watches.
	st, ok, err := m.s.Exists(ctx, node)
	<-listed
	if err == nil && ok && st.Owner == sess.ID() && sess.Err() == nil {
		if kerr != nil {
			kids = nil // wait lists them again, and reports its own error
		}
		return node, kids, own, nil
	}
	own.stop()
	delete(contenders.nodes, contenderKey{m.s, node})
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_ = m.s.Delete(cctx, node, AnyVersion)
	if err != nil {
		return "", nil, nil, err
	}
	return "", nil, nil, Errorf("lock", node, fmt.Errorf("%w: the contender node is not owned by session %s", ErrLockLost, sess.ID()))
}

// unknownOutcome: the create may or may not have been applied.
func unknownOutcome(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// removeOrphans deletes the nodes under dir that sess owns and that no
// contender of this process claims: what a create with an unknown outcome
// made. The caller holds contenders' lock.
func (m *Mutex) removeOrphans(ctx context.Context, sess Session) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	kids, err := m.s.Children(cctx, m.dir)
	if err != nil {
		return
	}
	for _, k := range SortBySequence(kids, m.prefix) {
		p := Join(m.dir, k)
		if contenders.nodes[contenderKey{m.s, p}] {
			continue
		}
		if st, ok, err := m.s.Exists(cctx, p); err == nil && ok && st.Owner == sess.ID() {
			_ = m.s.Delete(cctx, p, AnyVersion)
		}
	}
}

// forget drops node from this process's contenders.
func (m *Mutex) forget(node string) {
	contenders.Lock()
	delete(contenders.nodes, contenderKey{m.s, node})
	contenders.Unlock()
}

// release deletes a contender node that does not hold the lock.
func (m *Mutex) release(ctx context.Context, node string) {
	m.forget(node)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_ = m.s.Delete(cctx, node, AnyVersion)
}

// wait returns when node is the lowest contender, or at once with ErrLocked
// when try is set and it is not. first, if not nil, is a listing of the
// contenders made after node was, to look at before listing again. own
// carries the events of node's watch: a waiter whose node is deleted stops
// with ErrLockLost.
func (m *Mutex) wait(ctx context.Context, sess Session, node string, try bool, first []string, own <-chan Event) error {
	me := Base(node)
	lost := func(err error) error {
		if sess.Err() != nil {
			return fmt.Errorf("%w: the session ended while waiting: %v", ErrLockLost, sess.Err())
		}
		return err
	}
	for {
		kids, err := first, error(nil)
		if kids == nil {
			kids, err = m.s.Children(ctx, m.dir)
		}
		first = nil
		if err != nil {
			return lost(err)
		}
		order := SortBySequence(kids, m.prefix)
		idx := -1
		for j, c := range order {
			if c == me {
				idx = j
				break
			}
		}
		switch {
		case idx < 0:
			return fmt.Errorf("%w: the contender node was deleted", ErrLockLost)
		case idx == 0:
			return nil
		case try:
			return fmt.Errorf("%w: %s is before %s", ErrLocked, order[0], me)
		}
		if err := m.waitGone(ctx, Join(m.dir, order[idx-1]), own); err != nil {
			return lost(err)
		}
	}
}

// waitGone returns when the node at prev is gone (or its watch ends) or
// when ctx ends, which Lock makes happen when the session ends. own carries
// the events of the waiter's own node: its deletion ends the wait with
// ErrLockLost.
func (m *Mutex) waitGone(ctx context.Context, prev string, own <-chan Event) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := m.s.WatchData(wctx, prev)
	if err != nil {
		return err
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok || ev.Err != nil || !ev.Exists {
				return ctx.Err()
			}
		case ev, ok := <-own:
			switch {
			case !ok:
				return fmt.Errorf("%w: the watch of the contender node ended", ErrLockLost)
			case ev.Err != nil:
				return fmt.Errorf("%w: watching the contender node: %w", ErrLockLost, ev.Err)
			case !ev.Exists:
				return fmt.Errorf("%w: the contender node was deleted while it waited", ErrLockLost)
			}
		case <-ctx.Done():
			return ctx.Err() // Lock cancels ctx when sess ends
		}
	}
}

// hold records the lock, with the watch of its node started when the node
// was made (its first event, the state when it was armed, closes Lost if
// the node is gone by then). Until Unlock, Lost closes when the session
// ends or the node is deleted.
func (m *Mutex) hold(node string, sess Session, own *ownWatch) {
	seq, _ := strconv.ParseInt(Base(node)[len(m.prefix):], 10, 64)
	lost, watch := make(chan struct{}), make(chan struct{})
	m.mu.Lock()
	m.node, m.seq, m.sess, m.lost, m.stop, m.watch = node, seq, sess, lost, own.stop, watch
	m.mu.Unlock()
	go func() {
		defer close(watch)
		defer close(lost)
		defer own.stop() // a lost lock needs no more watching
		for {
			select {
			case ev, ok := <-own.events:
				if !ok || ev.Err != nil || !ev.Exists {
					return // deleted, Unlock, or the store closed
				}
			case <-sess.Done():
				return
			}
		}
	}()
}

// Unlock releases the lock. A lock already lost (its node gone) unlocks
// without error.
func (m *Mutex) Unlock(ctx context.Context) error {
	m.mu.Lock()
	node, stop, watch := m.node, m.stop, m.watch
	m.mu.Unlock()
	if node == "" {
		return Errorf("unlock", m.dir, fmt.Errorf("%w: not held", ErrInvalidArgument))
	}
	err := m.s.Delete(ctx, node, AnyVersion)
	if errors.Is(err, ErrNoNode) {
		err = nil // the session ended and took the node with it, or it was removed
	}
	if err != nil {
		return err
	}
	stop()
	<-watch
	contenders.Lock()
	delete(contenders.nodes, contenderKey{m.s, node})
	contenders.Unlock()
	m.mu.Lock()
	m.node, m.seq, m.sess, m.lost, m.stop, m.watch = "", 0, nil, nil, nil, nil
	m.mu.Unlock()
	return nil
}

// Node is the path of the held lock node ("" when not held).
func (m *Mutex) Node() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.node
}

// Lost is closed when the lock may no longer be held: the session that holds
// it ended or its node was deleted. It is nil when the lock is not held.
func (m *Mutex) Lost() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lost
}

// Token is the fencing token of the held lock: the sequence number of its
// node, larger for every later holder of this lock directory (0 when not
// held). Give it to the resources the lock protects, so that they can refuse
// a holder older than the newest they have seen.
func (m *Mutex) Token() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seq
}

// Fence returns an op that holds only while this holder has the lock (its
// node exists): a Txn that includes it fails, writing nothing, once the lock
// is lost. When the lock is not held, the op's path is invalid, so the Txn
// fails with ErrInvalidPath.
func (m *Mutex) Fence() Op {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.node == "" {
		return CheckOp(m.dir+"/", AnyVersion)
	}
	return CheckOp(m.node, AnyVersion)
}
