package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

var errPassing = errors.New("passing")

func TestDo(t *testing.T) {
	transient := func(err error) bool { return errors.Is(err, errPassing) }
	calls := 0
	err := Do(context.Background(), transient, func() error {
		calls++
		if calls < 4 {
			return errPassing
		}
		return nil
	})
	if err != nil || calls != 4 {
		t.Fatalf("got %v after %d calls, want nil after 4", err, calls)
	}
	// An error that is not transient ends at once.
	calls = 0
	final := errors.New("final")
	if err := Do(context.Background(), transient, func() error { calls++; return final }); err != final || calls != 1 {
		t.Fatalf("got %v after %d calls", err, calls)
	}
	// The context bounds the tries; the last error is returned.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := Do(ctx, transient, func() error { return errPassing }); err != errPassing {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("tries went on %v past a 300ms context", time.Since(start))
	}
}
