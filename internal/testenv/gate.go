package testenv

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Gate is a dialer (its Dial has the shape of zk.Dialer) that can cut a
// client off from the server: the server then sees a silent client and
// expires its session after the session timeout, exactly as it does for a
// client that hangs or loses its network.
type Gate struct {
	mu     sync.Mutex
	closed bool
	conns  []net.Conn
}

// Dial connects, unless the gate is cut.
func (g *Gate) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, errors.New("gate closed by a test")
	}
	c, err := net.DialTimeout(network, addr, timeout)
	if err == nil {
		g.conns = append(g.conns, c)
	}
	return c, err
}

// Cut drops the connections and refuses new ones for d; it returns at once.
func (g *Gate) Cut(d time.Duration) {
	g.mu.Lock()
	g.closed = true
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
	g.mu.Unlock()
	time.AfterFunc(d, func() {
		g.mu.Lock()
		g.closed = false
		g.mu.Unlock()
	})
}
