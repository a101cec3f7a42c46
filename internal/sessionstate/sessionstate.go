// Package sessionstate is the lifecycle every backend's coord.Session
// shares: live until it ends once, with a reason.
package sessionstate

import "sync"

// State is embedded in a backend's session type; it provides Done and Err.
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

// Done is closed when the session has ended.
func (s *State) Done() <-chan struct{} { return s.ch() }

// Err is nil while the session lives, then why it ended.
func (s *State) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// End ends the session with err; later calls do nothing.
func (s *State) End(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.ch())
	})
}

// Ended reports whether the session has ended.
func (s *State) Ended() bool {
	select {
	case <-s.ch():
		return true
	default:
		return false
	}
}
