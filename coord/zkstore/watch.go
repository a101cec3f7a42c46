package zkstore

import (
	"context"
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/watchq"
)

// WatchData implements coord.Store.
func (s *Store) WatchData(ctx context.Context, path string) (<-chan coord.Event, error) {
	if err := coord.CheckCall(ctx, "watch", path, nil, 0, 0, s.Limits()); err != nil {
		return nil, err
	}
	ev, fired, err := s.armData(ctx, path)
	if err != nil {
		return nil, coord.Errorf("watch", path, err)
	}
	q, ch := watchq.New()
	q.Send(ev)
	go s.loop(ctx, q, fired, func(c context.Context, _ zk.EventType) (coord.Event, <-chan zk.Event, error) {
		return s.armData(c, path)
	})
	return ch, nil
}

// armData reads the node and arms a watch with the same request.
func (s *Store) armData(ctx context.Context, path string) (coord.Event, <-chan zk.Event, error) {
	for {
		var data []byte
		var st *zk.Stat
		var fired <-chan zk.Event
		err := s.read(ctx, func() error {
			var err error
			data, st, fired, err = s.zk().GetW(s.abs(path))
			return err
		})
		if err == nil {
			if path == "/" {
				return coord.Event{Path: path, Exists: true}, fired, nil
			}
			return coord.Event{Path: path, Exists: true, Data: data, Stat: statOf(st)}, fired, nil
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return coord.Event{}, nil, mapErr(err)
		}
		var ok bool
		err = s.read(ctx, func() error {
			var err error
			ok, _, fired, err = s.zk().ExistsW(s.abs(path))
			return err
		})
		if err != nil {
			return coord.Event{}, nil, mapErr(err)
		}
		if !ok {
			return coord.Event{Path: path}, fired, nil
		}
		// Created between the two reads: read it.
	}
}

// WatchChildren implements coord.Store.
func (s *Store) WatchChildren(ctx context.Context, path string) (<-chan coord.Event, error) {
	if err := coord.CheckCall(ctx, "watch", path, nil, 0, 0, s.Limits()); err != nil {
		return nil, err
	}
	ev, fired, err := s.armChildren(ctx, path)
	if err != nil {
		return nil, coord.Errorf("watch", path, err)
	}
	if !ev.Exists {
		return nil, coord.Errorf("watch", path, coord.ErrNoNode)
	}
	q, ch := watchq.New()
	q.Send(ev)
	last := ev.Children
	go s.loop(ctx, q, fired, func(c context.Context, why zk.EventType) (coord.Event, <-chan zk.Event, error) {
		if why == zk.EventNodeDeleted {
			// Ended, even if the node is back by now: it is another node.
			return coord.Event{Path: path, Err: coord.Errorf("watch", path, coord.ErrNoNode)}, nil, nil
		}
		ev, fired, err := s.armChildren(c, path)
		if err == nil && ev.Exists && slices.Equal(ev.Children, last) {
			ev.Children = nil // unchanged: nothing to send
			return coord.Event{}, fired, nil
		}
		last = ev.Children
		return ev, fired, err
	})
	return ch, nil
}

func (s *Store) armChildren(ctx context.Context, path string) (coord.Event, <-chan zk.Event, error) {
	var kids []string
	var fired <-chan zk.Event
	err := s.read(ctx, func() error {
		var err error
		kids, _, fired, err = s.zk().ChildrenW(s.abs(path))
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return coord.Event{Path: path, Err: coord.Errorf("watch", path, coord.ErrNoNode)}, nil, nil
	}
	if err != nil {
		return coord.Event{}, nil, mapErr(err)
	}
	kids = s.hide(path, kids)
	sort.Strings(kids)
	return coord.Event{Path: path, Exists: true, Children: kids}, fired, nil
}

// loop waits for the armed watch to fire, then re-reads and re-arms. An
// event with an empty Path from arm means "nothing to send".
// arm is told the type of the event that fired the watch (EventNotWatching
// when the watch was dropped with its session).
func (s *Store) loop(ctx context.Context, q *watchq.Q, fired <-chan zk.Event, arm func(context.Context, zk.EventType) (coord.Event, <-chan zk.Event, error)) {
	defer q.Close()
	backoff := 50 * time.Millisecond
	for {
		why := zk.EventNotWatching
		select {
		case <-ctx.Done():
			return
		case <-s.life.Done():
			q.Send(coord.Event{Err: coord.ErrClosed})
			return
		case e := <-fired:
			// Any firing (a change, or the watch dropped with an expired
			// session) means: read again and re-arm.
			why = e.Type
		}
		for {
			ev, f, err := arm(ctx, why)
			if err == nil {
				if ev.Path != "" {
					q.Send(ev)
				}
				if ev.Err != nil {
					return
				}
				fired, backoff = f, 50*time.Millisecond
				break
			}
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, coord.ErrClosed) {
				q.Send(coord.Event{Err: coord.ErrClosed})
				return
			}
			select { // the server is away: try again
			case <-ctx.Done():
				return
			case <-s.life.Done():
				q.Send(coord.Event{Err: coord.ErrClosed})
				return
			case <-time.After(backoff):
				backoff = min(2*backoff, 2*time.Second)
			}
		}
	}
}
