package keepalive

import (
	"context"
	"errors"
	"sync"
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
		}, nil)
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
	}, nil)
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
	}, nil)
	if !errors.Is(err, ErrLost) || calls != 3 {
		t.Fatalf("got %v after %d calls", err, calls)
	}
}

// A renewal that hangs suspends the session while it hangs, before the
// session is lost; its answer arriving before the deadline ends the
// suspension and keeps the session.
func TestSuspendedWhileRenewalHangs(t *testing.T) {
	ttl := 3 * time.Second
	stop := make(chan struct{})
	release := make(chan struct{})
	var hang atomic.Bool
	susp := Suspender{ch: make(chan bool, 100)}
	res := make(chan error, 1)
	go func() {
		res <- Run(stop, time.Now(), ttl, func(ctx context.Context) (bool, error) {
			if hang.Load() {
				select {
				case <-release:
				case <-ctx.Done():
					return false, ctx.Err()
				}
			}
			return true, nil
		}, susp.set)
	}()
	hang.Store(true)
	on := susp.wait(t, true, 5*time.Second)
	select {
	case err := <-res:
		t.Fatalf("lost before the suspension was resolved: %v", err)
	default:
	}
	hang.Store(false)
	close(release)
	off := susp.wait(t, false, 5*time.Second)
	if !off.After(on) {
		t.Fatal("suspension ended before it began")
	}
	close(stop)
	if err := <-res; err != nil {
		t.Fatalf("the session was lost: %v", err)
	}
}

// Suspender records the changes of the suspension Run reports.
type Suspender struct {
	ch   chan bool
	mu   sync.Mutex
	last bool
}

func (s *Suspender) set(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on != s.last {
		s.last = on
		s.ch <- on
	}
}

func (s *Suspender) wait(t *testing.T, want bool, within time.Duration) time.Time {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case on := <-s.ch:
			if on == want {
				return time.Now()
			}
		case <-timeout:
			t.Fatalf("not told suspended=%v within %v", want, within)
		}
	}
}
