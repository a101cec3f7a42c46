package fanout_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/coordkit/coord/internal/fanout"
	"github.com/coordkit/coord/internal/testenv"
)

// TestMain fails the run if a test leaves a goroutine running.
func TestMain(m *testing.M) { testenv.Main(m, nil) }

// Every call runs once, never more than limit at a time.
func TestEachBounded(t *testing.T) {
	var running, most, calls atomic.Int64
	seen := make([]atomic.Int64, 100)
	err := fanout.Each(context.Background(), 100, 3, func(ctx context.Context, i int) error {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		seen[i].Add(1)
		calls.Add(1)
		running.Add(-1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 100 || most.Load() > 3 {
		t.Fatalf("%d calls, at most %d at once; want 100, at most 3", calls.Load(), most.Load())
	}
	for i := range seen {
		if seen[i].Load() != 1 {
			t.Fatalf("call %d ran %d times", i, seen[i].Load())
		}
	}
}

// The first error comes back, the other calls' ctx is cancelled, and no
// call starts after it.
func TestEachStopsAtFirstError(t *testing.T) {
	boom := errors.New("boom")
	var after atomic.Int64
	var failed atomic.Bool
	err := fanout.Each(context.Background(), 50, 1, func(ctx context.Context, i int) error {
		if failed.Load() {
			after.Add(1)
		}
		if i == 3 {
			failed.Store(true)
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Each returned %v, want %v", err, boom)
	}
	if after.Load() != 0 {
		t.Fatalf("%d calls started after the failure", after.Load())
	}
}

// A caller's context that is already done starts nothing and is returned.
func TestEachCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := fanout.Each(ctx, 10, 2, func(context.Context, int) error {
		t.Error("a call started with a cancelled context")
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Each returned %v, want context.Canceled", err)
	}
}
