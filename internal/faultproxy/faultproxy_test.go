package faultproxy

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// echo serves lines back on a loopback port until the test ends.
func echo(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func roundTrip(c net.Conn, r *bufio.Reader, wait time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

// No goroutine of a proxy, or of a test, outlives the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStallCutBlock(t *testing.T) {
	p, c, r := throughProxy(t)
	if got, err := roundTrip(c, r, 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}
	p.Stall()
	if _, err := roundTrip(c, r, 300*time.Millisecond); err == nil {
		t.Fatal("an answer came through a stalled proxy")
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "ping\n" {
		t.Fatalf("held bytes after Resume: %q, %v", got, err)
	}
	p.Cut()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("a cut connection still reads")
	}
	p.Block()
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		c2.Close()
		t.Fatal("a blocked proxy accepted a connection")
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(c3, bufio.NewReader(c3), 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("after Resume: %q, %v", got, err)
	}
	// A connection cut while stalled ends its pipes (goleak checks).
	p.Stall()
	c3.Write([]byte("held\n"))
	time.Sleep(50 * time.Millisecond)
	p.Cut()
}

// LoseReplies lets requests reach the server and throws its answers away,
// until Resume.
func TestLoseReplies(t *testing.T) {
	got := make(chan string, 10)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			got <- line
			if _, err := c.Write([]byte(line)); err != nil {
				return
			}
		}
	}()
	p, err := New(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	p.LoseReplies()
	if ans, err := roundTrip(c, r, 300*time.Millisecond); err == nil {
		t.Fatalf("an answer came through while replies are lost: %q", ans)
	}
	select {
	case line := <-got:
		if line != "ping\n" {
			t.Fatalf("the server got %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the server")
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	r = bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("two\n")); err != nil {
		t.Fatal(err)
	}
	if ans, err := r.ReadString('\n'); err != nil || ans != "two\n" {
		t.Fatalf("after Resume: %q, %v (the lost answer must not come back)", ans, err)
	}
	p.Cut()
}

// throughProxy starts a proxy to an echo server and dials it.
func throughProxy(t *testing.T) (*Proxy, net.Conn, *bufio.Reader) {
	t.Helper()
	p, err := New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c := dial(t, p.Addr())
	return p, c, bufio.NewReader(c)
}

// dial connects to addr; the connection is closed when the test ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A lost reply's or refusal's stall made after Resume is skipped; one made
// before it is lifted by it.
func TestClientFaultsLateStall(t *testing.T) {
	p, c, r := throughProxy(t)
	var applied, refused func()
	f := NewClientFaults(p, func(lost func()) { applied = lost }, func(lost func()) { refused = lost })
	for _, k := range []struct {
		name string
		lose func()
		then *func()
	}{{"LoseReplies", f.LoseReplies, &applied}, {"LoseRefusal", f.LoseRefusal, &refused}} {
		applied, refused = nil, nil
		// Armed, resumed, then the client stalls: it must not hold.
		k.lose()
		if *k.then == nil {
			t.Fatalf("%s did not arm its own hook", k.name)
		}
		if err := f.Resume(); err != nil {
			t.Fatal(err)
		}
		(*k.then)()
		if got, err := roundTrip(c, r, 5*time.Second); err != nil || got != "ping\n" {
			t.Fatalf("%s: a stall made after Resume held the link: %q, %v", k.name, got, err)
		}
		// Armed, the client stalls, then Resume: held until the Resume.
		k.lose()
		(*k.then)()
		if got, err := roundTrip(c, r, 300*time.Millisecond); err == nil {
			t.Fatalf("%s: a stall made before Resume let %q through", k.name, got)
		}
		if err := f.Resume(); err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if got, err := r.ReadString('\n'); err != nil || got != "ping\n" {
			t.Fatalf("%s: held bytes after Resume: %q, %v", k.name, got, err)
		}
	}
}

// A proxy made with NewFunc asks for its target at each connection; with a
// dial wait, a connection made while the target refuses waits for it to
// listen, and what the client sent meanwhile arrives. Without one, the
// connection is closed at once.
func TestDialWait(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()
	var mu sync.Mutex
	target := refused
	p, err := NewFunc(func() (string, error) {
		mu.Lock()
		defer mu.Unlock()
		return target, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	c := dial(t, p.Addr())
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
		t.Fatal("a connection to a target that refuses was not closed")
	}

	p.SetDialWait(10 * time.Second)
	c = dial(t, p.Addr())
	if _, err := c.Write([]byte("early\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the proxy is retrying by now
	mu.Lock()
	target = echo(t)
	mu.Unlock()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "early\n" {
		t.Fatalf("once the target listened: %q, %v", got, err)
	}
}

// SetOpening rewrites what a client sends first and leaves the rest; a
// stalled proxy holds the rewritten opening too.
func TestOpening(t *testing.T) {
	p, err := New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetOpening(func(r io.Reader) ([]byte, error) {
		b := make([]byte, 3)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return []byte("NEW"), nil
	})
	p.Stall()
	c := dial(t, p.Addr())
	r := bufio.NewReader(c)
	if _, err := c.Write([]byte("old rest\n")); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if got, err := r.ReadString('\n'); err == nil {
		t.Fatalf("the opening went through a stalled proxy: %q", got)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "NEW rest\n" {
		t.Fatalf("got %q, %v; want the opening rewritten and the rest as sent", got, err)
	}
}
