package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/keepalive"
	"github.com/coordkit/coord/internal/lifecycle"
)

// session is one lease, renewed until it is lost or the store closes. It is
// taken as lost before the server can have expired it (package keepalive):
// KeepAliveOnce at a third of the TTL, each timed from its sending.
type session struct {
	id clientv3.LeaseID
	lifecycle.State
	lifecycle.Suspense
}

func (s *session) ID() string { return leaseOwner(int64(s.id)) }

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
	if s.sess != nil && !s.sess.Ended() {
		return s.sess, nil
	}
	c, cancel := context.WithTimeout(ctx, s.reqTO)
	defer cancel()
	created := time.Now()
	grant, err := s.cli.Grant(c, int64(s.ttl.Seconds()))
	if err != nil {
		return nil, mapErr(ctx, err)
	}
	sess := &session{id: grant.ID}
	s.sess = sess
	ttl := time.Duration(grant.TTL) * time.Second
	go func() {
		err := keepalive.Run(s.life.Done(), created, ttl, func(c context.Context) (bool, error) {
			_, err := s.cli.KeepAliveOnce(c, grant.ID)
			if errors.Is(err, rpctypes.ErrLeaseNotFound) {
				return false, nil
			}
			return err == nil, err
		}, sess.Suspend)
		if err == nil { // the store closed: Close revokes the lease
			return
		}
		sess.End(fmt.Errorf("%w: %v", coord.ErrSessionExpired, err))
		// The lease may still live on the server: revoke it once the
		// server can be reached, so its nodes go now, not at expiry.
		c, cancel := context.WithTimeout(s.bg, ttl)
		defer cancel()
		_, _ = s.cli.Revoke(c, grant.ID)
	}()
	return sess, nil
}

// sessionLost marks the session of lease id as ended (a write found the lease gone).
func (s *Store) sessionLost(id clientv3.LeaseID) {
	s.mu.Lock()
	sess := s.sess
	s.mu.Unlock()
	if sess != nil && sess.id == id {
		sess.End(coord.ErrSessionExpired)
	}
}

// Close implements coord.Store: it revokes the session's lease (removing its
// ephemeral nodes), ends every watch and closes the client it dialed.
func (s *Store) Close() error {
	s.mu.Lock()
	first := s.life.End(coord.ErrClosed)
	sess := s.sess
	s.mu.Unlock()
	if !first {
		return nil
	}
	if sess != nil && !sess.Ended() {
		c, cancel := context.WithTimeout(context.Background(), s.reqTO)
		_, _ = s.cli.Revoke(c, sess.id)
		cancel()
		sess.End(coord.ErrClosed)
	}
	s.stop()
	if s.ownCli {
		return s.cli.Close()
	}
	return nil
}

func nopLogger() *zap.Logger { return zap.NewNop() }
