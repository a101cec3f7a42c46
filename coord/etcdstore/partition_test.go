package etcdstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/coordkit/coord/conformance"
	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/coord/etcdstore"
)

// TestPartitionedLeader runs conformance.PartitionedLeader on a 3-member
// cluster of the test's own, whose members are cut apart through etcd's
// own transport (a cut-off member's clients still reach it).
func TestPartitionedLeader(t *testing.T) {
	c, err := etcdembed.StartCluster(t.TempDir(), 3, etcdembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	open := func(t testing.TB, cfg etcdstore.Config) coord.Store {
		s, err := etcdstore.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	conformance.PartitionedLeader(t, conformance.Partition{
		Leader: func(t testing.TB) int {
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if lead := c.Leader(); lead >= 0 {
					return lead
				}
			}
			t.Fatal("no leader")
			return -1
		},
		OpenOn: func(t testing.TB, i int, ns string, ttl time.Duration) coord.Store {
			cfg := c.Member(i).Config(ns)
			cfg.SessionTTL = ttl
			return open(t, cfg)
		},
		OpenBut: func(t testing.TB, i int, ns string) coord.Store {
			cfg := c.Config(ns)
			cfg.Endpoints, cfg.SessionTTL = nil, 3*time.Second
			for j := 0; j < c.Size(); j++ {
				if j != i {
					cfg.Endpoints = append(cfg.Endpoints, c.Member(j).Endpoints()...)
				}
			}
			return open(t, cfg)
		},
		Isolate: c.Isolate,
		Heal:    func(i int) error { c.Heal(i); return nil },
		TTL:     3 * time.Second,
	})
}
