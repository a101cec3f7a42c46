package consulstore

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/lifecycle"
)

// session is one Consul session, renewed until it is lost or the store closes.
type session struct {
	id string
	lifecycle.State
}

func (s *session) ID() string { return s.id }

// Session implements coord.Store.
func (s *Store) Session(ctx context.Context) (coord.Session, error) {
	sess, err := s.session(ctx)
	if err != nil {
		return nil, coord.Errorf("session", "/", err)
	}
	return sess, nil
}

func (s *Store) session(ctx context.Context) (*session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.life.Ended() {
		return nil, coord.ErrClosed
	}
	if s.sess != nil && s.sess.Err() == nil {
		return s.sess, nil
	}
	c, cancel := context.WithTimeout(ctx, s.reqTO)
	defer cancel()
	// Through the raw endpoint: the api's Session.Create leaves out empty
	// check lists (which would tie the session to the agent's serfHealth
	// check) and a zero lock delay.
	body := map[string]interface{}{
		"Name":       "coord",
		"Behavior":   api.SessionBehaviorDelete,
		"TTL":        s.ttl.String(),
		"LockDelay":  "0s",
		"Checks":     []string{},
		"NodeChecks": []string{},
	}
	var out struct{ ID string }
	if _, err := s.cli.Raw().Write("/v1/session/create", body, &out, (&api.WriteOptions{}).WithContext(c)); err != nil {
		return nil, mapErr(ctx, err)
	}
	sess := &session{id: out.ID}
	s.sess = sess
	go s.renew(sess)
	return sess, nil
}

// renew keeps the session alive at a third of its TTL. The session is lost
// when Consul no longer knows it, or no renewal succeeded for a whole TTL
// (the server has expired it by then).
func (s *Store) renew(sess *session) {
	last := time.Now()
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-s.life.Done():
			return
		case <-sess.Done():
			return
		case <-tick.C:
		}
		c, cancel := context.WithTimeout(s.bg, s.ttl/3)
		entry, _, err := s.cli.Session().Renew(sess.id, (&api.WriteOptions{}).WithContext(c))
		cancel()
		switch {
		case err == nil && entry == nil:
			sess.End(coord.ErrSessionExpired)
			return
		case err == nil:
			last = time.Now()
		case time.Since(last) > s.ttl:
			sess.End(fmt.Errorf("%w: not renewed for %v: %v", coord.ErrSessionExpired, s.ttl, err))
			return
		}
	}
}

// sessionLost ends the session id (a write found it invalid).
func (s *Store) sessionLost(id string) {
	s.mu.Lock()
	sess := s.sess
	s.mu.Unlock()
	if sess != nil && sess.id == id {
		sess.End(coord.ErrSessionExpired)
	}
}
