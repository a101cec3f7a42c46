package zkstore

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/lifecycle"
	"github.com/coordkit/coord/internal/resolve"
)

// session is one ZooKeeper session of the connection.
type session struct {
	id int64
	lifecycle.State
	lifecycle.Suspense
}

func (s *session) ID() string { return owner(s.id) }

// watchSession follows the session events of one connection: a new session
// id starts a session, an expiry ends the current one. The client library
// then establishes a new session by itself. Events of a connection that has
// been replaced (see loseSession) are ignored.
func (s *Store) watchSession(c *zk.Conn, events <-chan zk.Event) {
	for ev := range events {
		if ev.Type != zk.EventSession {
			continue
		}
		s.mu.Lock()
		if s.conn != c {
			s.mu.Unlock()
			continue
		}
		switch ev.State {
		case zk.StateDisconnected:
			s.guard.setDown(true)
		case zk.StateHasSession:
			s.guard.setDown(false)
			id := c.SessionID()
			if s.sess == nil || s.sess.id != id {
				if s.sess != nil {
					s.sess.End(coord.ErrSessionExpired)
				}
				s.sess = &session{id: id}
				close(s.newSess)
				s.newSess = make(chan struct{})
			}
		case zk.StateExpired:
			if s.sess != nil {
				s.sess.End(coord.ErrSessionExpired)
			}
		}
		s.mu.Unlock()
	}
}

// loseSession is called by g's watchdog when the server may have expired
// the session: the session ends now, before the server can have deleted its
// ephemeral nodes, and the connection is replaced so that the client
// library cannot carry on (or queue requests) under that session. The next
// session is made on the new connection.
func (s *Store) loseSession(g *guard) {
	s.mu.Lock()
	if s.guard != g || s.life.Ended() {
		s.mu.Unlock()
		return
	}
	if s.sess != nil {
		s.sess.End(coord.ErrSessionExpired)
	}
	conn, events, ng, err := s.dial()
	if err != nil {
		// zk.Connect fails only on arguments that the first dial passed:
		// keep the old connection rather than none.
		s.mu.Unlock()
		return
	}
	old := s.conn
	s.conn, s.guard = conn, ng
	go s.watchSession(conn, events)
	go ng.watchdog(s)
	s.mu.Unlock()
	g.stop()
	go old.Close() // its watches fire and re-arm on the new connection
}

// suspend sets the suspension of the current session, if g is still the
// current connection's guard.
func (s *Store) suspend(g *guard, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.guard == g && s.sess != nil {
		s.sess.Suspend(on)
	}
}

// Session implements coord.Store. After an expiry it waits for the client
// library to establish the next session.
func (s *Store) Session(ctx context.Context) (coord.Session, error) {
	sess, err := s.session(ctx)
	if err != nil {
		return nil, coord.Errorf("session", "/", err)
	}
	return sess, nil
}

func (s *Store) session(ctx context.Context) (*session, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.life.Ended() {
			s.mu.Unlock()
			return nil, coord.ErrClosed
		}
		cur, wait := s.sess, s.newSess
		s.mu.Unlock()
		if cur != nil && cur.Err() == nil {
			return cur, nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.life.Done():
			return nil, coord.ErrClosed
		}
	}
}

// A guard knows, from the bytes on the wire, until when the server is sure
// to keep the session: ZooKeeper expires a session the negotiated timeout
// after the last request it received from the client. A reply proves that
// the server received its request, and it cannot have received it before
// the client sent it; replies come in request order (notifications, xid -1,
// answer nothing). So the send time of the newest answered request, on the
// client's monotonic clock, plus the timeout, is a time before which the
// server cannot have expired the session, whatever the network did since.
// The watchdog ends the session a margin (a fifth of the timeout) before
// that. This is what the client library cannot tell: it notices a stalled
// link only after two thirds of the timeout, and an expiry only when the
// link heals.
type guard struct {
	mu        sync.Mutex
	timeout   time.Duration  // negotiated; 0 until the first ConnectResponse
	contact   time.Time      // send time of the newest answered request
	gen       int            // the TCP connection whose requests pending holds
	pending   []time.Time    // send times of its requests not answered yet
	down      bool           // the client library says it is disconnected
	zxid      *resolve.Stamp // the largest zxid a reply carried (the store's)
	suspended bool           // what the watchdog last reported
	kick      chan struct{}  // wakes the watchdog when the suspension may end
	done      chan struct{}
	once      sync.Once
}

func newGuard(zxid *resolve.Stamp) *guard {
	return &guard{done: make(chan struct{}), kick: make(chan struct{}, 1), zxid: zxid}
}

func (g *guard) stop() { g.once.Do(func() { close(g.done) }) }

// margin is how long before the server's earliest expiry the session ends.
func margin(timeout time.Duration) time.Duration { return timeout / 5 }

// wake tells the watchdog to look again.
func (g *guard) wake() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// setDown records what the client library says of the connection.
func (g *guard) setDown(down bool) {
	g.mu.Lock()
	g.down = down
	g.mu.Unlock()
	g.wake()
}

