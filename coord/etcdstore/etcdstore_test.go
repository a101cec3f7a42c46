package etcdstore_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coordkit/coord/conformance"
	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/coord/etcdstore"
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
	code := m.Run()
	e.Close()
	os.RemoveAll(dir)
	os.Exit(code)
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
		Expire: func(t testing.TB, st coord.Store) {
			s := st.(*etcdstore.Store)
			sess, err := s.Session(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			id, err := strconv.ParseInt(sess.ID(), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			// What the server does when the lease's TTL runs out.
			if _, err := s.Client().Revoke(context.Background(), clientv3.LeaseID(id)); err != nil {
				t.Fatal(err)
			}
		},
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
			return s, p
		},
	}
}

func TestConformance(t *testing.T) { conformance.Run(t, backend()) }

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
