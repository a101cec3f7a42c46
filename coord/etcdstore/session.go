package etcdstore

import (
	"context"
	"fmt"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/coordkit/coord/coord"
)

// session is one lease, kept alive until it is lost or the store closes.
type session struct {
	id   clientv3.LeaseID
	done chan struct{}
	once sync.Once
	mu   sync.Mutex
	err  error
}

func (s *session) ID() string            { return fmt.Sprintf("%x", int64(s.id)) }
func (s *session) Done() <-chan struct{} { return s.done }
func (s *session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *session) end(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
	})
}

func (s *session) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

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
	if s.closed {
		return nil, coord.ErrClosed
	}
	if s.sess != nil && !s.sess.ended() {
		return s.sess, nil
	}
	c, cancel := context.WithTimeout(ctx, s.reqTO)
	defer cancel()
	grant, err := s.cli.Grant(c, int64(s.ttl.Seconds()))
	if err != nil {
		return nil, mapErr(ctx, err)
	}
	ka, err := s.cli.KeepAlive(s.bg, grant.ID)
	if err != nil {
		return nil, mapErr(ctx, err)
	}
	sess := &session{id: grant.ID, done: make(chan struct{})}
	s.sess = sess
	go func() {
		for range ka { // drain keep-alive answers
		}
		// The channel closes when the lease is gone (expired or revoked) or
		// the store closes.
		select {
		case <-s.closeCh:
			sess.end(coord.ErrClosed)
		default:
			sess.end(coord.ErrSessionExpired)
		}
	}()
	return sess, nil
}

// sessionLost marks the session of lease id as ended (a write found the lease gone).
func (s *Store) sessionLost(id clientv3.LeaseID) {
	s.mu.Lock()
	sess := s.sess
	s.mu.Unlock()
	if sess != nil && sess.id == id {
		sess.end(coord.ErrSessionExpired)
	}
}

// Close implements coord.Store: it revokes the session's lease (removing its
// ephemeral nodes), ends every watch and closes the client it dialed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closeCh)
	sess := s.sess
	s.mu.Unlock()
	if sess != nil && !sess.ended() {
		c, cancel := context.WithTimeout(context.Background(), s.reqTO)
		_, _ = s.cli.Revoke(c, sess.id)
		cancel()
		sess.end(coord.ErrClosed)
	}
	s.stop()
	if s.ownCli {
		return s.cli.Close()
	}
	return nil
}

func nopLogger() *zap.Logger { return zap.NewNop() }
