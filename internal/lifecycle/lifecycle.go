// Package lifecycle is what stores and sessions share: something that lives
// until it ends once, with a reason, and the bound put on a call made while
// it lives.
package lifecycle

import (
	"context"
	"sync"
	"time"
)

// State is embedded in (or held by) a store or a session; the zero value
// is alive.
type State struct {
	once sync.Once
	mu   sync.Mutex
	err  error
	done chan struct{}
	init sync.Once
}

func (s *State) ch() chan struct{} {
	s.init.Do(func() { s.done = make(chan struct{}) })
	return s.done
}

// Done is closed when it has ended.
func (s *State) Done() <-chan struct{} { return s.ch() }

// Err is nil while it lives, then why it ended.
func (s *State) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// End ends it with err and reports whether this call did; later calls do
// nothing.
func (s *State) End(err error) bool {
	first := false
	s.once.Do(func() {
		first = true
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.ch())
	})
	return first
}

// Ended reports whether it has ended.
func (s *State) Ended() bool {
	select {
	case <-s.ch():
		return true
	default:
		return false
	}
}

// Bound returns ctx bounded by timeout when it has no deadline of its own:
// a backend that does not answer then fails the call instead of hanging it.
func Bound(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}

// Suspense is a session's suspended flag (coord.Session.Suspended): set
// while the client cannot reach the server and the session is in danger.
// The zero value is not suspended.
type Suspense struct {
	mu   sync.Mutex
	on   bool
	next chan struct{}
}

// Suspended reports the flag and returns a channel closed at its next
// change.
func (s *Suspense) Suspended() (bool, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == nil {
		s.next = make(chan struct{})
	}
	return s.on, s.next
}

// Suspend sets the flag to on; a change closes the channel handed out.
func (s *Suspense) Suspend(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.on == on {
		return
	}
	s.on = on
	if s.next != nil {
		close(s.next)
		s.next = nil
	}
}
