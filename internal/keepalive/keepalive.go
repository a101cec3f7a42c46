// Package keepalive renews a session that a server expires after a TTL
// without renewal (an etcd lease, a Consul session), and tells its owner the
// session is lost before the server can have expired it.
//
// The server expires the session a TTL after the last renewal it received,
// and it cannot have received a renewal before the client sent it. So the
// send time of the newest confirmed renewal, plus the TTL, on the client's
// monotonic clock, is a time before which the session cannot have been
// expired, whatever the network did since. Run ends the session a margin
// (a fifth of the TTL) before that: an unanswered renewal cannot push it
// later, as it would if the session were only ended when the server says so
// or when the link heals.
package keepalive

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrLost is why Run ended: the session may have expired on the server, or
// it has (the server no longer knows it).
var ErrLost = errors.New("session lost")

// Margin is how long before the earliest server-side expiry a session is
// taken as lost.
func Margin(ttl time.Duration) time.Duration { return ttl / 5 }

// Renew renews the session once within ctx. It returns alive false when the
// server answered that the session no longer exists, and an error when there
// was no answer (the call is tried again while time is left).
type Renew func(ctx context.Context) (alive bool, err error)

// SuspendAfter is how long after the send time of the newest confirmed
// renewal the session is taken as in danger (suspended): half the TTL, when
// a renewal due at a third of it has not been confirmed.
func SuspendAfter(ttl time.Duration) time.Duration { return ttl / 2 }

// Run renews the session every third of ttl, from created (the send time of
// the request that created it) until stop is closed (it then returns nil) or
// the session is lost (it returns an error wrapping ErrLost). suspend, when
// not nil, is told when the session falls in danger (no renewal confirmed
// for SuspendAfter) and when a renewal brings it out.
func Run(stop <-chan struct{}, created time.Time, ttl time.Duration, renew Renew, suspend func(bool)) error {
	if suspend == nil {
		suspend = func(bool) {}
	}
	contact := created
	interval := ttl / 3
	next := created.Add(interval)
	retry := 100 * time.Millisecond
	for {
		deadline := contact.Add(ttl - Margin(ttl))
		now := time.Now()
		if !now.Before(deadline) {
			return fmt.Errorf("%w: no renewal confirmed since %v ago (TTL %v)", ErrLost, time.Since(contact).Round(time.Millisecond), ttl)
		}
		danger := contact.Add(SuspendAfter(ttl))
		suspend(!now.Before(danger))
		wake := next
		if deadline.Before(wake) {
			wake = deadline
		}
		if now.Before(danger) && danger.Before(wake) {
			wake = danger
		}
		t := time.NewTimer(time.Until(wake))
		select {
		case <-stop:
			t.Stop()
			return nil
		case <-t.C:
		}
		if !time.Now().Before(deadline) || time.Now().Before(next) {
			continue // lost, or danger: handled at the top
		}
		sent := time.Now()
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		watched := make(chan struct{})
		go func() { // stop ends the renewal; danger passing during it suspends
			defer close(watched)
			t := time.NewTimer(time.Until(danger))
			defer t.Stop()
			for {
				select {
				case <-stop:
					cancel()
					return
				case <-t.C:
					suspend(true)
				case <-ctx.Done():
					return
				}
			}
		}()
		alive, err := renew(ctx)
		cancel()
		<-watched
		switch {
		case err == nil && !alive:
			return fmt.Errorf("%w: the server no longer knows it", ErrLost)
		case err == nil:
			contact = sent
			next = sent.Add(interval)
		default:
			next = time.Now().Add(retry)
		}
	}
}
