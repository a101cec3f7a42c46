package zkstore

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
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
	go s.loop(ctx, q, fired, func(c context.Context, _ zk.EventType) (coord.Event, *shared, error) {
		return s.armData(c, path)
	})
	return ch, nil
}

// armData reads the node and arms a watch with the same request, or reads
// it under a shared watch that has not fired.
func (s *Store) armData(ctx context.Context, path string) (coord.Event, *shared, error) {
	for {
		conn := s.zk()
		sh := s.watches.get(wkey{path, false}, conn)
		var data []byte
		var st *zk.Stat
		var fired <-chan zk.Event
		err := s.read(ctx, func() error {
			var err error
			if sh != nil {
				data, st, err = conn.Get(s.abs(path))
			} else {
				data, st, fired, err = conn.GetW(s.abs(path))
			}
			return err
		})
		if err == nil {
			if sh == nil {
				sh = s.watches.add(wkey{path, false}, conn, fired)
			}
			if path == "/" {
				return coord.Event{Path: path, Exists: true}, sh, nil
			}
			return coord.Event{Path: path, Exists: true, Data: data, Stat: statOf(st)}, sh, nil
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return coord.Event{}, nil, mapErr(err)
		}
		if sh != nil {
			// Missing under a watch that has not fired: it was missing
			// when the watch was armed and still is.
			return coord.Event{Path: path}, sh, nil
		}
		var ok bool
		err = s.read(ctx, func() error {
			var err error
			ok, _, fired, err = conn.ExistsW(s.abs(path))
			return err
		})
		if err != nil {
			return coord.Event{}, nil, mapErr(err)
		}
		sh = s.watches.add(wkey{path, false}, conn, fired)
		if !ok {
			return coord.Event{Path: path}, sh, nil
		}
		// Created between the two reads: read it.
	}
}

// WatchChildren implements coord.Store.
func (s *Store) WatchChildren(ctx context.Context, path string) (<-chan coord.Event, error) {
	if err := coord.CheckCall(ctx, "watch", path, nil, 0, 0, s.Limits()); err != nil {
		return nil, err
	}
	ev, created, fired, err := s.armChildren(ctx, path)
	if err != nil {
		return nil, coord.Errorf("watch", path, err)
	}
	if !ev.Exists {
		return nil, coord.Errorf("watch", path, coord.ErrNoNode)
	}
	q, ch := watchq.New()
	q.Send(ev)
	last := ev.Children
	go s.loop(ctx, q, fired, func(c context.Context, why zk.EventType) (coord.Event, *shared, error) {
		gone := coord.Event{Path: path, Err: coord.Errorf("watch", path, coord.ErrNoNode)}
		if why == zk.EventNodeDeleted {
			// Ended, even if the node is back by now: it is another node.
			return gone, nil, nil
		}
		ev, now, fired, err := s.armChildren(c, path)
		if err == nil && ev.Exists && path != "/" && now != created {
			// Deleted and made again since the last read, its delete
			// unseen: the watch that fired was spent on a change of its
			// children (a DeleteAll deletes them first). Another node.
			return gone, nil, nil
		}
		if err == nil && ev.Exists && slices.Equal(ev.Children, last) {
			ev.Children = nil // unchanged: nothing to send
			return coord.Event{}, fired, nil
		}
		last = ev.Children
		return ev, fired, err
	})
	return ch, nil
}

// armChildren reads the children of path and arms (or joins) a children
// watch of it, and returns them with the node's creation zxid (which tells
// a node made again from the one read before).
func (s *Store) armChildren(ctx context.Context, path string) (coord.Event, int64, *shared, error) {
	conn := s.zk()
	sh := s.watches.get(wkey{path, true}, conn)
	var kids []string
	var stat *zk.Stat
	var fired <-chan zk.Event
	err := s.read(ctx, func() error {
		var err error
		if sh != nil {
			kids, stat, err = conn.Children(s.abs(path))
		} else {
			kids, stat, fired, err = conn.ChildrenW(s.abs(path))
		}
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return coord.Event{Path: path, Err: coord.Errorf("watch", path, coord.ErrNoNode)}, 0, nil, nil
	}
	if err != nil {
		return coord.Event{}, 0, nil, mapErr(err)
	}
	if sh == nil {
		sh = s.watches.add(wkey{path, true}, conn, fired)
	}
	kids = s.hide(path, kids)
	sort.Strings(kids)
	var created int64
	if stat != nil {
		created = stat.Czxid
	}
	return coord.Event{Path: path, Exists: true, Children: kids}, created, sh, nil
}

// loop waits for the armed watch to fire, then re-reads and re-arms. An
// event with an empty Path from arm means "nothing to send".
// arm is told the type of the event that fired the watch (EventNotWatching
// when the watch was dropped with its session).
func (s *Store) loop(ctx context.Context, q *watchq.Q, fired *shared, arm func(context.Context, zk.EventType) (coord.Event, *shared, error)) {
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
		case <-fired.done:
			// Any firing (a change, or the watch dropped with an expired
			// session) means: read again and re-arm.
			why = fired.typ
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

// A ZooKeeper client keeps the channel of every watch it arms until the
// watch fires; go-zookeeper cannot remove one. So that watches cancelled
// by their callers do not pile up in the connection, the coord watches of a
// path share one ZooKeeper watch of each kind: a watch armed and not yet
// fired covers every later read of that path, which is then made without
// arming another.
type wkey struct {
	path     string
	children bool // ChildrenW; otherwise GetW or ExistsW
}

// shared is one armed ZooKeeper watch; done is closed when it fires, after
// typ is set.
type shared struct {
	conn *zk.Conn
	done chan struct{}
	typ  zk.EventType
}

type watchSet struct {
	mu    sync.Mutex
	m     map[wkey]*shared
	armed int // ZooKeeper watches armed, for tests
}

// get returns the unfired watch of k on conn, or nil. (A watch leaves the
// set, under its lock, before its done is closed: one found is unfired.)
func (w *watchSet) get(k wkey, conn *zk.Conn) *shared {
	w.mu.Lock()
	defer w.mu.Unlock()
	sh := w.m[k]
	if sh == nil || sh.conn != conn {
		return nil
	}
	return sh
}

// add records the watch just armed on conn with fired as k's.
func (w *watchSet) add(k wkey, conn *zk.Conn, fired <-chan zk.Event) *shared {
	sh := &shared{conn: conn, done: make(chan struct{})}
	w.mu.Lock()
	if w.m == nil {
		w.m = map[wkey]*shared{}
	}
	w.m[k] = sh
	w.armed++
	w.mu.Unlock()
	go func() {
		e := <-fired // every watch fires, at the latest when conn closes
		w.mu.Lock()
		if w.m[k] == sh {
			delete(w.m, k)
		}
		w.mu.Unlock()
		sh.typ = e.Type
		close(sh.done)
	}()
	return sh
}
