// Package faultproxy is a TCP proxy on loopback that tests put between a
// client and a real server to inject network faults: Stall holds every byte
// in both directions while the connections stay open (a partition the client
// cannot see), Cut closes every connection (a lost link), Block closes the
// listening port so that connecting is refused (a server that is down),
// LoseReplies lets requests through and throws the server's answers away
// (a reply lost after the server applied the request). Resume undoes Stall,
// Block and LoseReplies.
package faultproxy

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards connections from its loopback address to a target.
type Proxy struct {
	addr   string
	target func() (string, error)
	l      net.Listener // nil while blocked

	mu      sync.Mutex
	cond    *sync.Cond
	stalled bool
	losing  bool
	blocked bool
	closed  bool
	// dialWait is how long a connection waits for a target that refuses it.
	dialWait time.Duration
	// opening, if set, rewrites what a client sends first (SetOpening).
	opening func(client io.Reader) ([]byte, error)
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
	sent    atomic.Int64 // bytes forwarded to the target
}

// New listens on a free loopback port and forwards to target (host:port).
func New(target string) (*Proxy, error) {
	return NewFunc(func() (string, error) { return target, nil })
}

// NewFunc listens on a free loopback port and forwards each connection to
// the host:port target returns when it is accepted (a connection is closed
// when target fails): for a server whose address is known only after the
// proxy's, as a member of an ensemble whose peers are told the proxy's.
func NewFunc(target func() (string, error)) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{addr: l.Addr().String(), l: l, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept(l)
	return p, nil
}

// Sent is the number of bytes forwarded from clients to the target so far.
func (p *Proxy) Sent() int64 { return p.sent.Load() }

// Addr is the proxy's host:port; give it to the client instead of the target.
func (p *Proxy) Addr() string { return p.addr }

// Stall holds all traffic: bytes sent either way are kept until Resume, and
// connections stay open. New connections are accepted and stalled too.
func (p *Proxy) Stall() {
	p.mu.Lock()
	p.stalled = true
	p.mu.Unlock()
}

// LoseReplies throws away every byte the server sends until Resume, while
// the client's bytes still reach the server: requests are applied and their
// answers never arrive. Follow it with Cut to make the client give up on
// them, as when a connection dies between the server's apply and its reply.
func (p *Proxy) LoseReplies() {
	p.mu.Lock()
	p.losing = true
	p.mu.Unlock()
}

// Block closes the listening port until Resume: connecting is refused, as
// when the server is down. Open connections stay (Cut closes them).
func (p *Proxy) Block() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.l != nil {
		p.l.Close()
		p.l = nil
	}
	p.blocked = true
}

// Resume ends Stall, LoseReplies and Block: held bytes flow again and the
// port listens again (the same port; Resume fails only if another program
// took it).
func (p *Proxy) Resume() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled, p.losing = false, false
	p.cond.Broadcast()
	if !p.blocked || p.closed {
		return nil
	}
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.l, p.blocked = l, false
	p.wg.Add(1)
	go p.accept(l)
	return nil
}