// times returns when the session must be taken as lost (zero: no session
// yet) and when it falls in danger: half the timeout after the newest
// contact (the client library pings every third of it), or now if the
// connection is down.
func (g *guard) times() (deadline, danger time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.timeout == 0 {
		return time.Time{}, time.Time{}
	}
	danger = g.contact.Add(g.timeout / 2)
	if g.down {
		danger = time.Time{}
	}
	return g.contact.Add(g.timeout - margin(g.timeout)), danger
}

// watchdog ends the session when its deadline passes, and tells the session
// when it falls in danger and when it comes out, until g is stopped.
func (g *guard) watchdog(s *Store) {
	for {
		wait := 50 * time.Millisecond
		if d, danger := g.times(); !d.IsZero() {
			now := time.Now()
			wait = d.Sub(now)
			if wait <= 0 {
				s.loseSession(g)
				return
			}
			on := !now.Before(danger)
			if !on {
				wait = min(wait, danger.Sub(now))
			}
			g.mu.Lock()
			g.suspended = on
			g.mu.Unlock()
			s.suspend(g, on)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-g.kick:
			t.Stop()
		case <-g.done:
			t.Stop()
			return
		}
	}
}

// dialer wraps base so that every connection reports to g.
func (g *guard) dialer(base zk.Dialer) zk.Dialer {
	return func(network, address string, timeout time.Duration) (net.Conn, error) {
		c, err := base(network, address, timeout)
		if err != nil {
			return nil, err
		}
		g.mu.Lock()
		g.gen++
		g.pending = g.pending[:0]
		gen := g.gen
		g.mu.Unlock()
		return &guardedConn{Conn: c, g: g, gen: gen}, nil
	}
}

// sent records a request frame sent at t on connection gen.
func (g *guard) sent(gen int, t time.Time) {
	g.mu.Lock()
	if gen == g.gen {
		g.pending = append(g.pending, t)
	}
	g.mu.Unlock()
}

// answered records a reply frame on connection gen; connect is the first
// frame of the connection (a ConnectResponse) with its negotiated timeout
// (0: the server refused the session as expired).
func (g *guard) answered(gen int, connect bool, timeout time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gen != g.gen || len(g.pending) == 0 {
		return
	}
	t := g.pending[0]
	g.pending = g.pending[1:]
	if connect {
		if timeout <= 0 {
			return
		}
		g.timeout = timeout
	}
	if t.After(g.contact) {
		g.contact = t
		if g.suspended {
			g.wake()
		}
	}
}

// guardedConn splits the byte streams of one TCP connection into ZooKeeper
// frames (a 4-byte big-endian length, then the body) and tells its guard
// when a request is sent and a reply is read.
type guardedConn struct {
	net.Conn
	g   *guard
	gen int

	wmu sync.Mutex
	w   framer

	rmu sync.Mutex
	r   framer
}

func (c *guardedConn) Write(b []byte) (int, error) {
	now := time.Now()
	c.wmu.Lock()
	c.w.feed(b, func(_ int, _ []byte) { c.g.sent(c.gen, now) })
	c.wmu.Unlock()
	return c.Conn.Write(b)
}

func (c *guardedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.rmu.Lock()
		c.r.feed(b[:n], func(index int, head []byte) {
			if index == 0 { // ConnectResponse: protocolVersion, timeOut (ms), ...
				c.g.answered(c.gen, true, time.Duration(int32(binary.BigEndian.Uint32(head[4:8])))*time.Millisecond)
				return
			}
			if int32(binary.BigEndian.Uint32(head[0:4])) == -1 {
				return // a watch notification: it answers no request
			}
			// A reply header: xid, the zxid the server had reached, err.
			c.g.answered(c.gen, false, 0)
			c.g.zxid.See(int64(binary.BigEndian.Uint64(head[4:12])))
		})
		c.rmu.Unlock()
	}
	return n, err
}

// framer follows frames across arbitrary chunks of a stream and calls
// frame(index, head) once per frame, as soon as its first 16 body bytes (or
// its whole body, if shorter) have arrived; head is zero-padded to 16 bytes.
type framer struct {
	index   int     // frames seen so far
	lenBuf  [4]byte // the length being read
	lenN    int     // its bytes read
	left    int     // body bytes still to skip in the current frame
	head    [16]byte
	headN   int
	inFrame bool
	told    bool
}

func (f *framer) feed(b []byte, frame func(index int, head []byte)) {
	for len(b) > 0 {
		if !f.inFrame {
			k := copy(f.lenBuf[f.lenN:], b)
			f.lenN += k
			b = b[k:]
			if f.lenN < 4 {
				return
			}
			f.left = int(int32(binary.BigEndian.Uint32(f.lenBuf[:])))
			f.lenN, f.headN, f.inFrame, f.told = 0, 0, true, false
			f.head = [16]byte{}
		}
		k := min(len(b), f.left)
		if f.headN < len(f.head) {
			f.headN += copy(f.head[f.headN:], b[:k])
		}
		b = b[k:]
		f.left -= k
		if !f.told && (f.headN == len(f.head) || f.left <= 0) {
			f.told = true
			frame(f.index, f.head[:])
		}
		if f.left <= 0 {
			f.inFrame = false
			f.index++
		}
	}
}
