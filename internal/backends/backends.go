// Package backends opens test stores on every backend available: an
// embedded etcd (always), ZooKeeper and Consul (from COORD_TEST_ZK and
// COORD_TEST_CONSUL; see package testenv for skipping and requiring them).
package backends

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/consulstore"
	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/coord/etcdstore"
	"github.com/coordkit/coord/coord/zkstore"
	"github.com/coordkit/coord/internal/testenv"
	"github.com/coordkit/coord/models"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Backend opens stores of one kind.
type Backend struct {
	Name string
	// Open returns a store on namespace ns, closed when t ends. Stores with
	// the same ns share their nodes.
	Open func(t testing.TB, ns string) coord.Store
	// URL is the coordctl --store URL for namespace ns.
	URL func(ns string) string
	// Expire ends the current session of a store Open returned the way the
	// server ends the session of an owner that went silent (not by Close);
	// the store then makes a new session when asked.
	Expire func(t testing.TB, s coord.Store)
	// Members, for a cluster (nil for a single server), stops and starts
	// its members.
	Members func(t testing.TB) Members
}

// Members are the servers of a cluster, which a test stops and starts.
type Members interface {
	// Leader returns the index of the member that leads, waiting for one.
	Leader(t testing.TB) int
	// Stop stops member i; Start starts it again and returns once it has
	// rejoined.
	Stop(t testing.TB, i int)
	Start(t testing.TB, i int)
}

// etcdMembers are the embedded cluster's members.
type etcdMembers struct{ c *etcdembed.Cluster }

func (m etcdMembers) Leader(t testing.TB) int {
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if l := m.c.Leader(); l >= 0 {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader in the etcd cluster after 30s")
		}
	}
}
func (m etcdMembers) Stop(_ testing.TB, i int) { m.c.Stop(i) }
func (m etcdMembers) Start(t testing.TB, i int) {
	if err := m.c.Start(i); err != nil {
		t.Fatal(err)
	}
}

// ensembleMembers are a shared ensemble's members.
type ensembleMembers struct{ e *testenv.Ensemble }

func (m ensembleMembers) Leader(t testing.TB) int   { return m.e.Leader(t, 30*time.Second) }
func (m ensembleMembers) Stop(t testing.TB, i int)  { m.e.Stop(t, i) }
func (m ensembleMembers) Start(t testing.TB, i int) { m.e.Start(t, i) }

// zkGates holds the dial gate of each ZooKeeper store Open made.
var zkGates sync.Map // *zkstore.Store -> *testenv.Gate

const zkSessionTimeout = 4 * time.Second

var (
	etcdOnce sync.Once
	etcd     *etcdembed.Server
	etcdDir  string
	etcdErr  error
)

// Main runs the tests of a package, then each of after, stops the embedded
// etcd (and cluster), the shared ensembles, and checks that no goroutine was left running (testenv.Main).
func Main(m *testing.M, after ...func()) {
	testenv.Main(m, func() {
		for _, f := range after {
			f()
		}
		if etcd != nil {
			etcd.Close()
			os.RemoveAll(etcdDir)
		}
		if cluster != nil {
			cluster.Close()
			os.RemoveAll(clusterDir)
		}
		testenv.StopShared()
	})
}

var (
	clusterOnce sync.Once
	cluster     *etcdembed.Cluster
	clusterDir  string
	clusterErr  error
)

// EtcdCluster returns a 3-member embedded etcd cluster, started on first use.
func EtcdCluster(t testing.TB) *etcdembed.Cluster {
	clusterOnce.Do(func() {
		clusterDir, clusterErr = os.MkdirTemp("", "coord-etcd-cluster-")
		if clusterErr == nil {
			cluster, clusterErr = etcdembed.StartCluster(clusterDir, 3, etcdembed.Options{})
		}
	})
	if clusterErr != nil {
		t.Fatalf("embedded etcd cluster: %v", clusterErr)
	}
	return cluster
}

// Etcd returns the embedded etcd, started on first use.
func Etcd(t testing.TB) *etcdembed.Server {
	etcdOnce.Do(func() {
		etcdDir, etcdErr = os.MkdirTemp("", "coord-etcd-")
		if etcdErr == nil {
			etcd, etcdErr = etcdembed.Start(etcdDir, etcdembed.Options{})
		}
	})
	if etcdErr != nil {
		t.Fatalf("embedded etcd: %v", etcdErr)
	}
	return etcd
}

