package keepalive

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Renewals that succeed keep the session; stop ends Run with nil.
func TestKeeps(t *testing.T) {
	stop := make(chan struct{})
	var n atomic.Int32
	res := make(chan error, 1)
	go func() {
		res <- Run(stop, time.Now(), 300*time.Millisecond, func(context.Context) (bool, error) {
			n.Add(1)
			return true, nil
		})
	}()
	time.Sleep(time.Second)
	close(stop)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if n.Load() < 2 {
		t.Fatalf("%d renewals in 1s at a TTL of 300ms", n.Load())
	}
}

// A renewal that hangs (a stalled link) cannot delay the loss past the
// deadline: contact + TTL - margin.
func TestHangingRenewalLosesOnTime(t *testing.T) {
	ttl := 600 * time.Millisecond
	var hang atomic.Bool
	start := time.Now()
	var lastOK atomic.Int64
	lastOK.Store(start.UnixNano())
	err := Run(make(chan struct{}), start, ttl, func(ctx context.Context) (bool, error) {
		if hang.Load() {
			<-ctx.Done()
			return false, ctx.Err()
		}
		sent := time.Now()
		if time.Since(start) > ttl {
			hang.Store(true)
		}
		lastOK.Store(sent.UnixNano())
		return true, nil
	})
	if !errors.Is(err, ErrLost) {
		t.Fatalf("got %v, want ErrLost", err)
	}
	limit := time.Unix(0, lastOK.Load()).Add(ttl - Margin(ttl))
	if time.Now().Before(limit) {
		t.Fatalf("lost %v before the deadline", time.Until(limit))
	}
	if late := time.Since(limit); late > ttl/2 {
		t.Fatalf("lost %v after the deadline", late)
	}
}

// The server saying the session is gone ends Run at once; failures are tried
// again until the deadline.
func TestGoneAndRetry(t *testing.T) {
	calls := 0
	err := Run(make(chan struct{}), time.Now(), 3*time.Second, func(context.Context) (bool, error) {
		calls++
		if calls < 3 {
			return false, errors.New("unavailable")
		}
		return false, nil
	})
	if !errors.Is(err, ErrLost) || calls != 3 {
		t.Fatalf("got %v after %d calls", err, calls)
	}
}
