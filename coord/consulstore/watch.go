package consulstore

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/watchq"
)

// WatchData implements coord.Store with blocking queries: each waits from
// the index of the previous read, so no change is missed.
func (s *Store) WatchData(ctx context.Context, path string) (<-chan coord.Event, error) {
	if err := coord.CheckCall(ctx, "watch", path, nil, 0, 0, s.limits); err != nil {
		return nil, err
	}
	read := func(c context.Context, index uint64, wait time.Duration) (coord.Event, uint64, error) {
		q, cancel, err := s.waitOpts(c, wait)
		if err != nil {
			return coord.Event{}, 0, err
		}
		defer cancel()
		q.WaitIndex = index
		kv, meta, err := s.cli.KV().Get(s.key(path), q)
		if err != nil {
			return coord.Event{}, 0, mapErr(c, err)
		}
		ev := coord.Event{Path: path}
		if kv != nil || path == "/" {
			ev.Exists = true
		}
		if kv != nil && path != "/" {
			ev.Data, ev.Stat = kv.Value, statOf(kv)
		}
		return ev, meta.LastIndex, nil
	}
	ev, index, err := read(ctx, 0, 0)
	if err != nil {
		return nil, coord.Errorf("watch", path, err)
	}
	q, ch := watchq.New()
	q.Send(ev)
	go s.loop(ctx, q, ev, index, read, func(a, b coord.Event) bool {
		return a.Exists == b.Exists && a.Stat == b.Stat && bytes.Equal(a.Data, b.Data)
	})
	return ch, nil
}

// WatchChildren implements coord.Store.
func (s *Store) WatchChildren(ctx context.Context, path string) (<-chan coord.Event, error) {
	if err := coord.CheckCall(ctx, "watch", path, nil, 0, 0, s.limits); err != nil {
		return nil, err
	}
	// created is the CreateIndex of the watched node's key: a node deleted
	// and made again between two reads has another, and ends the watch as
	// the delete alone would.
	var created uint64
	read := func(c context.Context, index uint64, wait time.Duration) (coord.Event, uint64, error) {
		kids, exists, idx, err := s.children(c, path, max(index, 1), wait)
		if err != nil {
			return coord.Event{}, 0, err
		}
		gone := coord.Event{Path: path, Err: coord.Errorf("watch", path, coord.ErrNoNode)}
		if !exists {
			return gone, idx, nil
		}
		if path != "/" {
			kv, _, err := s.get(c, path)
			if err != nil {
				return coord.Event{}, 0, err
			}
			if kv == nil || (created != 0 && kv.CreateIndex != created) {
				return gone, idx, nil
			}
			created = kv.CreateIndex
		}
		return coord.Event{Path: path, Exists: true, Children: kids}, idx, nil
	}
	// The first read must not block: index 1 is below every real index.
	ev, index, err := read(ctx, 0, 0)
	if err != nil {
		return nil, coord.Errorf("watch", path, err)
	}
	if ev.Err != nil {
		return nil, ev.Err
	}
	q, ch := watchq.New()
	q.Send(ev)
	go s.loop(ctx, q, ev, index, read, func(a, b coord.Event) bool {
		return a.Exists == b.Exists && slices.Equal(a.Children, b.Children)
	})
	return ch, nil
}

// loop renews the blocking query and sends each state that differs from the
// last one sent.
func (s *Store) loop(ctx context.Context, q *watchq.Q, last coord.Event, index uint64,
	read func(context.Context, uint64, time.Duration) (coord.Event, uint64, error), same func(a, b coord.Event) bool) {
	defer q.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // a blocking query in flight ends with the store
		select {
		case <-s.life.Done():
			cancel()
		case <-wctx.Done():
		}
	}()
	backoff := 50 * time.Millisecond
	// The first queries wait briefly and each next one twice as long, up to
	// WatchWait: the agent holds a cancelled watch's query (and its
	// connection) until its wait ends, so a short-lived watch (one per
	// confirmed action) gives its connection back within about its own
	// lifetime, and a long-lived idle one renews once per WatchWait.
	wait := min(time.Second, s.watchWait)
	for {
		ev, idx, err := read(wctx, index, wait)
		wait = min(2*wait, s.watchWait)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, coord.ErrClosed) || s.life.Ended() {
			q.Send(coord.Event{Err: coord.ErrClosed})
			return
		}
		if err != nil { // the agent is away: try again
			select {
			case <-wctx.Done():
				continue
			case <-time.After(backoff):
				backoff = min(2*backoff, 2*time.Second)
				continue
			}
		}
		backoff = 50 * time.Millisecond
		if idx < index { // the index went backwards (a snapshot restore): start over
			idx = 0
		}
		index = max(idx, 1)
		if !same(ev, last) || ev.Err != nil {
			q.Send(ev)
			last = ev
		}
		if ev.Err != nil {
			return
		}
	}
}
