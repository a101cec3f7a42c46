package etcdstore

import (
	"context"
	"errors"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/watchq"
)

// WatchData implements coord.Store. The watch starts at the revision of the
// read that gives the first event, so no change is missed. If etcd compacts
// that revision away, or the stream breaks, the node is read again and the
// watch resumes from the new read: the consumer sees the current state.
func (s *Store) WatchData(ctx context.Context, path string) (<-chan coord.Event, error) {
	if err := coord.CheckCall(ctx, "watch", path, nil, 0, 0, s.limits); err != nil {
		return nil, err
	}
	ev, rev, err := s.readData(ctx, path)
	if err != nil {
		return nil, coord.Errorf("watch", path, err)
	}
	q, ch := watchq.New()
	q.Send(ev)
	go s.loop(ctx, q, rev, func(c context.Context, rev int64) []clientv3.WatchChan {
		return []clientv3.WatchChan{s.cli.Watch(c, s.nodeKey(path), clientv3.WithRev(rev+1))}
	}, func(_ int, e *clientv3.Event) (coord.Event, bool) {
		if e.Type == clientv3.EventTypeDelete {
			return coord.Event{Path: path}, true
		}
		return coord.Event{Path: path, Exists: true, Data: e.Kv.Value, Stat: statOf(e.Kv.Version, e.Kv.Lease, e.Kv.CreateRevision)}, true
	}, func(c context.Context) (coord.Event, int64, error) {
		return s.readData(c, path)
	})
	return ch, nil
}

func (s *Store) readData(ctx context.Context, path string) (coord.Event, int64, error) {
	c, cancel, err := s.call(ctx)
	if err != nil {
		return coord.Event{}, 0, err
	}
	defer cancel()
	if path == "/" {
		resp, err := s.cli.Get(c, s.prefix+"/", clientv3.WithCountOnly())
		if err != nil {
			return coord.Event{}, 0, mapErr(ctx, err)
		}
		return coord.Event{Path: path, Exists: true}, resp.Header.Revision, nil
	}
	resp, err := s.cli.Get(c, s.nodeKey(path))
	if err != nil {
		return coord.Event{}, 0, mapErr(ctx, err)
	}
	ev := coord.Event{Path: path}
	if len(resp.Kvs) > 0 {
		kv := resp.Kvs[0]
		ev = coord.Event{Path: path, Exists: true, Data: kv.Value, Stat: statOf(kv.Version, kv.Lease, kv.CreateRevision)}
	}
	return ev, resp.Header.Revision, nil
}

// WatchChildren implements coord.Store, with the same resumption as WatchData.
func (s *Store) WatchChildren(ctx context.Context, path string) (<-chan coord.Event, error) {
	if err := coord.CheckCall(ctx, "watch", path, nil, 0, 0, s.limits); err != nil {
		return nil, err
	}
	ev, rev, err := s.readKids(ctx, path)
	if err != nil {
		return nil, coord.Errorf("watch", path, err)
	}
	if !ev.Exists {
		return nil, coord.Errorf("watch", path, coord.ErrNoNode)
	}
	return s.watchKidsFrom(ctx, path, ev, rev, nil), nil
}

