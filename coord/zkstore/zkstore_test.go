package zkstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/goleak"

	"github.com/coordkit/coord/conformance"
	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/zkstore"
	"github.com/coordkit/coord/internal/faultproxy"
	"github.com/coordkit/coord/internal/testenv"
)

const sessionTimeout = 2 * time.Second

var gates sync.Map // *zkstore.Store -> *gate

func open(t testing.TB, addr, chroot string) *zkstore.Store {
	g := &testenv.Gate{}
	s, err := zkstore.New(context.Background(), zkstore.Config{
		Servers: strings.Split(addr, ","), Chroot: chroot, SessionTimeout: sessionTimeout, Dialer: g.Dial,
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
			g.(*testenv.Gate).Cut(sessionTimeout + 2*time.Second)
		},
		OpenFaulty: func(t testing.TB, ns string, timeout time.Duration) (coord.Store, conformance.Faults) {
			p, err := faultproxy.New(addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			s, err := zkstore.New(context.Background(), zkstore.Config{
				Servers: []string{p.Addr()}, Chroot: "/coordtest/" + ns, SessionTimeout: timeout,
			})
			if err != nil {
				t.Fatal(err)
			}
			return s, faults{p, s}
		},
	}
}

// faults are the proxy's, and a write lost on its way is made inside the
// client, so that it is the create's and not a read's.
type faults struct {
	*faultproxy.Proxy
	s *zkstore.Store
}

func (f faults) DropNextWrite() { zkstore.DropNextWrite(f.s) }

// LoseRefusal is LoseReplies: the proxy loses every answer, refusals too.
func (f faults) LoseRefusal() { f.LoseReplies() }

func TestConformance(t *testing.T) {
	b := backend(testenv.Addr(t, "zk"))
	b.Cluster = func(t testing.TB) conformance.Cluster { return ensemble{testenv.SharedEnsemble(t, "zk")} }
	b.Restartable = func(t testing.TB) conformance.Server { return restartable{testenv.StartServer(t, "zk")} }
	conformance.Run(t, b)
}

// TestConformanceCluster runs the suite's basic cases (the Fault, Restart
// and Cluster cases run in TestConformance) against the ensemble of three
// servers the package shares (scripts/zk.sh ensemble), stores knowing
// every member.
func TestConformanceCluster(t *testing.T) {
	e := testenv.SharedEnsemble(t, "zk")
	conformance.RunBasic(t, backend(strings.Join(e.Addrs, ",")))
}

// ensemble is the conformance view of a ZooKeeper ensemble.
type ensemble struct{ *testenv.Ensemble }

func (e ensemble) Open(t testing.TB, ns string, timeout time.Duration) coord.Store {
	s, err := zkstore.New(context.Background(), zkstore.Config{
		Servers: e.Addrs, Chroot: "/coordtest/" + ns, SessionTimeout: timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e ensemble) Members() int            { return e.N }
func (e ensemble) Leader(t testing.TB) int { return e.Ensemble.Leader(t, conformance.Timeout) }

// restartable is a ZooKeeper server of the test's own.
type restartable struct{ *testenv.Server }

func (r restartable) Open(t testing.TB, ns string, timeout time.Duration) coord.Store {
	s, err := zkstore.New(context.Background(), zkstore.Config{
		Servers: []string{r.Addr}, Chroot: "/coordtest/" + ns, SessionTimeout: timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// zkCli reads a node with ZooKeeper's own command-line client.
func zkCli(t *testing.T, addr string, args ...string) string {
	t.Helper()
	cli := "/usr/share/zookeeper/bin/zkCli.sh"
	if _, err := os.Stat(cli); err != nil {
		t.Fatalf("zkCli.sh not found (%v): install Debian's zookeeper package (scripts/zk.sh install)", err)
	}
	out, err := exec.Command(cli, append([]string{"-server", addr}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("zkCli.sh %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestPlainZnodes(t *testing.T) {
	addr := testenv.Addr(t, "zk")
	ctx := context.Background()
	s := open(t, addr, "")
	defer s.Close()
	base := fmt.Sprintf("/coordtest-plain-%d", time.Now().UnixNano())
	defer coord.DeleteAll(ctx, s, base)
	data := []byte(`{"product_name":"p","id":7,"group_id":-1}`)
	_, err := coord.CreateAll(ctx, s, base+"/slots/slot_7", data, coord.Persistent)
	if err != nil {
		t.Fatal(err)
	}
	out := zkCli(t, addr, "get", base+"/slots/slot_7")
	if !strings.Contains(out, "\n"+string(data)+"\n") {
		t.Fatalf("zkCli.sh get does not show the bytes written:\n%s", out)
	}
	// Sequential names are ZooKeeper's own: the parent's child-change counter.
	_, err = s.Create(ctx, base+"/q", nil, coord.Persistent)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // non-sequential children move the counter too
		if _, err := s.Create(ctx, fmt.Sprintf("%s/q/x%d", base, i), nil, coord.Persistent); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Create(ctx, base+"/q/", nil, coord.Sequential)
	if err != nil {
		t.Fatal(err)
	}
	if want := base + "/q/0000000003"; p != want {
		t.Fatalf("sequential create made %s, ZooKeeper names it %s", p, want)
	}
	// Nodes carry the world ACL, so any Codis tool may read them.
	if out := zkCli(t, addr, "getAcl", base+"/q"); !strings.Contains(out, "'world,'anyone") {
		t.Fatalf("ACL is not world:anyone:\n%s", out)
	}
}

func TestReconnectKeepsSessionAndWatches(t *testing.T) {
	addr := testenv.Addr(t, "zk")
	ctx := context.Background()
	ns := fmt.Sprintf("/coordtest/reconnect-%d", time.Now().UnixNano())
	s, writer := open(t, addr, ns), open(t, addr, ns)
	defer s.Close()
	defer writer.Close()
	sess, err := s.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "/eph", nil, coord.Ephemeral); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Create(ctx, "/n", []byte("0"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	ch, err := s.WatchData(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	<-ch
	// Cut for less than the session timeout; change the node meanwhile.
	g, _ := gates.Load(s)
	g.(*testenv.Gate).Cut(sessionTimeout / 4)
	if _, err := writer.Set(ctx, "/n", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		if string(ev.Data) != "1" || ev.Stat.Version != 1 {
			t.Fatalf("event after reconnect: %+v", ev)
		}
	case <-time.After(conformance.Timeout):
		t.Fatal("the change made while disconnected was not delivered")
	}
	if sess.Err() != nil {
		t.Fatalf("a short disconnect ended the session: %v", sess.Err())
	}
	if _, ok, err := writer.Exists(ctx, "/eph"); err != nil || !ok {
		t.Fatalf("the ephemeral node did not survive a short disconnect: %v %v", ok, err)
	}
}

func TestDigestACL(t *testing.T) {
	addr := testenv.Addr(t, "zk")
	ctx := context.Background()
	ns := fmt.Sprintf("/coordtest/acl-%d", time.Now().UnixNano())
	owner, err := zkstore.New(ctx, zkstore.Config{
		Servers: []string{addr}, Chroot: ns,
		Auth: []zkstore.Auth{{Scheme: "digest", Secret: "codis:s3cret"}},
		ACL:  zk.DigestACL(zk.PermAll, "codis", "s3cret"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if _, err := owner.Create(ctx, "/private", []byte("x"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	if data, _, err := owner.Get(ctx, "/private"); err != nil || string(data) != "x" {
		t.Fatalf("owner reads %q, %v", data, err)
	}
	stranger := open(t, addr, ns)
	defer stranger.Close()
	_, _, err = stranger.Get(ctx, "/private")
	if !errors.Is(err, coord.ErrPermission) {
		t.Fatalf("unauthenticated read: %v, want ErrPermission", err)
	}
}

func TestSeveralServersAndBadConfig(t *testing.T) {
	addr := testenv.Addr(t, "zk")
	ctx := context.Background()
	// A dead server in the list does not stop the store from connecting.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	s, err := zkstore.New(ctx, zkstore.Config{Servers: []string{deadAddr, addr}, Chroot: "/coordtest/multi"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = zkstore.New(ctx, zkstore.Config{Servers: []string{deadAddr}, ConnectTimeout: time.Second})
	if !errors.Is(err, coord.ErrUnavailable) {
		t.Fatalf("no server: %v, want ErrUnavailable", err)
	}
	_, err = zkstore.New(ctx, zkstore.Config{Servers: []string{addr}, Chroot: "no-slash"})
	if !errors.Is(err, coord.ErrInvalidPath) {
		t.Fatalf("bad chroot: %v, want ErrInvalidPath", err)
	}
}

// Without a chroot the root's children leave out ZooKeeper's own
// "/zookeeper" (quotas and config), which is not a coord node, in listings
// and in children watches.
func TestRootHidesZookeeperNode(t *testing.T) {
	addr := testenv.Addr(t, "zk")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := open(t, addr, "")
	defer s.Close()
	if _, ok, err := s.Exists(ctx, "/zookeeper"); err != nil || !ok {
		t.Fatalf("the server's /zookeeper node: %v %v", ok, err)
	}
	kids, err := s.Children(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := s.WatchChildren(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	ev := <-ch
	for _, list := range [][]string{kids, ev.Children} {
		for _, k := range list {
			if k == "zookeeper" {
				t.Fatalf("the root lists ZooKeeper's own node: %v", list)
			}
		}
	}
}

// Sibling chroots never see each other's nodes. (Nested chroots share
// nodes by design: the store on /p/a sees what the store on /p sees
// under /a, as ZooKeeper's own chroot does.)
func TestChrootsIsolated(t *testing.T) {
	addr := testenv.Addr(t, "zk")
	base := fmt.Sprintf("/coordtest-iso-%d", time.Now().UnixNano())
	conformance.CheckIsolation(t, func(p string) coord.Store {
		s := open(t, addr, p)
		t.Cleanup(func() { s.Close() })
		return s
	}, []string{base, base + "x", base + "-001"})
}

// TestCloseStopsItsGoroutines: Close stops the store's goroutines (the
// session watchdog among them) at once, not when a long session timeout
// (here 30 s) would have run out: none is left 10 s after Close.
func TestCloseStopsItsGoroutines(t *testing.T) {
	addr := testenv.Addr(t, "zk")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := goleak.IgnoreCurrent()
	s, err := zkstore.New(ctx, zkstore.Config{Servers: []string{addr}, Chroot: "/coordtest/close", SessionTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "/e", nil, coord.Ephemeral); err != nil && !errors.Is(err, coord.ErrNodeExists) {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := goleak.Find(before)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left 10 s after Close, with a 30 s session timeout: %v", err)
		}
	}
}
