package etcdstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/etcdstore"
)

// rpcCounter counts the KV requests a client sends, by method.
type rpcCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *rpcCounter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if i := strings.LastIndex(method, "/"); strings.HasSuffix(method[:max(i, 0)], ".KV") {
		c.mu.Lock()
		c.n[method[i+1:]]++
		c.mu.Unlock()
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// take returns the counts since the last take, as "Range=1 Txn=2".
func (c *rpcCounter) take() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for _, m := range []string{"Range", "Txn", "Put", "DeleteRange"} {
		if c.n[m] > 0 {
			parts = append(parts, m+"="+strconv.Itoa(c.n[m]))
		}
	}
	c.n = map[string]int{}
	return strings.Join(parts, " ")
}

// countedStore returns a store whose KV requests are counted.
func countedStore(t *testing.T, ctx context.Context, prefix string) (*etcdstore.Store, *rpcCounter) {
	t.Helper()
	c := &rpcCounter{n: map[string]int{}}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(c.intercept)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	s, err := etcdstore.New(ctx, etcdstore.Config{Client: cli, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, c
}

// TestTxnFromKnownState: a small transaction without deletes is planned on
// the state the store last read or wrote and committed in one request (a
// sequential create was a read, a read of the name it would take, and the
// commit). Where that state is out of date, because another client wrote
// since, the commit is refused, reads the server's state in its Else
// branch, and is planned on it: the outcome is the server's, never the
// remembered one.
func TestTxnFromKnownState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := "known-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	s, rpcs := countedStore(t, ctx, prefix)
	other, err := etcdstore.New(ctx, etcdstore.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	create := func(path string, mode coord.Mode) string {
		t.Helper()
		p, err := s.Create(ctx, path, nil, mode)
		must("create "+path, err)
		return p
	}
	expect := func(what, want string) {
		t.Helper()
		if got := rpcs.take(); got != want {
			t.Errorf("%s: requests %q, want %q", what, got, want)
		}
	}
	create("/q", coord.Persistent)
	create("/q/n-", coord.Sequential) // reads /q and its counter
	rpcs.take()
	for i := 1; i <= 3; i++ {
		if p := create("/q/n-", coord.EphemeralSequential); p != "/q/n-000000000"+strconv.Itoa(i) {
			t.Fatalf("sequential create %d: %s", i, p)
		}
		expect("a sequential create under a parent this store created under before", "Txn=1")
	}
	// A fenced create, as the models write: a check of a node this store
	// made and a create under a parent it knows.
	res, err := s.Txn(ctx, coord.CheckOp("/q/n-0000000003", 0), coord.CreateOp("/q/c", []byte("x"), coord.Persistent))
	must("fenced create", err)
	expect("a check and a create on known state", "Txn=1")
	if !res[0].Stat.Ephemeral || res[0].Stat.Owner == "" || res[1].Path != "/q/c" {
		t.Fatalf("results planned on known state: %+v", res)
	}
	// Another client creates under /q: the counter moved. The next create
	// is refused once, planned on what its Else branch read, and takes
	// the next free number.
	p, err := other.Create(ctx, "/q/n-", nil, coord.Sequential)
	must("other's create", err)
	if p != "/q/n-0000000004" {
		t.Fatalf("other's sequential create: %s", p)
	}
	rpcs.take()
	if mine := create("/q/n-", coord.Sequential); mine != "/q/n-0000000005" {
		t.Fatalf("create after another client's %s: %s, want the next number", p, mine)
	}
	expect("a sequential create after another client's", "Txn=2")
	// Another client deletes a node this store saw made: a check of it
	// fails with ErrNoNode, as the server has it.
	must("other's delete", other.Delete(ctx, "/q/c", coord.AnyVersion))
	_, err = s.Txn(ctx, coord.CheckOp("/q/c", 0), coord.CreateOp("/q/d", nil, coord.Persistent))
	var te *coord.TxnError
	if !errors.As(err, &te) || te.Index != 0 || !errors.Is(err, coord.ErrNoNode) {
		t.Fatalf("check of a node deleted by another client: %v, want ErrNoNode on op 0", err)
	}
	// ...and made again: a create of it is refused, as the server has it,
	// although this store last saw it gone.
	_, err = other.Create(ctx, "/q/c", nil, coord.Persistent)
	must("other's create of /q/c", err)
	_, err = s.Txn(ctx, coord.CheckOp("/q", 0), coord.CreateOp("/q/c", nil, coord.Persistent))
	if !errors.As(err, &te) || te.Index != 1 || !errors.Is(err, coord.ErrNodeExists) {
		t.Fatalf("create of a node another client made: %v, want ErrNodeExists on op 1", err)
	}
	// A node this store remembers as there, deleted by another client:
	// a create of it succeeds (the remembered state is only a guess).
	must("delete /q/c", other.Delete(ctx, "/q/c", coord.AnyVersion))
	_, err = s.Txn(ctx, coord.CheckOp("/q", 0), coord.CreateOp("/q/c", []byte("again"), coord.Persistent))
	must("create of a node another client deleted", err)
	if data, _, err := other.Get(ctx, "/q/c"); err != nil || string(data) != "again" {
		t.Fatalf("after the create: %q %v", data, err)
	}
	// The parent deleted and made again by another client: the sequence
	// starts again at 0, as the server's counter says.
	must("delete /q", coord.DeleteAll(ctx, other, "/q"))
	_, err = other.Create(ctx, "/q", nil, coord.Persistent)
	must("other's create of /q", err)
	if p := create("/q/n-", coord.Sequential); p != "/q/n-0000000000" {
		t.Fatalf("first sequential create under a parent made again: %s", p)
	}
}

// TestTxnWriteBeforeCommit: another client writes between a transaction's
// plan and its commit. The commit is refused and planned again on the
// server's state: a delete of a node that was given a child fails with
// ErrNotEmpty (the child stays), and a sequential create whose name was
// taken meanwhile takes the next one.
func TestTxnWriteBeforeCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := "racing-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	s, err := etcdstore.New(ctx, etcdstore.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := etcdstore.New(ctx, etcdstore.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, p := range []string{"/a", "/q"} {
		if _, err := s.Create(ctx, p, nil, coord.Persistent); err != nil {
			t.Fatal(err)
		}
	}
	var hookErr error
	etcdstore.BeforeNextCommit(s, func() { _, hookErr = other.Create(ctx, "/a/child", nil, coord.Persistent) })
	_, err = s.Txn(ctx, coord.CreateOp("/q/n-", nil, coord.Sequential), coord.DeleteOp("/a", coord.AnyVersion))
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	var te *coord.TxnError
	if !errors.As(err, &te) || te.Index != 1 || !errors.Is(err, coord.ErrNotEmpty) {
		t.Fatalf("delete of a node given a child before the commit: %v, want ErrNotEmpty on op 1", err)
	}
	if kids, err := other.Children(ctx, "/a"); err != nil || len(kids) != 1 {
		t.Fatalf("children of /a after the refusal: %v %v", kids, err)
	}
	if kids, err := other.Children(ctx, "/q"); err != nil || len(kids) != 0 {
		t.Fatalf("children of /q after the refusal: %v %v", kids, err)
	}
	// The name a sequential create would take, made by name meanwhile.
	p, err := s.Create(ctx, "/q/n-", nil, coord.Sequential)
	if err != nil || p != "/q/n-0000000000" {
		t.Fatalf("first sequential create: %s %v", p, err)
	}
	etcdstore.BeforeNextCommit(s, func() { _, hookErr = other.Create(ctx, "/q/n-0000000001", []byte("theirs"), coord.Persistent) })
	res, err := s.Txn(ctx, coord.CheckOp("/q", coord.AnyVersion), coord.CreateOp("/q/n-", []byte("mine"), coord.Sequential))
	if hookErr != nil || err != nil {
		t.Fatal(hookErr, err)
	}
	if res[1].Path != "/q/n-0000000002" {
		t.Fatalf("sequential create whose name was taken before the commit: %s, want /q/n-0000000002", res[1].Path)
	}
	if data, _, err := other.Get(ctx, "/q/n-0000000001"); err != nil || string(data) != "theirs" {
		t.Fatalf("the node made by name: %q %v", data, err)
	}
}

