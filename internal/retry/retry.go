// Package retry calls again what failed for a passing reason (a lost
// connection, a server restarting, a leader election, an overloaded agent)
// until its context ends: a call rides out a short outage within its
// deadline instead of failing at once.
package retry

import (
	"context"
	"time"
)

// First and Max bound the pause between tries: it doubles from First to Max.
const (
	First = 20 * time.Millisecond
	Max   = time.Second
)

// Do calls fn until it returns nil, or an error that transient does not
// accept, or ctx ends; it then returns fn's last error. Only calls that are
// safe to repeat (reads, or requests known not to have been applied) belong
// here; transient says which errors those are.
func Do(ctx context.Context, transient func(error) bool, fn func() error) error {
	pause := First
	for {
		err := fn()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		pause = min(2*pause, Max)
	}
}
