package conformance

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
)

func testMutex(t *testing.T, s *suite) {
	const contenders, rounds = 4, 5
	ctx := ctxT(t)
	var holders, maxHolders, total atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, contenders)
	for c := 0; c < contenders; c++ {
		st := s.open(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				m := coord.NewMutex(st, "/LOCK", "lock-", []byte(`{"desc":"test"}`))
				if err := m.Lock(ctx); err != nil {
					errs <- err
					return
				}
				if n := holders.Add(1); n > maxHolders.Load() {
					maxHolders.Store(n)
				}
				total.Add(1)
				time.Sleep(time.Millisecond)
				holders.Add(-1)
				if err := m.Unlock(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if maxHolders.Load() != 1 || total.Load() != contenders*rounds {
		t.Fatalf("%d holders at once, %d acquisitions; want 1 and %d", maxHolders.Load(), total.Load(), contenders*rounds)
	}
	// A waiting Lock gives up with its context and leaves no node behind.
	st := s.open(t)
	holder := coord.NewMutex(st, "/LOCK", "lock-", nil)
	must(t, holder.Lock(ctx))
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	waiter := coord.NewMutex(s.open(t), "/LOCK", "lock-", nil)
	if err := waiter.Lock(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock past its deadline: %v", err)
	}
	kids, err := st.Children(ctx, "/LOCK")
	must(t, err)
	if len(kids) != 1 || "/LOCK/"+kids[0] != holder.Node() {
		t.Fatalf("lock nodes %v, want only the holder's %s", kids, holder.Node())
	}
	must(t, holder.Unlock(ctx))
}

func testMutexLost(t *testing.T, s *suite) {
	ctx := ctxT(t)
	a, b := s.open(t), s.open(t)
	ma := coord.NewMutex(a, "/LOCK", "lock-", nil)
	must(t, ma.Lock(ctx))
	got := make(chan error, 1)
	go func() {
		mb := coord.NewMutex(b, "/LOCK", "lock-", nil)
		got <- mb.Lock(ctx)
	}()
	select {
	case err := <-got:
		t.Fatalf("second Lock returned %v while the first is held", err)
	case <-time.After(300 * time.Millisecond):
	}
	lost := ma.Lost()
	s.b.Expire(t, a)
	select {
	case <-lost:
	case <-time.After(Timeout):
		t.Fatal("holder not told that its session ended")
	}
	select {
	case err := <-got:
		must(t, err)
	case <-time.After(Timeout):
		t.Fatal("waiter did not get the lock after the holder's session expired")
	}
}
