package zkstore

import (
	"context"
	"fmt"

	"github.com/go-zookeeper/zk"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/lifecycle"
)

// session is one ZooKeeper session of the connection.
type session struct {
	id int64
	lifecycle.State
}

func (s *session) ID() string { return fmt.Sprintf("%x", s.id) }

// watchSession follows the connection's session events: a new session id
// starts a session, an expiry ends the current one. The client library then
// establishes a new session by itself.
func (s *Store) watchSession(events <-chan zk.Event) {
	for ev := range events {
		if ev.Type != zk.EventSession {
			continue
		}
		switch ev.State {
		case zk.StateHasSession:
			id := s.conn.SessionID()
			s.mu.Lock()
			if s.sess == nil || s.sess.id != id {
				if s.sess != nil {
					s.sess.End(coord.ErrSessionExpired)
				}
				s.sess = &session{id: id}
				close(s.newSess)
				s.newSess = make(chan struct{})
			}
			s.mu.Unlock()
		case zk.StateExpired:
			s.mu.Lock()
			if s.sess != nil {
				s.sess.End(coord.ErrSessionExpired)
			}
			s.mu.Unlock()
		}
	}
}

// Session implements coord.Store. After an expiry it waits for the client
// library to establish the next session.
func (s *Store) Session(ctx context.Context) (coord.Session, error) {
	sess, err := s.session(ctx)
	if err != nil {
		return nil, coord.Errorf("session", "/", err)
	}
	return sess, nil
}

func (s *Store) session(ctx context.Context) (*session, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.life.Ended() {
			s.mu.Unlock()
			return nil, coord.ErrClosed
		}
		cur, wait := s.sess, s.newSess
		s.mu.Unlock()
		if cur != nil && cur.Err() == nil {
			return cur, nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.life.Done():
			return nil, coord.ErrClosed
		}
	}
}
