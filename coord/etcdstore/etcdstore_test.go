package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coordkit/coord/conformance"
	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/coord/etcdstore"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/internal/faultproxy"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var endpoints []string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coord-etcd-")
	if err != nil {
		panic(err)
	}
	e, err := etcdembed.Start(dir, etcdembed.Options{})
	if err != nil {
		panic(err)
	}
	endpoints = e.Endpoints()
	// backends.Main also stops the shared cluster (backends.EtcdCluster).
	backends.Main(m, func() {
		e.Close()
		os.RemoveAll(dir)
	})
}

// clusterView is the conformance view of the shared cluster.
func clusterView(t testing.TB) conformance.Cluster {
	c := backends.EtcdCluster(t)
	return cluster{c, func(t testing.TB, ns string, ttl time.Duration) coord.Store {
		cfg := c.Config(ns)
		cfg.SessionTTL = ttl
		s, err := etcdstore.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}}
}

func backend() conformance.Backend {
	return conformance.Backend{
		Open: func(t testing.TB, ns string) coord.Store {
			s, err := etcdstore.New(context.Background(), etcdstore.Config{Endpoints: endpoints, Prefix: ns, SessionTTL: 2e9})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Expire: backends.ExpireEtcd,
		// The embedded servers run in this process; their members reconnect
		// to one another when they like (after Cluster/MemberLoss, say).
		ServerFuncs: backends.EtcdServerFuncs,
		OpenFaulty: func(t testing.TB, ns string, ttl time.Duration) (coord.Store, conformance.Faults) {
			p, err := faultproxy.New(strings.TrimPrefix(endpoints[0], "http://"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			s, err := etcdstore.New(context.Background(), etcdstore.Config{
				Endpoints: []string{"http://" + p.Addr()}, Prefix: ns, SessionTTL: ttl,
			})
			if err != nil {
				t.Fatal(err)
			}
			return s, faults{faultproxy.NewClientFaults(p,
				func(then func()) { etcdstore.LoseNextReply(s, then) },
				func(then func()) { etcdstore.LoseNextRefusal(s, then) }), s}
		},
		KeepAlive: func(ctx context.Context, other coord.Store, id string) error {
			lease, err := strconv.ParseInt(id, 16, 64)
			if err != nil {
				return err
			}
			_, err = other.(*etcdstore.Store).Client().KeepAliveOnce(ctx, clientv3.LeaseID(lease))
			return err
		},
	}
}

// faults are the proxy's, except that a lost reply is made inside the
// client: a create reads before it commits, and losing every answer from
// the start would lose the read's, not the commit's.
type faults struct {
	*faultproxy.ClientFaults
	s *etcdstore.Store
}

func (f faults) DropNextWrite() { etcdstore.DropNextWrite(f.s) }

func TestConformance(t *testing.T) {
	b := backend()
	b.Cluster = clusterView
	b.Restartable = func(t testing.TB) conformance.Server {
		r := &restartable{dir: t.TempDir()}
		r.Start(t)
		t.Cleanup(func() { r.Stop(t) })
		return r
	}
	conformance.Run(t, b)
}

// TestConformanceCluster runs the suite's basic cases (those that need
// only stores: the Fault, Restart and Cluster cases run in TestConformance)
// against the 3-member cluster, stores knowing every member. Sessions are
// 10 s: a 2 s lease on a loaded machine is sometimes given up early.
func TestConformanceCluster(t *testing.T) {
	c := clusterView(t)
	b := backend()
	b.Open = func(t testing.TB, ns string) coord.Store { return c.Open(t, ns, 10*time.Second) }
	conformance.RunBasic(t, b)
}

// cluster is the conformance view of an embedded cluster.
type cluster struct {
	c    *etcdembed.Cluster
	open func(t testing.TB, ns string, ttl time.Duration) coord.Store
}

func (c cluster) Open(t testing.TB, ns string, ttl time.Duration) coord.Store {
	return c.open(t, ns, ttl)
}
func (c cluster) Members() int             { return c.c.Size() }
func (c cluster) Stop(_ testing.TB, i int) { c.c.Stop(i) }

func (c cluster) Start(t testing.TB, i int) {
	if err := c.c.Start(i); err != nil {
		t.Fatal(err)
	}
}

func (c cluster) Leader(t testing.TB) int {
	for deadline := time.Now().Add(conformance.Timeout); ; time.Sleep(50 * time.Millisecond) {
		if l := c.c.Leader(); l >= 0 {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader after %v", conformance.Timeout)
		}
	}
}

// restartable is an embedded etcd server of the test's own.
type restartable struct {
	dir                  string
	e                    *etcdembed.Server
	clientPort, peerPort int // 0 until the first start
}

func (r *restartable) Open(t testing.TB, ns string, ttl time.Duration) coord.Store {
	cfg := r.e.Config(ns)
	cfg.SessionTTL = ttl
	s, err := etcdstore.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (r *restartable) Stop(testing.TB) {
	if r.e != nil {
		r.e.Close()
		r.e = nil
	}
}

// Start starts the server on the ports it had (free ones the first time).
func (r *restartable) Start(t testing.TB) {
	e, err := etcdembed.Start(r.dir, etcdembed.Options{ClientPort: r.clientPort, PeerPort: r.peerPort})
	if err != nil {
		t.Fatal(err)
	}
	r.e = e
	r.clientPort, r.peerPort = e.Ports()
}

// A server that went away gives ErrUnavailable within the request timeout.
func TestServerGone(t *testing.T) {
	e, err := etcdembed.Start(t.TempDir(), etcdembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.Config("gone")
	cfg.RequestTimeout = time.Second
	s, err := etcdstore.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(context.Background(), "/n", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	e.Close()
	_, _, err = s.Get(context.Background(), "/n")
	if !errors.Is(err, coord.ErrUnavailable) {
		t.Fatalf("get from a stopped server: %v, want ErrUnavailable", err)
	}
	_, err = etcdstore.New(context.Background(), etcdstore.Config{Endpoints: e.Endpoints(), DialTimeout: time.Second})
	if !errors.Is(err, coord.ErrUnavailable) {
		t.Fatalf("connecting to a stopped server: %v, want ErrUnavailable", err)
	}
}

// Stores on a prefix and on prefixes that extend it see nothing of each
// other, and a prefix that could reach into another's layout is refused.
func TestPrefixesIsolated(t *testing.T) {
	ctx := context.Background()
	open := func(prefix string) coord.Store {
		s, err := etcdstore.New(ctx, etcdstore.Config{Endpoints: endpoints, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	base := "iso-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	for _, bad := range []string{base + "/001", base + "/seq", base + "//x", "a/999/b"} {
		_, err := etcdstore.New(ctx, etcdstore.Config{Endpoints: endpoints, Prefix: bad})
		if !errors.Is(err, coord.ErrInvalidArgument) {
			t.Errorf("prefix %q: %v, want ErrInvalidArgument", bad, err)
		}
	}
	conformance.CheckIsolation(t, open, []string{base, base + "/a", base + "/0011", base + "/seqx", base + "x"})
}

// A sequence counter that is not a number (written by something else) is
// refused with a clear error; nothing is created.
func TestCorruptCounterRefused(t *testing.T) {
	ctx := context.Background()
	prefix := "corrupt-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	s, err := etcdstore.New(ctx, etcdstore.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(ctx, "/q", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Put(ctx, prefix+"/seq/q", "12x"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Create(ctx, "/q/n-", nil, coord.Sequential)
	if !errors.Is(err, coord.ErrUnavailable) || !strings.Contains(err.Error(), "corrupt sequence counter") {
		t.Fatalf("create under a corrupt counter: %v, want ErrUnavailable naming the corrupt counter", err)
	}
	if kids, err := s.Children(ctx, "/q"); err != nil || len(kids) != 0 {
		t.Fatalf("children after the refusal: %v %v", kids, err)
	}
}

// TestOversizedTxnNotSent: a transaction within Limits by its count, but
// whose long paths make the request larger than the cluster takes, is
// refused with ErrTooLarge before it is sent: the bytes that reach the
// server (through a loopback proxy) are a small part of it.
func TestOversizedTxnNotSent(t *testing.T) {
	p, err := faultproxy.New(strings.TrimPrefix(endpoints[0], "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := etcdstore.New(ctx, etcdstore.Config{Endpoints: []string{"http://" + p.Addr()}, Prefix: "big", MaxTxnOps: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lim := s.Limits()
	dir := "/" + strings.Repeat("a", 130) + "/" + strings.Repeat("b", 130) + "/" + strings.Repeat("c", 130)
	data := []byte(strings.Repeat("d", 600))
	var ops []coord.Op
	for i := 0; i < 1024; i++ {
		ops = append(ops, coord.SetOp(fmt.Sprintf("%s/%04d", dir, i), data, coord.AnyVersion))
	}
	if n := lim.TxnBytes(ops); n > lim.MaxTxnBytes || len(ops) > lim.TxnOps(ops) {
		t.Fatalf("the transaction is over Limits by count (%d bytes, %d ops; %+v): the case needs one within", n, len(ops), lim)
	}
	before := p.Sent()
	_, err = s.Txn(ctx, ops...)
	if !errors.Is(err, coord.ErrTooLarge) || errors.Is(err, coord.ErrOutcomeUnknown) {
		t.Fatalf("a transaction of about 2 MB: %v, want ErrTooLarge", err)
	}
	if sent := p.Sent() - before; sent > 64<<10 {
		t.Fatalf("the refused transaction sent %d bytes to the server", sent)
	}
}
