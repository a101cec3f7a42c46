package zkstore_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/coordkit/coord/conformance"
	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/zkstore"
	"github.com/coordkit/coord/internal/testenv"
)

// gate is a dialer that can cut a store off from the server: the server then
// sees a silent client and expires its session after the session timeout,
// exactly as it does for a client that hangs or loses its network.
type gate struct {
	mu     sync.Mutex
	closed bool
	conns  []net.Conn
}

func (g *gate) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, errors.New("gate closed")
	}
	c, err := net.DialTimeout(network, addr, timeout)
	if err == nil {
		g.conns = append(g.conns, c)
	}
	return c, err
}

// cut drops the connections and refuses new ones for d.
func (g *gate) cut(d time.Duration) {
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

const sessionTimeout = 2 * time.Second

var gates sync.Map // *zkstore.Store -> *gate

func open(t testing.TB, addr, chroot string) *zkstore.Store {
	g := &gate{}
	s, err := zkstore.New(context.Background(), zkstore.Config{
		Servers: []string{addr}, Chroot: chroot, SessionTimeout: sessionTimeout, Dialer: g.dial,
	})
	if err != nil {
		t.Fatal(err)
	}
	gates.Store(s, g)
	return s
}

func backend(addr string) conformance.Backend {
	return conformance.Backend{
		Open: func(t testing.TB, ns string) coord.Store { return open(t, addr, "/coordtest/"+ns) },
		Expire: func(t testing.TB, s coord.Store) {
			g, _ := gates.Load(s)
			// Silent for longer than the session timeout: the server expires it.
			g.(*gate).cut(sessionTimeout + 2*time.Second)
		},
	}
}

func TestConformance(t *testing.T) {
	conformance.Run(t, backend(testenv.Addr(t, "zk")))
}
