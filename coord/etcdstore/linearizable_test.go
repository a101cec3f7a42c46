package etcdstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/coordkit/coord/conformance"
	"github.com/coordkit/coord/coord"
)

// staleReads is a deliberately broken store: Get answers from a per-client
// cache for 50ms, so a client can miss a write that another client's call
// already returned from.
type staleReads struct {
	coord.Store
	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	data []byte
	stat coord.Stat
	at   time.Time
}

func (s *staleReads) Get(ctx context.Context, path string) ([]byte, coord.Stat, error) {
	s.mu.Lock()
	c, ok := s.cache[path]
	s.mu.Unlock()
	if ok && time.Since(c.at) < 50*time.Millisecond {
		return c.data, c.stat, nil
	}
	data, stat, err := s.Store.Get(ctx, path)
	if err == nil {
		s.mu.Lock()
		s.cache[path] = cached{data, stat, time.Now()}
		s.mu.Unlock()
	}
	return data, stat, err
}

// The linearizability check is known to bite: against a store that serves
// stale reads it finds the violation.
func TestLinearizabilityCheckFindsStaleReads(t *testing.T) {
	b := backend()
	ns := "stale-" + t.Name()
	var stores []coord.Store
	for i := 0; i < 3; i++ {
		st := b.Open(t, ns)
		t.Cleanup(func() { st.Close() })
		stores = append(stores, &staleReads{Store: st, cache: map[string]cached{}})
	}
	res, n := conformance.CheckLinearizable(t, conformance.LinearizabilityRun{Stores: stores, Faults: make([]conformance.Faults, 3), Keys: 1})
	if res != porcupine.Illegal {
		t.Fatalf("a store with stale reads passed the check (%d operations): %s", n, res)
	}
}