// TestChildrenRequests: a node with children exists, so listing them is
// one range; only an empty listing reads the node too (at the listing's
// revision), to tell a node without children from no node. The watch of
// children reads the same way.
func TestChildrenRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := "kids-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	s, rpcs := countedStore(t, ctx, prefix)
	for _, p := range []string{"/a", "/a/x", "/a/y", "/e"} {
		if _, err := s.Create(ctx, p, nil, coord.Persistent); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		path, want, requests string
		err                  error
	}{
		{"/a", "x,y", "Range=1", nil},
		{"/", "a,e", "Range=1", nil},
		{"/e", "", "Range=2", nil},
		{"/missing", "", "Range=2", coord.ErrNoNode},
	} {
		rpcs.take()
		kids, err := s.Children(ctx, c.path)
		if !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
			t.Fatalf("Children(%s): %v, want %v", c.path, err, c.err)
		}
		if got := strings.Join(kids, ","); got != c.want {
			t.Errorf("Children(%s) = %q, want %q", c.path, got, c.want)
		}
		if got := rpcs.take(); got != c.requests {
			t.Errorf("Children(%s): requests %q, want %q", c.path, got, c.requests)
		}
	}
}

// TestChildrenOneSnapshot: an empty listing's node read is made at the
// listing's revision, so a node created (with a child) between the two
// reads is not reported as a node without children: Children answers as
// of the listing, when there was no node.
func TestChildrenOneSnapshot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := "kidsnap-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	other, err := etcdstore.New(ctx, etcdstore.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var ranges atomic.Int32
	var between error
	intercept := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasSuffix(method, "/Range") && ranges.Add(1) == 2 {
			// Between the listing and the node's read.
			_, between = other.Create(ctx, "/n", nil, coord.Persistent)
			if between == nil {
				_, between = other.Create(ctx, "/n/c", nil, coord.Persistent)
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(intercept)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s, err := etcdstore.New(ctx, etcdstore.Config{Client: cli, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ranges.Store(0)
	kids, err := s.Children(ctx, "/n")
	if between != nil {
		t.Fatal(between)
	}
	if n := ranges.Load(); n != 2 {
		t.Fatalf("%d ranges, want 2", n)
	}
	if !errors.Is(err, coord.ErrNoNode) {
		t.Fatalf("Children(/n) = %q, %v; want ErrNoNode (no node when its children were listed)", kids, err)
	}
	if kids, err := s.Children(ctx, "/n"); err != nil || strings.Join(kids, ",") != "c" {
		t.Fatalf("Children(/n) after = %q, %v", kids, err)
	}
}
