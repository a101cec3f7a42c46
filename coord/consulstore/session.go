package consulstore

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/keepalive"
	"github.com/coordkit/coord/internal/lifecycle"
	"github.com/coordkit/coord/internal/retry"
)

// session is one Consul session, renewed until it is lost or the store closes.
type session struct {
	id string
	lifecycle.State
	lifecycle.Suspense
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
	created := time.Now()
	err := retry.Do(c, notApplied, func() error {
		_, err := s.cli.Raw().Write("/v1/session/create", body, &out, (&api.WriteOptions{}).WithContext(c))
		return err
	})
	if err != nil {
		return nil, mapErr(ctx, err)
	}
	sess := &session{id: out.ID}
	s.sess = sess
	go s.renew(sess, created)
	return sess, nil
}

// renew keeps the session alive at a third of its TTL (package keepalive).
// The session is lost when Consul no longer knows it, or when no renewal
// sent within the last TTL, less a margin, was confirmed: the server may
// expire it a TTL after the last renewal it received, and not earlier.
func (s *Store) renew(sess *session, created time.Time) {
	err := keepalive.Run(s.life.Done(), created, s.ttl, func(c context.Context) (bool, error) {
		entry, _, err := s.cli.Session().Renew(sess.id, (&api.WriteOptions{}).WithContext(c))
		if err != nil {
			return false, err
		}
		return entry != nil, nil
	}, sess.Suspend)
	if err == nil { // the store closed: Close destroys the session
		return
	}
	sess.End(fmt.Errorf("%w: %v", coord.ErrSessionExpired, err))
	// The session may still live on the server: destroy it once the agent
	// can be reached, so its keys go now rather than at expiry.
	c, cancel := context.WithTimeout(s.bg, s.ttl)
	defer cancel()
	_, _ = s.cli.Session().Destroy(sess.id, (&api.WriteOptions{}).WithContext(c))
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