// watchKidsFrom runs a children watch of path whose state ev was read at
// revision rev; resyncs, when not nil, counts the reads after a compaction.
func (s *Store) watchKidsFrom(ctx context.Context, path string, ev coord.Event, rev int64, resyncs *int) <-chan coord.Event {
	kids := map[string]bool{}
	for _, k := range ev.Children {
		kids[k] = true
	}
	cp := s.childPrefix(path)
	q, ch := watchq.New()
	q.Send(ev)
	go s.loop(ctx, q, rev, func(c context.Context, rev int64) []clientv3.WatchChan {
		ws := []clientv3.WatchChan{s.cli.Watch(c, cp, clientv3.WithPrefix(), clientv3.WithRev(rev+1))}
		if path != "/" {
			ws = append(ws, s.cli.Watch(c, s.nodeKey(path), clientv3.WithRev(rev+1), clientv3.WithFilterPut()))
		}
		return ws
	}, func(which int, e *clientv3.Event) (coord.Event, bool) {
		if which == 1 { // the node itself was deleted
			return coord.Event{Path: path, Err: coord.Errorf("watch", path, coord.ErrNoNode)}, true
		}
		name := string(e.Kv.Key[len(cp):])
		switch {
		case e.Type == clientv3.EventTypeDelete && kids[name]:
			delete(kids, name)
		case e.Type == clientv3.EventTypePut && !kids[name]:
			kids[name] = true
		default:
			return coord.Event{}, false // a child's data changed: not a children event
		}
		return coord.Event{Path: path, Exists: true, Children: sortedKeys(kids)}, true
	}, func(c context.Context) (coord.Event, int64, error) {
		if resyncs != nil {
			*resyncs++
		}
		ev, rev, err := s.readKids(c, path)
		if err == nil && ev.Exists {
			clear(kids)
			for _, k := range ev.Children {
				kids[k] = true
			}
		}
		if err == nil && !ev.Exists {
			ev.Err = coord.Errorf("watch", path, coord.ErrNoNode)
		}
		return ev, rev, err
	})
	return ch
}

func (s *Store) readKids(ctx context.Context, path string) (coord.Event, int64, error) {
	c, cancel, err := s.call(ctx)
	if err != nil {
		return coord.Event{}, 0, err
	}
	defer cancel()
	kids, rev, err := s.readChildren(c, path)
	if errors.Is(err, coord.ErrNoNode) {
		return coord.Event{Path: path}, rev, nil
	}
	if err != nil {
		return coord.Event{}, 0, mapErr(ctx, err)
	}
	return coord.Event{Path: path, Exists: true, Children: kids}, rev, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// loop runs a watch: arm opens the etcd watches from a revision, apply turns
// an etcd event into a coord event (false: nothing to send), resync reads the
// state again after a compaction or a broken stream.
func (s *Store) loop(ctx context.Context, q *watchq.Q, rev int64,
	arm func(context.Context, int64) []clientv3.WatchChan,
	apply func(int, *clientv3.Event) (coord.Event, bool),
	resync func(context.Context) (coord.Event, int64, error)) {
	defer q.Close()
	for {
		wctx, cancel := context.WithCancel(ctx)
		chans := arm(wctx, rev)
		stop := s.pump(ctx, q, chans, apply)
		cancel()
		if stop {
			return
		}
		// Read the state again and resume from there.
		for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
			ev, r, err := resync(ctx)
			if err == nil {
				q.Send(ev)
				if ev.Err != nil {
					return
				}
				rev = r
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-s.life.Done():
				q.Send(coord.Event{Err: coord.ErrClosed})
				return
			case <-time.After(backoff):
			}
		}
	}
}

// pump forwards events until the watches break (returns false: resync) or
// the watch ends (returns true).
func (s *Store) pump(ctx context.Context, q *watchq.Q, chans []clientv3.WatchChan, apply func(int, *clientv3.Event) (coord.Event, bool)) bool {
	var second clientv3.WatchChan
	if len(chans) > 1 {
		second = chans[1]
	}
	for {
		var wr clientv3.WatchResponse
		var ok bool
		which := 0
		select {
		case <-ctx.Done():
			return true
		case <-s.life.Done():
			q.Send(coord.Event{Err: coord.ErrClosed})
			return true
		case wr, ok = <-chans[0]:
		case wr, ok = <-second:
			which = 1
		}
		if !ok || wr.Canceled || wr.Err() != nil || wr.CompactRevision != 0 {
			return ctx.Err() != nil // canceled: stop; otherwise resync
		}
		for _, e := range wr.Events {
			if ev, send := apply(which, e); send {
				q.Send(ev)
				if ev.Err != nil {
					return true
				}
			}
		}
	}
}
