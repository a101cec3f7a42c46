package etcdstore_test

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/coordkit/coord/conformance"
	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/etcdstore"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var endpoints []string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coord-etcd-")
	if err != nil {
		panic(err)
	}
	e, err := etcdstore.StartEmbedded(dir, etcdstore.EmbeddedOptions{})
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
	}
}

func TestConformance(t *testing.T) { conformance.Run(t, backend()) }
