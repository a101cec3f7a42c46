package consulstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/coordkit/coord/conformance"
	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/consulstore"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/internal/faultproxy"
	"github.com/coordkit/coord/internal/testenv"
)

func backend(addr string) conformance.Backend {
	return conformance.Backend{
		Open: func(t testing.TB, ns string) coord.Store {
			s, err := consulstore.New(context.Background(), consulstore.Config{Address: addr, Prefix: "coordtest/" + ns, SessionTTL: 10e9})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Expire: backends.ExpireConsul,
		OpenFaulty: func(t testing.TB, ns string, ttl time.Duration) (coord.Store, conformance.Faults) {
			p, err := faultproxy.New(addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			s, err := consulstore.New(context.Background(), consulstore.Config{Address: p.Addr(), Prefix: "coordtest/" + ns, SessionTTL: ttl})
			if err != nil {
				t.Fatal(err)
			}
			return s, faults{faultproxy.NewClientFaults(p,
				func(then func()) { consulstore.LoseNextReply(s, then) },
				func(then func()) { consulstore.LoseNextRefusal(s, then) }), s}
		},
		KeepAlive: func(ctx context.Context, other coord.Store, id string) error {
			_, _, err := other.(*consulstore.Store).Client().Session().Renew(id, (&api.WriteOptions{}).WithContext(ctx))
			return err
		},
	}
}

// faults are the proxy's, except that a lost reply is made inside the
// client: a create reads before it commits, and losing every answer from
// the start would lose the read's, not the commit's.
type faults struct {
	*faultproxy.ClientFaults
	s *consulstore.Store
}

func (f faults) DropNextWrite() { consulstore.DropNextWrite(f.s) }

func TestConformance(t *testing.T) {
	b := backend(testenv.Addr(t, "consul"))
	b.Cluster = func(t testing.TB) conformance.Cluster { return cluster{testenv.SharedEnsemble(t, "consul")} }
	b.Restartable = func(t testing.TB) conformance.Server { return restartable{testenv.StartServer(t, "consul")} }
	conformance.Run(t, b)
}

// restartable is a Consul server of the test's own, keeping its state on
// disk.
type restartable struct{ *testenv.Server }

func (r restartable) Open(t testing.TB, ns string, ttl time.Duration) coord.Store {
	s, err := consulstore.New(context.Background(), consulstore.Config{Address: r.Addr, Prefix: "coordtest/" + ns, SessionTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openACL opens a store with cfg's token on an agent testenv.ACLAgent
// started, retrying while the agent's ACLs come up; it is closed when the
// test ends.
func openACL(t *testing.T, cfg consulstore.Config) *consulstore.Store {
	t.Helper()
	var s *consulstore.Store
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; {
		s, err = consulstore.New(context.Background(), cfg)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // ACL bootstrap takes a moment after the leader
	}
	if err != nil {
		t.Fatalf("token %s: %v", cfg.Token, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestACLToken runs against a second, ACL-enabled agent started by
// scripts/consul.sh: a wrong token is ErrPermission, the right one works.
func TestACLToken(t *testing.T) {
	const token = "6f1d2a8e-1c2b-4b7a-9a55-acl0000test1"
	addr := testenv.ACLAgent(t, token)
	ctx := context.Background()
	_, err := consulstore.New(ctx, consulstore.Config{Address: addr, Token: "not-the-token"})
	if !errors.Is(err, coord.ErrPermission) {
		t.Fatalf("wrong token: %v, want ErrPermission", err)
	}
	s := openACL(t, consulstore.Config{Address: addr, Token: token})
	if _, err := s.Create(ctx, "/acl", []byte("ok"), coord.Ephemeral); err != nil {
		t.Fatal(err)
	}
	if data, _, err := s.Get(ctx, "/acl"); err != nil || string(data) != "ok" {
		t.Fatalf("%q %v", data, err)
	}
}

// TestTLS runs against an agent serving HTTPS with a certificate from a test
// CA and asking for client certificates: with the CA and a client
// certificate in Config.TLS it works; without the CA, or without a client
// certificate, it is refused.
func TestTLS(t *testing.T) {
	testenv.Addr(t, "consul")
	dir := t.TempDir()
	testenv.WriteCerts(t, filepath.Join(dir, "tls"), "server.dc1.consul")
	if out, err := exec.Command("../../scripts/consul.sh", "start", dir).CombinedOutput(); err != nil {
		t.Fatalf("starting a TLS agent: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("../../scripts/consul.sh", "stop", dir).Run() })
	raw, err := os.ReadFile(filepath.Join(dir, "consul.https"))
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimSpace(string(raw))
	ctx := context.Background()
	_, err = consulstore.New(ctx, consulstore.Config{Address: addr, Scheme: "https"})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: %v, want a certificate error", err)
	}
	// The agent asks for a client certificate (verify_incoming on HTTPS).
	_, err = consulstore.New(ctx, consulstore.Config{Address: addr, Scheme: "https",
		TLS: api.TLSConfig{CAFile: filepath.Join(dir, "tls", "ca.pem")}})
	if err == nil {
		// (Under TLS 1.3 the agent's refusal comes after the handshake:
		// the client sees "certificate required" or a broken pipe.)
		t.Fatal("without a client certificate: a store")
	}
	s, err := consulstore.New(ctx, consulstore.Config{Address: addr, Scheme: "https",
		TLS: api.TLSConfig{CAFile: filepath.Join(dir, "tls", "ca.pem"),
			CertFile: filepath.Join(dir, "tls", "client.pem"), KeyFile: filepath.Join(dir, "tls", "client-key.pem")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(ctx, "/tls", []byte("over https"), coord.Ephemeral); err != nil {
		t.Fatal(err)
	}
	if data, _, err := s.Get(ctx, "/tls"); err != nil || string(data) != "over https" {
		t.Fatalf("%q %v", data, err)
	}
}

// Stores on a prefix and on prefixes that extend it see nothing of each
// other, and a prefix that could reach into another's layout is refused.
func TestPrefixesIsolated(t *testing.T) {
	addr := testenv.Addr(t, "consul")
	ctx := context.Background()
	open := func(prefix string) coord.Store {
		s, err := consulstore.New(ctx, consulstore.Config{Address: addr, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	base := freshPrefix("iso")
	for _, bad := range []string{base + "/nodes", base + "/seq", base + "//x", base + "/../x"} {
		_, err := consulstore.New(ctx, consulstore.Config{Address: addr, Prefix: bad})
		if !errors.Is(err, coord.ErrInvalidArgument) {
			t.Errorf("prefix %q: %v, want ErrInvalidArgument", bad, err)
		}
	}
	conformance.CheckIsolation(t, open, []string{base, base + "/a", base + "/001", base + "/nodesx", base + ".seq", base + "x"})
}

// A sequence counter that is not a number (written by something else) is
// refused with a clear error; nothing is created.
func TestCorruptCounterRefused(t *testing.T) {
	addr := testenv.Addr(t, "consul")
	ctx := context.Background()
	prefix := freshPrefix("corrupt")
	s := storeAt(t, addr, prefix)
	if _, err := s.Create(ctx, "/q", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().KV().Put(&api.KVPair{Key: prefix + "/seq/q", Value: []byte("12x")}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := s.Create(ctx, "/q/n-", nil, coord.Sequential)
	if !errors.Is(err, coord.ErrUnavailable) || !strings.Contains(err.Error(), "corrupt sequence counter") {
		t.Fatalf("create under a corrupt counter: %v, want ErrUnavailable naming the corrupt counter", err)
	}
	if kids, err := s.Children(ctx, "/q"); err != nil || len(kids) != 0 {
		t.Fatalf("children after the refusal: %v %v", kids, err)
	}
}

// A key written by something other than a store (an operator's `consul kv
// put`, which moves no child counter) between a create's plan and its commit
// is not overwritten: the create is refused with ErrNodeExists and the
// other writer's value stays. The same for an ephemeral create.
func TestCreateDoesNotOverwriteForeignKey(t *testing.T) {
	addr := testenv.Addr(t, "consul")
	ctx := context.Background()
	prefix := freshPrefix("foreign")
	s := storeAt(t, addr, prefix)
	for _, mode := range []coord.Mode{coord.Persistent, coord.Ephemeral} {
		path := "/n-" + mode.String()
		consulstore.BeforeNextCommit(s, func() {
			if _, err := s.Client().KV().Put(&api.KVPair{Key: prefix + "/nodes" + path, Value: []byte("theirs")}, nil); err != nil {
				t.Error(err)
			}
		})
		_, err := s.Create(ctx, path, []byte("ours"), mode)
		if !errors.Is(err, coord.ErrNodeExists) {
			t.Fatalf("%v create over a key written after the plan: %v, want ErrNodeExists", mode, err)
		}
		data, _, err := s.Get(ctx, path)
		if err != nil || string(data) != "theirs" {
			t.Fatalf("%v: the key holds %q (%v), want the other writer's \"theirs\"", mode, data, err)
		}
	}
}

// A node another writer changes between a transaction's plan and its commit
// fails the commit, for every op that read it: the transaction plans again,
// sees the new version and is refused with ErrBadVersion, having written

// twoStores opens two stores on one new prefix named after name; they are
// closed when the test ends.
func twoStores(t *testing.T, name string) (*consulstore.Store, *consulstore.Store) {
	addr, prefix := testenv.Addr(t, "consul"), freshPrefix(name)
	return storeAt(t, addr, prefix), storeAt(t, addr, prefix)
}

// nothing.
func TestCommitGuardsWhatThePlanRead(t *testing.T) {
	ctx := context.Background()
	s, other := twoStores(t, "guard")
	for _, c := range []struct {
		name string
		op   func(path string) coord.Op
	}{
		{"check", func(p string) coord.Op { return coord.CheckOp(p, 0) }},
		{"set", func(p string) coord.Op { return coord.SetOp(p, []byte("ours"), 0) }},
		{"delete", func(p string) coord.Op { return coord.DeleteOp(p, 0) }},
	} {
		path := "/" + c.name
		if _, err := s.Create(ctx, path, []byte("v0"), coord.Persistent); err != nil {
			t.Fatal(err)
		}
		consulstore.BeforeNextCommit(s, func() {
			if _, err := other.Set(ctx, path, []byte("theirs"), 0); err != nil {
				t.Error(err)
			}
		})
		_, err := s.Txn(ctx, c.op(path), coord.CreateOp(path+"-made", nil, coord.Persistent))
		var te *coord.TxnError
		if !errors.As(err, &te) || te.Index != 0 || !errors.Is(err, coord.ErrBadVersion) {
			t.Fatalf("%s of a node changed after the plan: %v, want ErrBadVersion at op 0", c.name, err)
		}
		data, st, err := s.Get(ctx, path)
		if err != nil || string(data) != "theirs" || st.Version != 1 {
			t.Fatalf("%s: the node holds %q at version %d (%v), want the other writer's \"theirs\" at 1", c.name, data, st.Version, err)
		}
		if _, ok, _ := s.Exists(ctx, path+"-made"); ok {
			t.Fatalf("%s: the refused transaction made %s-made", c.name, path)
		}
		// Deleted by the other after the plan: ErrNoNode, and nothing
		// applied (a delete-cas of a key that is gone would succeed).
		gone := path + "-gone"
		if _, err := s.Create(ctx, gone, nil, coord.Persistent); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Get(ctx, gone); err != nil {
			t.Fatal(err)
		}
		consulstore.BeforeNextCommit(s, func() {
			if err := other.Delete(ctx, gone, 0); err != nil {
				t.Error(err)
			}
		})
		_, err = s.Txn(ctx, c.op(gone), coord.CreateOp(gone+"-made", nil, coord.Persistent))
		if !errors.As(err, &te) || te.Index != 0 || !errors.Is(err, coord.ErrNoNode) {
			t.Fatalf("%s of a node deleted after the plan: %v, want ErrNoNode at op 0", c.name, err)
		}
		if _, ok, _ := s.Exists(ctx, gone+"-made"); ok {
			t.Fatalf("%s: the refused transaction made %s-made", c.name, gone)
		}
	}
}

// A create is planned on its parent as read (or as the store last saw it);
// a parent deleted and made again, ephemeral, before the commit (no child
// ever made under either, so the child counter the create guards is missing
// both times) fails the commit, which is planned again on the new parent and
// refused: no child under an ephemeral node.
func TestCreateUnderParentMadeAgain(t *testing.T) {
	ctx := context.Background()
	s, other := twoStores(t, "parent")
	if _, err := s.Create(ctx, "/p", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	consulstore.BeforeNextCommit(s, func() {
		if err := other.Delete(ctx, "/p", coord.AnyVersion); err != nil {
			t.Error(err)
		}
		if _, err := other.Create(ctx, "/p", nil, coord.Ephemeral); err != nil {
			t.Error(err)
		}
	})
	_, err := s.Create(ctx, "/p/c", nil, coord.Persistent)
	if !errors.Is(err, coord.ErrEphemeralParent) {
		t.Fatalf("a create under a parent made again as ephemeral: %v, want ErrEphemeralParent", err)
	}
	if _, ok, _ := other.Exists(ctx, "/p/c"); ok {
		t.Fatal("a child was made under the ephemeral node")
	}
}

// A child made by another client between a delete's read of its node and
// the delete's commit fails the commit (plain children move the node's
// children mark, sequential ones its counter; the delete checks both as it
// read them, missing or not), and the delete, planned again, is
// ErrNotEmpty: the child is not orphaned.
func TestDeleteGuardsChildrenMadeSince(t *testing.T) {
	ctx := context.Background()
	s, other := twoStores(t, "delguard")
	for i, c := range []struct {
		child string
		mode  coord.Mode
		had   bool // a child made and deleted before: the mark or counter exists
	}{
		{"/c", coord.Persistent, false},
		{"/c", coord.Persistent, true},
		{"/c-", coord.Sequential, false},
		{"/c-", coord.Sequential, true},
	} {
		p := fmt.Sprintf("/p%d", i)
		mustCreate(t, s, p, nil)
		if c.had {
			made, err := s.Create(ctx, p+c.child, nil, c.mode)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, made, coord.AnyVersion); err != nil {
				t.Fatal(err)
			}
		}
		var made string
		consulstore.BeforeNextCommit(s, func() {
			var err error
			if made, err = other.Create(ctx, p+c.child, nil, c.mode); err != nil {
				t.Error(err)
			}
		})
		if err := s.Delete(ctx, p, coord.AnyVersion); !errors.Is(err, coord.ErrNotEmpty) {
			t.Fatalf("%v child (made before: %v) made between the delete's read and its commit: Delete = %v, want ErrNotEmpty", c.mode, c.had, err)
		}
		if _, ok, err := s.Exists(ctx, made); !ok || err != nil {
			t.Fatalf("the child %s after the refused delete: exists %v, %v", made, ok, err)
		}
	}
}

// Plain creates under one parent from many stores at once do not refuse one
// another: N creates are N requests (under the parent's child counter, which
// they moved with a check-and-set until the children mark, they committed
// one at a time: 100 took about 3,300 requests and a second).
func TestPlainCreatesDoNotContend(t *testing.T) {
	ctx := context.Background()
	addr := testenv.Addr(t, "consul")
	prefix := freshPrefix("contend")
	var txns atomic.Int64
	via := agentVia(t, addr, func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && r.URL.Path == "/v1/txn" {
			txns.Add(1)
		}
		return false
	})
	const n = 20
	stores := make([]*consulstore.Store, n)
	for i := range stores {
		s, err := consulstore.New(ctx, consulstore.Config{Address: via, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	mustCreate(t, stores[0], "/dir", nil)
	for _, s := range stores { // each knows the parent, as a proxy that read the action does
		if _, ok, err := s.Exists(ctx, "/dir"); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	before := txns.Load()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, err := s.Create(ctx, fmt.Sprintf("/dir/p%02d", i), []byte("ok"), coord.Persistent); err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := txns.Load() - before; got != n {
		t.Fatalf("%d plain creates under one parent at once took %d transactions, want %d", n, got, n)
	}
	kids, err := stores[0].Children(ctx, "/dir")
	if err != nil || len(kids) != n {
		t.Fatalf("/dir holds %d children (%v), want %d", len(kids), err, n)
	}
	if err := stores[0].Delete(ctx, "/dir", coord.AnyVersion); !errors.Is(err, coord.ErrNotEmpty) {
		t.Fatalf("Delete(/dir) = %v, want ErrNotEmpty", err)
	}
}

// agentConns counts the connections the agent at addr holds open on its
// side (established, or closed by the client and still held by a handler),
// from /proc/net/tcp.
func agentConns(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatalf("counting connections: %v", err)
	}
	local := fmt.Sprintf("0100007F:%04X", p)
	n := 0
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		// state 01 established, 08 close-wait
		if len(f) > 3 && f[1] == local && (f[3] == "01" || f[3] == "08") {
			n++
		}
	}
	return n
}

// Idle watches hold one agent connection each, however long they wait and
// however short the request timeout; cancelled ones give theirs back once
// their query's wait ends. (The agent does not end a blocking query whose
// client went away: a client that cut its queries at the request timeout,
// 15 s, while each waited 5 minutes, piled up held connections per watch,
// and churn of watches ran the agent out of connections per client address:
// HTTP 429.)
func TestWatchesHoldFewAgentConnections(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp to count connections with")
	}
	srv := testenv.StartServer(t, "consul")
	ctx := context.Background()
	const wait = 4 * time.Second
	s, err := consulstore.New(ctx, consulstore.Config{Address: srv.Addr, Prefix: "coordtest/conns", RequestTimeout: time.Second, WatchWait: wait})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := agentConns(t, srv.Addr)
	const watches = 10
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := 0; i < watches/2; i++ {
		path := fmt.Sprintf("/w%d", i)
		if _, err := s.Create(ctx, path, nil, coord.Persistent); err != nil {
			t.Fatal(err)
		}
		ch, err := s.WatchData(wctx, path)
		if err != nil {
			t.Fatal(err)
		}
		<-ch
		kids, err := s.WatchChildren(wctx, path)
		if err != nil {
			t.Fatal(err)
		}
		<-kids
	}
	// Idle for several request timeouts and more than a query's wait.
	time.Sleep(wait + 2*time.Second)
	if n := agentConns(t, srv.Addr) - base; n > watches+2 {
		t.Fatalf("%d idle watches hold %d agent connections, want at most one each (+2 pooled)", watches, n)
	}
	cancel()
	limit := wait + wait/16 + 5*time.Second
	deadline := time.Now().Add(limit)
	for agentConns(t, srv.Addr)-base > 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := agentConns(t, srv.Addr) - base; n > 2 {
		t.Fatalf("cancelled watches still hold %d agent connections %v after", n, limit)
	}
}

// Short-lived watches (one per confirmed action) give their agent
// connections back within about their own lifetime, not WatchWait: their
// first blocking queries wait briefly.
func TestShortWatchesFreeTheirConnections(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp to count connections with")
	}
	srv := testenv.StartServer(t, "consul")
	ctx := context.Background()
	s, err := consulstore.New(ctx, consulstore.Config{Address: srv.Addr, Prefix: "coordtest/short"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(ctx, "/w", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	base := agentConns(t, srv.Addr)
	for i := 0; i < 30; i++ {
		wctx, cancel := context.WithCancel(ctx)
		ch, err := s.WatchChildren(wctx, "/w")
		if err != nil {
			t.Fatal(err)
		}
		<-ch
		time.Sleep(20 * time.Millisecond) // its first blocking query is out
		cancel()
	}
	deadline := time.Now().Add(10 * time.Second) // WatchWait is 30s
	for agentConns(t, srv.Addr)-base > 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := agentConns(t, srv.Addr) - base; n > 2 {
		t.Fatalf("30 short watches, cancelled, still hold %d agent connections", n)
	}
}

// agentVia is a reverse proxy on loopback to the agent at addr, closed when
// t ends: each request goes to handle first, which answers it itself
// (returning true) or lets it through. It returns the proxy's address.
func agentVia(t *testing.T, addr string, handle func(w http.ResponseWriter, r *http.Request) bool) string {
	t.Helper()
	target, err := url.Parse("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !handle(w, r) {
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// countingAgent is agentVia counting the requests it forwards.
func countingAgent(t *testing.T, addr string) (string, *atomic.Int64) {
	var n atomic.Int64
	via := agentVia(t, addr, func(http.ResponseWriter, *http.Request) bool { n.Add(1); return false })
	return via, &n
}

// countedStore opens a store on a fresh prefix named after name, through
// countingAgent, closed when t ends, and returns it with its prefix and the
// count of its requests.
func countedStore(t *testing.T, addr, name string) (*consulstore.Store, string, *atomic.Int64) {
	t.Helper()
	prefix := freshPrefix(name)
	via, requests := countingAgent(t, addr)
	return storeAt(t, via, prefix), prefix, requests
}

// A Txn of sets and checks on nodes whose state the store last saw (read or
// written) commits in one request, without reading first; when another
// writer has moved a node since (through a store, or `consul kv put`), the
// commit's index checks fail, nothing is applied, and the Txn reads the
// server's state: a stale version is ErrBadVersion, AnyVersion succeeds on
// top of the other write.
func TestKnownSetsCommitWithoutReading(t *testing.T) {
	addr := testenv.Addr(t, "consul")
	ctx := context.Background()
	s, prefix, requests := countedStore(t, addr, "known")
	other, err := consulstore.New(ctx, consulstore.Config{Address: addr, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, p := range []string{"/a", "/b", "/c"} {
		if _, err := s.Create(ctx, p, []byte("v0"), coord.Persistent); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.GetMany(ctx, "/b", "/c"); err != nil {
		t.Fatal(err)
	}
	count := func(what string, want int64, f func() error) {
		t.Helper()
		before := requests.Load()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := requests.Load() - before; got != want {
			t.Fatalf("%s took %d requests, want %d", what, got, want)
		}
	}
	count("a set of a node just created", 1, func() error {
		st, err := s.Set(ctx, "/a", []byte("v1"), 0)
		if err == nil && st.Version != 1 {
			err = fmt.Errorf("version %d, want 1", st.Version)
		}
		return err
	})
	count("a set of a node just set", 1, func() error { _, err := s.Set(ctx, "/a", []byte("v2"), 1); return err })
	count("sets and a check of nodes just read", 1, func() error {
		res, err := s.Txn(ctx, coord.SetOp("/b", []byte("v1"), 0), coord.SetOp("/c", []byte("v1"), coord.AnyVersion), coord.CheckOp("/a", 2))
		if err == nil && (res[0].Stat.Version != 1 || res[1].Stat.Version != 1 || res[2].Stat.Version != 2) {
			err = fmt.Errorf("results %+v, want versions 1, 1, 2", res)
		}
		return err
	})

	// Moved by another store: the version s knows (2) is stale.
	if _, err := other.Set(ctx, "/a", []byte("theirs"), 2); err != nil {
		t.Fatal(err)
	}
	before := requests.Load()
	if _, err := s.Set(ctx, "/a", []byte("ours"), 2); !errors.Is(err, coord.ErrBadVersion) {
		t.Fatalf("a set at the version last seen, after another writer's: %v, want ErrBadVersion", err)
	}
	if requests.Load()-before < 2 {
		t.Fatalf("the refusal took %d requests: it was not read from the server", requests.Load()-before)
	}
	if data, st, err := other.Get(ctx, "/a"); err != nil || string(data) != "theirs" || st.Version != 3 {
		t.Fatalf("after the refused set /a holds %q at %d (%v), want the other writer's \"theirs\" at 3", data, st.Version, err)
	}
	// Moved by a foreign writer, which resets the flags: the version s
	// knows (1) looks right, and is not.
	if _, err := other.Client().KV().Put(&api.KVPair{Key: prefix + "/nodes/b", Value: []byte("foreign")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Txn(ctx, coord.CheckOp("/c", 1), coord.SetOp("/b", []byte("ours"), 1)); !errors.Is(err, coord.ErrBadVersion) {
		t.Fatalf("a set at the version last seen, after a foreign put: %v, want ErrBadVersion", err)
	}
	if data, _, err := other.Get(ctx, "/b"); err != nil || string(data) != "foreign" {
		t.Fatalf("after the refused txn /b holds %q (%v), want \"foreign\"", data, err)
	}
	st, err := s.Set(ctx, "/b", []byte("ours"), coord.AnyVersion)
	if err != nil || st.Version != 1 {
		t.Fatalf("AnyVersion set over the foreign put: %+v %v, want version 1 (0, the put's, + 1)", st, err)
	}
	// A check of a moved node fails the txn, although its set is current.
	if _, err := other.Set(ctx, "/c", []byte("theirs"), 1); err != nil {
		t.Fatal(err)
	}
	_, err = s.Txn(ctx, coord.CheckOp("/c", 1), coord.SetOp("/b", []byte("again"), 1))
	var te *coord.TxnError
	if !errors.As(err, &te) || te.Index != 0 || !errors.Is(err, coord.ErrBadVersion) {
		t.Fatalf("a check at the version last seen, after another writer's set: %v, want ErrBadVersion at op 0", err)
	}
	if data, st, err := other.Get(ctx, "/b"); err != nil || string(data) != "ours" || st.Version != 1 {
		t.Fatalf("after the refused txn /b holds %q at %d (%v), want \"ours\" at 1", data, st.Version, err)
	}
	// Moved between the lookup and the commit.
	consulstore.BeforeNextCommit(s, func() {
		if _, err := other.Set(ctx, "/c", []byte("theirs"), 2); err != nil {
			t.Error(err)
		}
	})
	if _, err := s.Set(ctx, "/c", []byte("ours"), 2); !errors.Is(err, coord.ErrBadVersion) {
		t.Fatalf("a set whose node moved before its commit: %v, want ErrBadVersion", err)
	}
	// Deleted and made again: a new node at version 0.
	if err := other.Delete(ctx, "/c", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Create(ctx, "/c", []byte("new"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Set(ctx, "/c", []byte("ours"), coord.AnyVersion); err != nil || st.Version != 1 {
		t.Fatalf("AnyVersion set of a node made again: %+v %v, want version 1", st, err)
	}
}

// An agent older than Consul 1.14 has no get-or-empty: reads fall back to
// get, which fails on a missing key, and give the same results: the missing
// nodes named, the others read, transactions planned on them.
func TestOldAgentReads(t *testing.T) {
	addr := testenv.Addr(t, "consul")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prefix := freshPrefix("old")
	s := storeAt(t, addr, prefix)
	consulstore.ReadAsOldAgent(s)
	for _, p := range []string{"/a", "/c"} {
		if _, err := s.Create(ctx, p, []byte(p), coord.Persistent); err != nil {
			t.Fatal(err)
		}
	}
	paths := []string{"/a", "/b", "/c", "/d", "/a"}
	res, err := s.GetMany(ctx, paths...)
	if err != nil || len(res) != len(paths) {
		t.Fatalf("GetMany: %d results, %v", len(res), err)
	}
	for i, p := range paths {
		if p == "/b" || p == "/d" {
			if !errors.Is(res[i].Err, coord.ErrNoNode) {
				t.Fatalf("GetMany of missing %s: %v, want ErrNoNode", p, res[i].Err)
			}
		} else if res[i].Err != nil || string(res[i].Data) != p {
			t.Fatalf("GetMany of %s: %q %v", p, res[i].Data, res[i].Err)
		}
	}
	if _, err := s.Txn(ctx, coord.CreateOp("/b", nil, coord.Persistent), coord.SetOp("/a", []byte("a1"), 0), coord.DeleteOp("/c", 0)); err != nil {
		t.Fatalf("a txn planned on reads with missing keys: %v", err)
	}
	if data, st, err := s.Get(ctx, "/a"); err != nil || string(data) != "a1" || st.Version != 1 {
		t.Fatalf("/a after the txn: %q at %d, %v", data, st.Version, err)
	}
	if _, ok, err := s.Exists(ctx, "/c"); ok || err != nil {
		t.Fatalf("/c after its delete: exists %v, %v", ok, err)
	}
	_, err = s.Txn(ctx, coord.CheckOp("/b", 0), coord.CheckOp("/d", 0))
	var te *coord.TxnError
	if !errors.As(err, &te) || te.Index != 1 || !errors.Is(err, coord.ErrNoNode) {
		t.Fatalf("a check of a missing node: %v, want ErrNoNode at op 1", err)
	}
}

// An agent older than 1.14 answers a read transaction with get-or-empty
// by refusing the verb (409, "unknown KV verb"); the store then reads with
// get as such an agent allows, from then on, across every chunk of a
// GetMany larger than one transaction.
func TestOldAgentDetected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var refused, sent atomic.Int64
	via := agentVia(t, testenv.Addr(t, "consul"), func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut || r.URL.Path != "/v1/txn" {
			return false
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			// A read given up by the store (its sibling found the old
			// agent first) while its body was on its way.
			http.Error(w, err.Error(), http.StatusBadRequest)
			return true
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if !bytes.Contains(body, []byte(`"get-or-empty"`)) {
			return false
		}
		sent.Add(1)
		refused.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		fmt.Fprint(w, `{"Results":null,"Errors":[{"OpIndex":0,"What":"unknown KV verb \"get-or-empty\""}]}`)
		return true
	})
	prefix := freshPrefix("olddetect")
	s := storeAt(t, via, prefix)
	// The nodes are made through the agent itself: the GetMany is the
	// store's first read.
	direct := storeAt(t, testenv.Addr(t, "consul"), prefix)
	var paths []string
	for i := 0; i < 300; i++ {
		p := fmt.Sprintf("/n%03d", i)
		paths = append(paths, p)
		if i%3 == 0 {
			if _, err := direct.Create(ctx, p, []byte(p), coord.Persistent); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := refused.Load()
	res, err := s.GetMany(ctx, paths...)
	if err != nil || len(res) != len(paths) {
		t.Fatalf("GetMany through an old agent: %d results, %v", len(res), err)
	}
	for i, p := range paths {
		if i%3 != 0 {
			if !errors.Is(res[i].Err, coord.ErrNoNode) {
				t.Fatalf("GetMany of missing %s: %v, want ErrNoNode", p, res[i].Err)
			}
		} else if res[i].Err != nil || string(res[i].Data) != p {
			t.Fatalf("GetMany of %s: %q %v", p, res[i].Data, res[i].Err)
		}
	}
	if refused.Load() == 0 {
		t.Fatal("the store never asked for get-or-empty")
	}
	// Once found old, the agent is not asked for get-or-empty again.
	after := sent.Load()
	if _, err := s.GetMany(ctx, paths...); err != nil {
		t.Fatal(err)
	}
	if sent.Load() != after {
		t.Fatalf("get-or-empty sent again after the agent refused it (%d refusals before the GetMany, %d after)", before, after)
	}
}

// A transaction within Limits whose request body the agent would still
// refuse (long keys on top of the largest data) is refused before it is
// sent, with ErrTooLarge and nothing written: the agent drops the
// connection while such a body is being written, which would look like a
// lost reply.
func TestLongKeysBodyRefused(t *testing.T) {
	addr := testenv.Addr(t, "consul")
	ctx := context.Background()
	prefix := freshPrefix("body")
	// Count the transactions that carry a write (the agent answers some
	// oversized bodies with 413, which would look the same to the caller).
	var writes atomic.Int64
	via := agentVia(t, addr, func(_ http.ResponseWriter, r *http.Request) bool {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/txn" && bytes.Contains(body, []byte(`"Verb":"cas"`)) {
			writes.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		return false
	})
	s, err := consulstore.New(ctx, consulstore.Config{Address: via, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lim := s.Limits()
	n := max(lim.MaxTxnOps, lim.MaxTxnSetOps)
	if _, err := s.Create(ctx, "/l", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("k", 900)
	ops := make([]coord.Op, n)
	for i := range ops {
		p := fmt.Sprintf("/l/%s%04d", long, i)
		if _, err := s.Create(ctx, p, nil, coord.Persistent); err != nil {
			t.Fatal(err)
		}
		data := make([]byte, lim.MaxTxnBytes/n-lim.TxnOpBytes)
		ops[i] = coord.SetOp(p, data, 0)
	}
	before := writes.Load()
	_, err = s.Txn(ctx, ops...)
	if !errors.Is(err, coord.ErrTooLarge) {
		t.Fatalf("a txn of %d sets of %d bytes on %d-byte keys: %v, want ErrTooLarge", n, len(ops[0].Data), len(ops[0].Path), err)
	}
	if sent := writes.Load() - before; sent != 0 {
		t.Fatalf("the refused txn was sent %d times; it must be refused before sending", sent)
	}
	for _, op := range ops {
		if _, st, err := s.Get(ctx, op.Path); err != nil || st.Version != 0 {
			t.Fatalf("%s after the refusal: version %d, %v", op.Path[:8], st.Version, err)
		}
	}
	// The same data on short keys fits.
	if _, err := s.Create(ctx, "/s", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	short := make([]coord.Op, n)
	for i := range short {
		p := fmt.Sprintf("/s/%04d", i)
		if _, err := s.Create(ctx, p, nil, coord.Persistent); err != nil {
			t.Fatal(err)
		}
		short[i] = coord.SetOp(p, ops[i].Data, 0)
	}
	if _, err := s.Txn(ctx, short...); err != nil {
		t.Fatalf("the same data on short keys: %v", err)
	}
}

// TestReadOnlyToken: on an ACL-enabled agent, a token whose policy grants
// only reads of the store's keys reads them and is refused every write
// with ErrPermission, writing nothing; its session (which needs write on
// the node's session rules) is refused the same way.
func TestReadOnlyToken(t *testing.T) {
	const mgmt = "6f1d2a8e-1c2b-4b7a-9a55-acl0000test3"
	addr := testenv.ACLAgent(t, mgmt)
	ctx := context.Background()
	admin := openACL(t, consulstore.Config{Address: addr, Token: mgmt, Prefix: "ro"})
	if _, err := admin.Create(ctx, "/n", []byte("by admin"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	cli, err := api.NewClient(&api.Config{Address: addr, Token: mgmt})
	if err != nil {
		t.Fatal(err)
	}
	pol, _, err := cli.ACL().PolicyCreate(&api.ACLPolicy{Name: "read-only", Rules: `key_prefix "" { policy = "read" }`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := cli.ACL().TokenCreate(&api.ACLToken{Policies: []*api.ACLTokenPolicyLink{{ID: pol.ID}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := consulstore.New(ctx, consulstore.Config{Address: addr, Token: tok.SecretID, Prefix: "ro"})
	if err != nil {
		t.Fatalf("the read-only token: %v", err)
	}
	defer reader.Close()
	testenv.WritesRefused(t, ctx, reader, admin, "/n")
}

// TestEnvironmentIgnored: consul/api fills what its Config leaves empty
// from CONSUL_* variables (the token, the namespace, the partition); the
// store takes none of them. With the management token in CONSUL_HTTP_TOKEN
// and in the file CONSUL_HTTP_TOKEN_FILE names, a store without a token is
// refused its writes with ErrPermission; a store with Config's token works
// although CONSUL_NAMESPACE and CONSUL_PARTITION name what this agent (the
// community edition) refuses.
func TestEnvironmentIgnored(t *testing.T) {
	const mgmt = "6f1d2a8e-1c2b-4b7a-9a55-acl0000test4"
	addr := testenv.ACLAgent(t, mgmt)
	ctx := context.Background()
	admin := openACL(t, consulstore.Config{Address: addr, Token: mgmt, Prefix: "env"})
	if _, err := admin.Create(ctx, "/n", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(mgmt+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONSUL_HTTP_TOKEN", mgmt)
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", file)
	t.Setenv("CONSUL_NAMESPACE", "team-a")
	t.Setenv("CONSUL_PARTITION", "part-a")

	s, err := consulstore.New(ctx, consulstore.Config{Address: addr, Prefix: "env"})
	if err == nil {
		defer s.Close()
		_, err = s.Create(ctx, "/by-env", nil, coord.Persistent)
	}
	if !errors.Is(err, coord.ErrPermission) {
		t.Fatalf("a store without a token, the management token in the environment: %v, want ErrPermission", err)
	}
	if _, _, err := admin.Get(ctx, "/by-env"); !errors.Is(err, coord.ErrNoNode) {
		t.Fatalf("the refused create: %v, want ErrNoNode", err)
	}

	withToken, err := consulstore.New(ctx, consulstore.Config{Address: addr, Token: mgmt, Prefix: "env"})
	if err != nil {
		t.Fatal(err)
	}
	defer withToken.Close()
	if _, err := withToken.Create(ctx, "/with-token", []byte("x"), coord.Persistent); err != nil {
		t.Fatalf("Config's token, CONSUL_NAMESPACE and CONSUL_PARTITION set: %v", err)
	}
	if d, _, err := admin.Get(ctx, "/with-token"); err != nil || string(d) != "x" {
		t.Fatalf("the node written: %q, %v", d, err)
	}
}

// TestConformanceCluster runs the suite's basic cases (the Fault, Restart
// and Cluster cases run in TestConformance) against the cluster the package
// shares, three servers and a client agent that stores talk to, as to a
// local agent (scripts/consul.sh cluster).
func TestConformanceCluster(t *testing.T) {
	e := testenv.SharedEnsemble(t, "consul")
	conformance.RunBasic(t, backend(e.Addrs[0]))
}

// cluster is the conformance view of a Consul cluster.
type cluster struct{ *testenv.Ensemble }

func (c cluster) Open(t testing.TB, ns string, ttl time.Duration) coord.Store {
	s, err := consulstore.New(context.Background(), consulstore.Config{Address: c.Addrs[0], Prefix: "coordtest/" + ns, SessionTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (c cluster) Members() int            { return c.N }
func (c cluster) Leader(t testing.TB) int { return c.Ensemble.Leader(t, conformance.Timeout) }

// Children of a node that has children is one request (a node with a child
// exists); a node without children, or none at all, takes a second to tell
// the two apart.
func TestChildrenRequests(t *testing.T) {
	ctx := context.Background()
	s, _, requests := countedStore(t, testenv.Addr(t, "consul"), "kids")
	for _, p := range []string{"/d", "/d/a", "/d/b", "/e"} {
		if _, err := s.Create(ctx, p, nil, coord.Persistent); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		path     string
		want     string
		requests int64
	}{
		{"/d", "[a b] <nil>", 1},
		{"/", "[d e] <nil>", 1},
		{"/e", "[] <nil>", 2},
		{"/d/a", "[] <nil>", 2},
		{"/none", "[] coord: children /none: node does not exist", 2},
	} {
		before := requests.Load()
		kids, err := s.Children(ctx, c.path)
		if got := fmt.Sprint(kids, " ", err); got != c.want {
			t.Fatalf("Children(%s) = %s, want %s", c.path, got, c.want)
		}
		if n := requests.Load() - before; n != c.requests {
			t.Fatalf("Children(%s) took %d requests, want %d", c.path, n, c.requests)
		}
	}
}

// refusal is an answer of an agent that turns a request away.
type refusal struct {
	code int
	body string
}

// notTaken are the refusals of an agent that no server took the request
// from (so a write was not applied).
var notTaken = []refusal{
	{http.StatusTooManyRequests, "Your IP is issuing too many concurrent connections"},
	{http.StatusServiceUnavailable, "unavailable"},
	{http.StatusInternalServerError, "No cluster leader"},
	{http.StatusInternalServerError, "rpc error getting client: failed to get conn: dial tcp 127.0.0.1:8300: connect: connection refused"},
}

// turningAgent stands in front of the test agent and turns away the next
// refuse requests that match, each with answer (or, when nil, the
// refusals of notTaken in turn), counting them in refused.
type turningAgent struct {
	refuse, refused atomic.Int64
	answer          atomic.Pointer[refusal]
}

// turningStore opens a store on a fresh prefix through a turningAgent that
// turns away requests that match.
func turningStore(t *testing.T, ctx context.Context, name string, match func(*http.Request) bool) (*turningAgent, *consulstore.Store) {
	t.Helper()
	a := &turningAgent{}
	via := agentVia(t, testenv.Addr(t, "consul"), func(w http.ResponseWriter, r *http.Request) bool {
		if !match(r) || a.refuse.Add(-1) < 0 {
			return false
		}
		n := a.refused.Add(1)
		ans := a.answer.Load()
		if ans == nil {
			ans = &notTaken[int(n-1)%len(notTaken)]
		}
		http.Error(w, ans.body, ans.code)
		return true
	})
	return a, storeAt(t, via, freshPrefix(name))
}

// An agent that turns a read away (429 Too Many Requests, 503, a 500 that no
// server took it) is asked again, within the call's deadline: the read
// succeeds once the agent answers, and the refusals were seen.
func TestReadsRetriedWhenTurnedAway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, s := turningStore(t, ctx, "turned", func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/kv/")
	})
	if _, err := s.Create(ctx, "/n", []byte("v"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	a.refuse.Store(3)
	data, _, err := s.Get(ctx, "/n")
	if err != nil || string(data) != "v" {
		t.Fatalf("Get after the agent turned it away 3 times: %q, %v", data, err)
	}
	if a.refused.Load() != 3 {
		t.Fatalf("the agent turned %d reads away, want 3 (the test did not hit the read)", a.refused.Load())
	}
	a.refuse.Store(3)
	if kids, err := s.Children(ctx, "/"); err != nil || len(kids) != 1 {
		t.Fatalf("Children after the agent turned it away 3 times: %v, %v", kids, err)
	}
}

// An agent that turns a write away before any server took it (429, 503, a
// 500 "No cluster leader" or "rpc error getting client") is asked again
// within the call's deadline, and the write is applied once. A 500 that may
// come after the server applied it ("leadership lost while committing log")
// is not repeated: the caller is told the outcome is unknown.
func TestWritesRetriedWhenTurnedAway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, s := turningStore(t, ctx, "wturned", func(r *http.Request) bool {
		return r.Method == http.MethodPut && r.URL.Path == "/v1/txn"
	})
	mustCreate(t, s, "/n", []byte("0"))
	for i := range notTaken {
		ans := notTaken[i]
		a.answer.Store(&ans)
		a.refused.Store(0)
		a.refuse.Store(2)
		st, err := s.Set(ctx, "/n", []byte(fmt.Sprint(i+1)), int64(i))
		if err != nil {
			t.Fatalf("Set after the agent answered %d %q twice: %v", ans.code, ans.body, err)
		}
		if a.refused.Load() != 2 {
			t.Fatalf("%d %q: the agent turned %d writes away, want 2 (the test did not hit the write)", ans.code, ans.body, a.refused.Load())
		}
		if data, got, err := s.Get(ctx, "/n"); err != nil || string(data) != fmt.Sprint(i+1) || got.Version != int64(i+1) || st.Version != got.Version {
			t.Fatalf("%d %q: after the Set: %q %+v %v (Set said %+v): want applied once", ans.code, ans.body, data, got, err, st)
		}
	}
	a.answer.Store(&refusal{http.StatusInternalServerError, "leadership lost while committing log"})
	a.refuse.Store(1)
	_, err := s.Set(ctx, "/n", []byte("x"), coord.AnyVersion)
	if !errors.Is(err, coord.ErrOutcomeUnknown) {
		t.Fatalf("Set answered \"leadership lost while committing log\": %v, want ErrOutcomeUnknown", err)
	}
}

// A Txn of deletes reads the subtrees of the nodes it deletes that their
// child counters and children marks show to hold only what it deletes with
// get-tree, many in one read transaction: deleting five leaves and three
// directories of two sequential children each is three requests (the keys,
// the subtrees, the commit). A directory that had a plain child (its mark
// is set: the mark counts nothing) is listed by key names, one request
// each, concurrently. A key put under a node by other means, which moves no
// counter or mark, is still found. A subtree the counters do not bound (a
// child not deleted here, with a large value) is listed by key names, not
// read whole.
func TestDeleteTxnReads(t *testing.T) {
	ctx := context.Background()
	prefix := freshPrefix("dtxn")
	var mu sync.Mutex
	var seen []string
	var requests atomic.Int64
	via := agentVia(t, testenv.Addr(t, "consul"), func(_ http.ResponseWriter, r *http.Request) bool {
		requests.Add(1)
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		return false
	})
	s, err := consulstore.New(ctx, consulstore.Config{Address: via, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ops []coord.Op
	for i := range 5 {
		p := fmt.Sprintf("/a%d", i)
		mustCreate(t, s, p, nil)
		ops = append(ops, coord.DeleteOp(p, coord.AnyVersion))
	}
	dirs := func(name string, mode coord.Mode) []coord.Op {
		var ops []coord.Op
		for i := range 3 {
			d := fmt.Sprintf("/%s%d", name, i)
			mustCreate(t, s, d, nil)
			for _, k := range []string{"p1", "p2"} {
				p, err := s.Create(ctx, d+"/"+k, []byte("answer"), mode)
				if err != nil {
					t.Fatal(err)
				}
				ops = append(ops, coord.DeleteOp(p, coord.AnyVersion))
			}
			ops = append(ops, coord.DeleteOp(d, coord.AnyVersion))
		}
		return ops
	}
	ops = append(ops, dirs("d", coord.Sequential)...)
	for _, c := range []struct {
		ops          func() []coord.Op
		requests     int64
		listings     int
		what, layout string
	}{
		{func() []coord.Op { return ops }, 3, 0, "five leaves and three directories of sequential children", "the keys, the subtrees, the commit"},
		{func() []coord.Op { return dirs("e", coord.Persistent) }, 5, 3, "three directories of plain children", "the keys, a listing of each, the commit"},
	} {
		ops := c.ops()
		mu.Lock()
		seen = nil
		mu.Unlock()
		before := requests.Load()
		if _, err := s.Txn(ctx, ops...); err != nil {
			t.Fatal(err)
		}
		if n := requests.Load() - before; n != c.requests {
			t.Fatalf("the Txn of %d deletes (%s) took %d requests, want %d (%s)", len(ops), c.what, n, c.requests, c.layout)
		}
		mu.Lock()
		listings := 0
		for _, r := range seen {
			if strings.HasPrefix(r, "GET /v1/kv/") && strings.Contains(r, "keys") {
				listings++
			}
		}
		mu.Unlock()
		if listings != c.listings {
			t.Fatalf("the Txn of %d deletes (%s) listed %d subtrees, want %d; requests: %q", len(ops), c.what, listings, c.listings, seen)
		}
		kids, err := s.Children(ctx, "/")
		if err != nil || len(kids) != 0 {
			t.Fatalf("after the deletes the root holds %v (%v)", kids, err)
		}
	}

	mustCreate(t, s, "/f", nil)
	if _, err := s.Client().KV().Put(&api.KVPair{Key: prefix + "/nodes/f/x", Value: []byte("foreign")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "/f", coord.AnyVersion); !errors.Is(err, coord.ErrNotEmpty) {
		t.Fatalf("Delete(/f) over a foreign child = %v, want ErrNotEmpty", err)
	}
	if _, ok, err := s.Exists(ctx, "/f"); !ok || err != nil {
		t.Fatalf("/f after the refused delete: exists %v, %v", ok, err)
	}

	// /big keeps a child; /deep loses its only child, which keeps one. In
	// /seq and /seqdeep the children are sequential, so that only the
	// counters (which count two creates for one child deleted) bound them,
	// not a children mark.
	for _, c := range []struct {
		top, gone, keep string
		mode            coord.Mode
	}{
		{"/big", "/big/gone", "/big/keep", coord.Persistent},
		{"/deep", "/deep/gone", "/deep/gone/keep", coord.Persistent},
		{"/seq", "/seq/gone-", "/seq/keep-", coord.Sequential},
		{"/seqdeep", "/seqdeep/gone-", "/keep-", coord.Sequential},
	} {
		mustCreate(t, s, c.top, nil)
		gone, err := s.Create(ctx, c.gone, nil, c.mode)
		if err != nil {
			t.Fatal(err)
		}
		c.gone = gone
		keep := c.keep
		if c.top == "/seqdeep" {
			keep = gone + keep
		}
		if _, err := s.Create(ctx, keep, bytes.Repeat([]byte("k"), 300<<10), c.mode); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		seen = nil
		mu.Unlock()
		_, err = s.Txn(ctx, coord.DeleteOp(c.gone, coord.AnyVersion), coord.DeleteOp(c.top, coord.AnyVersion))
		if !errors.Is(err, coord.ErrNotEmpty) {
			t.Fatalf("deleting %s and %s = %v, want ErrNotEmpty", c.gone, c.top, err)
		}
		mu.Lock()
		listed := false
		for _, r := range seen {
			if strings.HasPrefix(r, "GET /v1/kv/"+prefix+"/nodes"+c.top+"/?") && strings.Contains(r, "keys") {
				listed = true
			}
		}
		mu.Unlock()
		if !listed {
			t.Fatalf("the subtree of %s was not listed by key names; requests: %q", c.top, seen)
		}
	}
}

func mustCreate(t *testing.T, s coord.Store, path string, data []byte) {
	t.Helper()
	if _, err := s.Create(context.Background(), path, data, coord.Persistent); err != nil {
		t.Fatal(err)
	}
}

// Every read the store sends asks the agent for a consistent read (the
// leader confirms with a quorum that it still leads before it answers), so
// a read sees every write acknowledged before it, even from a leader that
// was cut off or paused and does not yet know it was replaced. Consul's
// default mode answers from the leader's memory without that check, and
// its stale mode from any server. A deposed leader answers for less than
// its lease, which ends before a new leader can be elected, so the
// difference shows only after a pause of the leader's process; hence this
// check on the wire: plain reads (GET /v1/kv, blocking queries included)
// and read-only transactions all carry ?consistent.
func TestReadsConsistent(t *testing.T) {
	addr := testenv.Addr(t, "consul")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		mu                  sync.Mutex
		plain, txns, writes int
		bad                 []string
	)
	reads := map[string]bool{"get": true, "get-tree": true, "get-or-empty": true, "check-index": true, "check-session": true, "check-not-exists": true}
	via := agentVia(t, addr, func(w http.ResponseWriter, r *http.Request) bool {
		_, consistent := r.URL.Query()["consistent"]
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/kv/"):
			plain++
			if !consistent {
				bad = append(bad, r.Method+" "+r.URL.String())
			}
		case r.URL.Path == "/v1/txn":
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return true
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			var ops []struct{ KV *struct{ Verb string } }
			if err := json.Unmarshal(body, &ops); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return true
			}
			readOnly := len(ops) > 0
			for _, op := range ops {
				if op.KV == nil || !reads[op.KV.Verb] {
					readOnly = false
				}
			}
			if !readOnly {
				writes++
				return false
			}
			txns++
			if !consistent {
				bad = append(bad, r.Method+" "+r.URL.String()+" "+string(body))
			}
		}
		return false
	})
	prefix := freshPrefix("consistent")
	s := storeAt(t, via, prefix)
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err := s.Create(ctx, "/d", []byte("v"), coord.Persistent)
	step("create /d", err)
	_, err = s.Create(ctx, "/d/a", nil, coord.Ephemeral)
	step("create /d/a", err)
	_, _, err = s.Get(ctx, "/d")
	step("get", err)
	_, _, err = s.Exists(ctx, "/none")
	step("exists", err)
	_, err = s.GetMany(ctx, "/d", "/d/a", "/none")
	step("getmany", err)
	_, err = s.Children(ctx, "/d")
	step("children", err)
	_, err = s.Children(ctx, "/d/a")
	step("children of a leaf", err)
	wctx, wcancel := context.WithCancel(ctx)
	data, err := s.WatchData(wctx, "/d")
	step("watch data", err)
	kids, err := s.WatchChildren(wctx, "/d")
	step("watch children", err)
	<-data
	<-kids
	_, err = s.Set(ctx, "/d", []byte("w"), coord.AnyVersion) // a first event for each watch
	step("set", err)
	<-data
	step("delete /d/a", s.Delete(ctx, "/d/a", coord.AnyVersion))
	<-kids
	wcancel()
	_, err = s.Txn(ctx, coord.CheckOp("/d", coord.AnyVersion), coord.DeleteOp("/d", coord.AnyVersion))
	step("txn", err)
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("%d of %d reads were not consistent reads, the first: %s", len(bad), plain+txns, bad[0])
	}
	if plain < 3 || txns < 3 || writes < 3 {
		t.Fatalf("the calls made %d plain reads, %d read transactions and %d writes; want at least 3 of each for the check to mean anything", plain, txns, writes)
	}
	t.Logf("%d plain reads and %d read transactions, all consistent; %d writes", plain, txns, writes)
}

// A small Txn of creates (with checks or sets, no delete) under parents
// whose state the store last saw commits in one request, planned on that
// state: the lock's create, and a fenced create, as the models make them.
// Where another client has moved something since (a create under the
// parent, a delete, the parent made again), the commit's guards fail,
// nothing is applied, and the Txn reads the server's state: the outcome is
// the server's, never the remembered one.
func TestKnownCreatesCommitWithoutReading(t *testing.T) {
	ctx := context.Background()
	s, other, counted := knownStores(t, "known-creates")
	create := func(path string, mode coord.Mode, want string) func() error {
		return func() error {
			p, err := s.Create(ctx, path, nil, mode)
			if err == nil && p != want {
				err = fmt.Errorf("made %s, want %s", p, want)
			}
			return err
		}
	}
	if _, err := s.Create(ctx, "/q", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx); err != nil { // its own request, before the ephemeral creates
		t.Fatal(err)
	}
	counted("the first sequential create under a parent this store made", 1, create("/q/n-", coord.Sequential, "/q/n-0000000000"))
	for i := 1; i <= 3; i++ {
		counted("a sequential ephemeral create", 1, create("/q/n-", coord.EphemeralSequential, fmt.Sprintf("/q/n-%010d", i)))
	}
	counted("a fenced create", 1, func() error {
		res, err := s.Txn(ctx, coord.CheckOp("/q/n-0000000003", 0), coord.CreateOp("/q/c", []byte("x"), coord.Persistent))
		if err == nil && (!res[0].Stat.Ephemeral || res[0].Stat.Owner == "" || res[1].Path != "/q/c") {
			err = fmt.Errorf("results %+v", res)
		}
		return err
	})
	// Another client creates under /q: the counter moved (/q/c, a plain
	// create, moved the children mark, not the counter).
	if p, err := other.Create(ctx, "/q/n-", nil, coord.Sequential); err != nil || p != "/q/n-0000000004" {
		t.Fatalf("other's create: %s %v", p, err)
	}
	counted("a sequential create after another client's", 3, create("/q/n-", coord.Sequential, "/q/n-0000000005"))
	// A node this store saw made, deleted by another: a check of it fails
	// as the server has it, and the create with it is not applied.
	if err := other.Delete(ctx, "/q/c", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	_, err := s.Txn(ctx, coord.CheckOp("/q/c", 0), coord.CreateOp("/q/d", nil, coord.Persistent))
	var te *coord.TxnError
	if !errors.As(err, &te) || te.Index != 0 || !errors.Is(err, coord.ErrNoNode) {
		t.Fatalf("check of a node another client deleted: %v, want ErrNoNode on op 0", err)
	}
	if _, ok, err := other.Exists(ctx, "/q/d"); err != nil || ok {
		t.Fatalf("/q/d after the refused txn: exists %v, %v", ok, err)
	}
	// Made again by the other: a create of it is refused.
	if _, err := other.Create(ctx, "/q/c", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "/q/c", nil, coord.Persistent); !errors.Is(err, coord.ErrNodeExists) {
		t.Fatalf("create of a node another client made: %v, want ErrNodeExists", err)
	}
	// The parent deleted and made again by the other: the sequence starts
	// again at 0, as the server's counter says.
	if err := coord.DeleteAll(ctx, other, "/q"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Create(ctx, "/q", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Create(ctx, "/q/n-", nil, coord.Sequential); err != nil || p != "/q/n-0000000000" {
		t.Fatalf("first sequential create under a parent made again: %s %v", p, err)
	}
}

// TestKnownDeletesSkipTheRead: a delete of a node the store remembers (it
// made it, or read it) counts the node's children and commits, two
// requests, without first reading the node, its child counter and its
// children mark; the commit checks them as remembered (a counter or mark
// never seen as missing). Where that memory is stale (another client made
// a child, or moved the node, since), the commit is refused, nothing is
// applied, and the delete reads and reports what the server has.
func TestKnownDeletesSkipTheRead(t *testing.T) {
	ctx := context.Background()
	s, other, counted := knownStores(t, "known-deletes")
	mk := func(st coord.Store, p string, mode coord.Mode) {
		t.Helper()
		if _, err := st.Create(ctx, p, nil, mode); err != nil {
			t.Fatal(err)
		}
	}
	mk(s, "/a", coord.Persistent)
	counted("a delete of a node just made", 2, func() error { return s.Delete(ctx, "/a", 0) })
	mk(s, "/e", coord.Ephemeral)
	counted("a delete of an ephemeral node just made", 2, func() error { return s.Delete(ctx, "/e", 0) })
	mk(other, "/r", coord.Persistent)
	if _, _, err := s.Get(ctx, "/r"); err != nil {
		t.Fatal(err)
	}
	counted("a delete of a node just read", 2, func() error { return s.Delete(ctx, "/r", 0) })

	// A child made by another client since: the mark moved; refused,
	// then read: ErrNotEmpty, nothing deleted.
	mk(s, "/p", coord.Persistent)
	mk(other, "/p/c", coord.Persistent)
	if err := s.Delete(ctx, "/p", 0); !errors.Is(err, coord.ErrNotEmpty) {
		t.Fatalf("delete of a node another client made a child under: %v, want ErrNotEmpty", err)
	}
	// Now the store remembers /p, its mark and its counter as they are:
	// the children are still counted.
	if err := s.Delete(ctx, "/p", 0); !errors.Is(err, coord.ErrNotEmpty) {
		t.Fatalf("delete again of a node with a child: %v, want ErrNotEmpty", err)
	}
	// The child gone, the delete applies on the mark as last read; made
	// again, the node has no mark, and its delete does not check the old
	// one (two requests, not a refused commit and a read).
	if err := other.Delete(ctx, "/p/c", 0); err != nil {
		t.Fatal(err)
	}
	counted("a delete of a node whose child is gone, its mark as read", 2, func() error { return s.Delete(ctx, "/p", 0) })
	mk(s, "/p", coord.Persistent)
	counted("a delete of a node made again", 2, func() error { return s.Delete(ctx, "/p", 0) })
	// A sequential child (the counter moved), deleted again before the
	// delete: refused on the counter, then read and applied.
	mk(s, "/q", coord.Persistent)
	seq, err := other.Create(ctx, "/q/n-", nil, coord.Sequential)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Delete(ctx, seq, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "/q", 0); err != nil {
		t.Fatalf("delete of a node whose only child came and went: %v", err)
	}
	// Moved by another client: the version remembered (0) is stale.
	mk(s, "/v", coord.Persistent)
	if _, err := other.Set(ctx, "/v", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "/v", 0); !errors.Is(err, coord.ErrBadVersion) {
		t.Fatalf("delete at a version another client moved: %v, want ErrBadVersion", err)
	}
	for p, want := range map[string]bool{"/a": false, "/e": false, "/r": false, "/p": false, "/p/c": false, "/q": false, "/v": true} {
		if _, ok, err := other.Exists(ctx, p); err != nil || ok != want {
			t.Errorf("%s: exists %v, %v; want %v", p, ok, err, want)
		}
	}
	// A delete with a check of a remembered node is fast too.
	mk(s, "/x", coord.Persistent)
	counted("a fenced delete", 2, func() error {
		_, err := s.Txn(ctx, coord.CheckOp("/v", 1), coord.DeleteOp("/x", 0))
		return err
	})
}

// knownStores opens a store whose requests are counted and another on the
// same prefix, and returns them with counted, which runs f and fails t if
// it fails or sends other than want requests.
func knownStores(t *testing.T, name string) (s, other *consulstore.Store, counted func(what string, want int64, f func() error)) {
	t.Helper()
	addr := testenv.Addr(t, "consul")
	s, prefix, requests := countedStore(t, addr, name)
	other = storeAt(t, addr, prefix)
	counted = func(what string, want int64, f func() error) {
		t.Helper()
		before := requests.Load()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n := requests.Load() - before; n != want {
			t.Errorf("%s took %d requests, want %d", what, n, want)
		}
	}
	return s, other, counted
}

// freshPrefix is a key prefix of its own for a test: coordtest/name-TIME.
func freshPrefix(name string) string {
	return "coordtest/" + name + "-" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "")
}

// storeAt opens a store on prefix through the agent at addr, closed when t
// ends.
func storeAt(t *testing.T, addr, prefix string) *consulstore.Store {
	t.Helper()
	s, err := consulstore.New(context.Background(), consulstore.Config{Address: addr, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