func closeAtEnd(t testing.TB, s coord.Store) coord.Store {
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// All returns the backends: the single servers of Servers, then a cluster
// of three of each (Clusters). Those whose server is missing skip (or fail,
// when required) the subtest that opens them.
func All() []Backend { return append(Servers(), Clusters()...) }

// Clusters returns a 3-member cluster of each backend: an embedded etcd
// cluster, a ZooKeeper ensemble and a Consul cluster (three servers and a
// client agent), each started on first use and shared by the process.
func Clusters() []Backend {
	return []Backend{
		{
			// Three embedded members; stores know them all.
			Name: "etcd-cluster",
			Open: func(t testing.TB, ns string) coord.Store { return openEtcd(t, EtcdCluster(t).Config(ns)) },
			URL: func(ns string) string {
				if cluster == nil {
					return "embedded"
				}
				var hosts []string
				for _, e := range cluster.Endpoints() {
					hosts = append(hosts, strings.TrimPrefix(e, "http://"))
				}
				return "etcd://" + strings.Join(hosts, ",") + "?prefix=" + ns
			},
			Expire:  ExpireEtcd,
			Members: func(t testing.TB) Members { return etcdMembers{EtcdCluster(t)} },
		},
		{
			// Three servers; stores know them all.
			Name: "zk-ensemble",
			Open: func(t testing.TB, ns string) coord.Store {
				return openZK(t, ZKEnsemble(t).Addrs, ns)
			},
			Expire: expireZK,
			URL: func(ns string) string {
				return "zk://" + strings.Join(sharedAddrs("zk"), ",") + "/coordtest/" + ns
			},
			Members: func(t testing.TB) Members { return ensembleMembers{ZKEnsemble(t)} },
		},
		{
			// Three servers and a client agent that stores talk to.
			Name: "consul-cluster",
			Open: func(t testing.TB, ns string) coord.Store {
				return openConsul(t, ConsulCluster(t).Addrs[0], ns)
			},
			Expire: ExpireConsul,
			URL: func(ns string) string {
				return "consul://" + strings.Join(sharedAddrs("consul"), ",") + "?prefix=coordtest/" + ns
			},
			Members: func(t testing.TB) Members { return ensembleMembers{ConsulCluster(t)} },
		},
	}
}

// Servers returns the backends on a single server: the embedded etcd,
// ZooKeeper and Consul, in that order.
func Servers() []Backend {
	return []Backend{
		{
			Name: "etcd",
			Open: func(t testing.TB, ns string) coord.Store { return openEtcd(t, Etcd(t).Config(ns)) },
			URL: func(ns string) string {
				if etcd == nil {
					return "embedded" // not started: no shared server to name
				}
				return "etcd://" + strings.TrimPrefix(etcd.Endpoints()[0], "http://") + "?prefix=" + ns
			},
			Expire: ExpireEtcd,
		},
		{
			Name: "zk",
			Open: func(t testing.TB, ns string) coord.Store {
				return openZK(t, []string{testenv.Addr(t, "zk")}, ns)
			},
			Expire: expireZK,
			URL:    func(ns string) string { return "zk://" + os.Getenv("COORD_TEST_ZK") + "/coordtest/" + ns },
		},
		{
			Name: "consul",
			Open: func(t testing.TB, ns string) coord.Store {
				return openConsul(t, testenv.Addr(t, "consul"), ns)
			},
			Expire: ExpireConsul,
			URL: func(ns string) string {
				return "consul://" + os.Getenv("COORD_TEST_CONSUL") + "?prefix=coordtest/" + ns
			},
		},
	}
}

// openZK opens a ZooKeeper store on servers, through a dial gate that
// Expire cuts.
func openZK(t testing.TB, servers []string, ns string) coord.Store {
	g := &testenv.Gate{}
	s, err := zkstore.New(context.Background(), zkstore.Config{
		Servers: servers, Chroot: "/coordtest/" + ns, SessionTimeout: zkSessionTimeout,
		ACLFor: zkstore.LeafACL(models.IsLeafNode), Dialer: g.Dial})
	if err != nil {
		t.Fatal(err)
	}
	zkGates.Store(s, g)
	t.Cleanup(func() { zkGates.Delete(s) })
	return closeAtEnd(t, s)
}

// expireZK keeps a store openZK made silent for longer than its session
// timeout: the server expires the session; the store finds out on
// reconnecting.
func expireZK(t testing.TB, s coord.Store) {
	g, ok := zkGates.Load(s)
	if !ok {
		t.Fatal("Expire: not a store of this backend")
	}
	g.(*testenv.Gate).Cut(zkSessionTimeout + 2*time.Second)
}

// openEtcd opens an etcd store with cfg, closed when t ends.
func openEtcd(t testing.TB, cfg etcdstore.Config) coord.Store {
	s, err := etcdstore.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return closeAtEnd(t, s)
}

func openConsul(t testing.TB, addr, ns string) coord.Store {
	s, err := consulstore.New(context.Background(), consulstore.Config{Address: addr, Prefix: "coordtest/" + ns})
	if err != nil {
		t.Fatal(err)
	}
	return closeAtEnd(t, s)
}

var sharedEnsembles sync.Map // "zk" or "consul" -> *testenv.Ensemble

// ZKEnsemble returns the 3-server ZooKeeper ensemble the tests of the
// process share, started on first use (stopped by Main).
func ZKEnsemble(t testing.TB) *testenv.Ensemble {
	e := testenv.SharedEnsemble(t, "zk")
	sharedEnsembles.Store("zk", e)
	return e
}

// ConsulCluster returns the Consul cluster (3 servers and a client agent)
// the tests of the process share, started on first use (stopped by Main).
func ConsulCluster(t testing.TB) *testenv.Ensemble {
	e := testenv.SharedEnsemble(t, "consul")
	sharedEnsembles.Store("consul", e)
	return e
}

// sharedAddrs are the client addresses of the shared ensemble of backend
// (none before it started).
func sharedAddrs(backend string) []string {
	if e, ok := sharedEnsembles.Load(backend); ok {
		return e.(*testenv.Ensemble).Addrs
	}
	return nil
}

var clean = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)

