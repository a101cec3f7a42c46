package zkstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/coordkit/coord/conformance"
	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/zkstore"
	"github.com/coordkit/coord/internal/testenv"
)

// TestPartitionedLeader runs conformance.PartitionedLeader on a 3-member
// ensemble of the test's own whose members talk through a proxy per pair
// (testenv.StartLinkedEnsemble). The cut-off leader gives up leading once it
// misses its followers for syncLimit ticks and drops its clients; the new
// leader starts every session's timeout afresh.
func TestPartitionedLeader(t *testing.T) {
	e, links := testenv.StartLinkedEnsemble(t, 3)
	open := func(t testing.TB, servers []string, ns string, ttl time.Duration) coord.Store {
		s, err := zkstore.New(context.Background(), zkstore.Config{Servers: servers, Chroot: "/" + ns, SessionTimeout: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	conformance.PartitionedLeader(t, conformance.Partition{
		Leader: func(t testing.TB) int { return e.Leader(t, 30*time.Second) },
		OpenOn: func(t testing.TB, i int, ns string, ttl time.Duration) coord.Store {
			return open(t, e.Addrs[i:i+1], ns, ttl)
		},
		OpenBut: func(t testing.TB, i int, ns string) coord.Store {
			var others []string
			for j, a := range e.Addrs {
				if j != i {
					others = append(others, a)
				}
			}
			// The session outlives the majority's election of a new
			// leader, during which its members drop their clients.
			return open(t, others, ns, 20*time.Second)
		},
		Isolate: links.Isolate,
		Heal:    links.Heal,
		TTL:     3 * time.Second,
	})
}