// Cut closes every open connection; new ones are accepted unless blocked.
func (p *Proxy) Cut() {
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.cond.Broadcast() // stalled pipes of cut connections end
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	var err error
	if p.l != nil {
		err = p.l.Close()
		p.l = nil
	}
	p.mu.Unlock()
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// SetDialWait makes a connection whose target refuses it wait up to d for
// the target to listen (what the client sends meanwhile waits), as a
// connection to a server that is still starting would, instead of being
// closed at once (0, the default: a client sees a server that is down as a
// connection closed as soon as it is made).
func (p *Proxy) SetDialWait(d time.Duration) {
	p.mu.Lock()
	p.dialWait = d
	p.mu.Unlock()
}

// SetOpening makes each new connection start with what f returns, in
// place of what f read from the client; the rest of the client's bytes
// follow unchanged. f reads exactly what it replaces (no read-ahead). A
// connection for which f fails is closed. For a protocol whose greeting
// names the client's own address, which a proxy must put itself in place
// of.
func (p *Proxy) SetOpening(f func(client io.Reader) ([]byte, error)) {
	p.mu.Lock()
	p.opening = f
	p.mu.Unlock()
}

func (p *Proxy) accept(l net.Listener) {
	defer p.wg.Done()
	for {
		client, err := l.Accept()
		if err != nil {
			return
		}
		if !p.track(client) {
			continue
		}
		p.wg.Add(1)
		go p.connect(client)
	}
}

// connect dials the target for client and pipes the two together.
func (p *Proxy) connect(client net.Conn) {
	defer p.wg.Done()
	p.mu.Lock()
	deadline := time.Now().Add(p.dialWait)
	p.mu.Unlock()
	var server net.Conn
	for {
		target, err := p.target()
		if err == nil {
			server, err = net.DialTimeout("tcp", target, 5*time.Second)
		}
		if err == nil {
			break
		}
		if !time.Now().Before(deadline) || !p.tracked(client) {
			p.untrack(client)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !p.tracked(client) || !p.track(server) {
		p.untrack(client)
		server.Close()
		return
	}
	p.mu.Lock()
	opening := p.opening
	p.mu.Unlock()
	if opening != nil {
		b, err := opening(client)
		if err == nil {
			if flowing, _ := p.waitFlowing(client); !flowing {
				err = net.ErrClosed
			}
		}
		if err == nil {
			_, err = server.Write(b)
		}
		if err != nil {
			p.untrack(client)
			p.untrack(server)
			return
		}
	}
	p.wg.Add(2)
	go p.pipe(client, server, false)
	go p.pipe(server, client, true)
}

// tracked says whether c is still open (not cut, the proxy not closed).
func (p *Proxy) tracked(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open(c)
}

// open is tracked with p.mu held.
func (p *Proxy) open(c net.Conn) bool {
	_, ok := p.conns[c]
	return ok && !p.closed
}

// pipe copies from src to dst, waiting while stalled, dropping the bytes
// of a reply (from the server) while replies are lost; a read or write
// error closes both ends.
func (p *Proxy) pipe(src, dst net.Conn, reply bool) {
	defer p.wg.Done()
	defer p.untrack(dst)
	defer p.untrack(src)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			flowing, lose := p.waitFlowing(src)
			if !flowing {
				return
			}
			if reply && lose {
				continue
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			if !reply {
				p.sent.Add(int64(n))
			}
		}
		if err != nil { // EOF or a closed connection: close both ends
			return
		}
	}
}

// waitFlowing blocks while the proxy is stalled; false once the proxy is
// closed or c was cut. lose says whether replies are being lost.
func (p *Proxy) waitFlowing(c net.Conn) (flowing, lose bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if !p.open(c) {
			return false, false
		}
		if !p.stalled {
			return true, p.losing
		}
		p.cond.Wait()
	}
}

// ClientFaults are a proxy's faults for a client that loses a reply
// itself (a test hook inside the client, loseNext, which runs then at the
// instant it has lost the answer) and then stalls the proxy. The stall
// comes when the client has lost the answer, which may be after a test saw
// the write applied on the server and called Resume: such a stall would
// hold the client past every deadline, so a stall armed before a Resume
// and made after it is skipped (the answer is still lost).
type ClientFaults struct {
	*Proxy
	loseNext    func(then func())
	loseRefusal func(then func())

	mu    sync.Mutex
	armed bool // a lost reply's stall is still to come
}

// NewClientFaults returns p's faults with LoseReplies made by loseNext and
// LoseRefusal by loseRefusal (the client's hook that loses the answer of
// the next write the server refuses).
func NewClientFaults(p *Proxy, loseNext, loseRefusal func(then func())) *ClientFaults {
	return &ClientFaults{Proxy: p, loseNext: loseNext, loseRefusal: loseRefusal}
}

// LoseReplies loses the client's next answer, and holds every answer after
// it until Resume (the proxy stalls; not if Resume came first).
func (f *ClientFaults) LoseReplies() { f.arm(f.loseNext) }

// LoseRefusal loses the answer of the client's next write that the server
// refuses, and holds every answer after it until Resume, as LoseReplies
// does for a write the server applies.
func (f *ClientFaults) LoseRefusal() { f.arm(f.loseRefusal) }

// arm arms the late stall and the client's hook that loses an answer.
func (f *ClientFaults) arm(lose func(then func())) {
	f.mu.Lock()
	f.armed = true
	f.mu.Unlock()
	lose(f.lateStall)
}

// lateStall stalls the proxy if a stall is armed and no Resume has come
// since.
func (f *ClientFaults) lateStall() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.armed {
		f.armed = false
		f.Stall()
	}
}

// Resume disarms a stall still to come and ends the proxy's faults.
func (f *ClientFaults) Resume() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = false
	return f.Proxy.Resume()
}