// Namespace returns a fresh namespace named after t.
func Namespace(t testing.TB) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := strings.ToLower(clean.ReplaceAllString(t.Name(), "-"))
	if len(name) > 50 {
		name = name[len(name)-50:]
	}
	return fmt.Sprintf("t-%s-%s", hex.EncodeToString(r[:]), strings.Trim(name, "-"))
}

// EtcdServerFuncs are the prefixes of the functions that only an embedded
// etcd server runs in a test process (conformance.Backend.ServerFuncs): its
// own packages and raft's, its connection multiplexer, and the server sides
// of gRPC and net/http. The etcd client runs none of them.
var EtcdServerFuncs = []string{
	"go.etcd.io/etcd/server/",
	"go.etcd.io/etcd/pkg/",
	"go.etcd.io/raft/",
	"github.com/soheilhy/cmux.",
	"github.com/xiang90/probing.",
	"google.golang.org/grpc.(*Server).",
	"google.golang.org/grpc/internal/transport.(*http2Server).",
	"net/http.(*Server).",
	"net/http.(*conn).",
	"net/http.(*connReader).",
}

// ExpireEtcd ends the session of an etcd store as the server does when the
// lease's TTL runs out: the lease is revoked, its keys deleted.
func ExpireEtcd(t testing.TB, st coord.Store) {
	s := st.(*etcdstore.Store)
	sess, err := s.Session(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	id, err := strconv.ParseInt(sess.ID(), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Revoke(context.Background(), clientv3.LeaseID(id)); err != nil {
		t.Fatal(err)
	}
}

// ExpireConsul ends the session of a Consul store as the server does when
// its TTL runs out: the session is invalidated, the keys it holds deleted.
func ExpireConsul(t testing.TB, st coord.Store) {
	s := st.(*consulstore.Store)
	sess, err := s.Session(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Session().Destroy(sess.ID(), nil); err != nil {
		t.Fatal(err)
	}
}

// RunExpire is Run with a way to expire the session of a store open made.
func RunExpire(t *testing.T, fn func(t *testing.T, open func() coord.Store, expire func(coord.Store))) {
	for _, b := range All() {
		t.Run(b.Name, func(t *testing.T) {
			ns := Namespace(t)
			fn(t, func() coord.Store { return b.Open(t, ns) }, func(s coord.Store) { b.Expire(t, s) })
		})
	}
}

// Run runs fn as a subtest on every backend, each with a fresh namespace;
// open opens another store on the same namespace.
func Run(t *testing.T, fn func(t *testing.T, open func() coord.Store)) {
	for _, b := range All() {
		t.Run(b.Name, func(t *testing.T) {
			ns := Namespace(t)
			fn(t, func() coord.Store { return b.Open(t, ns) })
		})
	}
}
