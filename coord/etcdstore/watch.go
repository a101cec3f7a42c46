package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/watchq"
)

// WatchData implements coord.Store. The watch is made from the server's
// current revision while the node is read, so the watch is in step with
// the server from the start and no change after the read is missed (see
// sync). If the stream breaks, or etcd compacts the revision a resumed
// watch needs, the watch is made again and the node read again: the
// consumer sees the current state.
func (s *Store) WatchData(ctx context.Context, path string) (<-chan coord.Event, error) {
	if err := coord.CheckCall(ctx, "watch", path, nil, 0, 0, s.limits); err != nil {
		return nil, err
	}
	ch, err := s.runData(ctx, path, s.dataOpen(path), s.dataRead(path))
	if err != nil {
		return nil, coord.Errorf("watch", path, err)
	}
	return ch, nil
}

// dataOpen opens the etcd watch of path's key, from after revision rev
// (0: the server's current one).
func (s *Store) dataOpen(path string) func(context.Context, int64) []clientv3.WatchChan {
	return func(c context.Context, rev int64) []clientv3.WatchChan {
		return []clientv3.WatchChan{s.cli.Watch(c, s.nodeKey(path), watchFrom(rev)...)}
	}
}

// dataRead reads path's node for a data watch.
func (s *Store) dataRead(path string) func(context.Context) (coord.Event, int64, error) {
	return func(c context.Context) (coord.Event, int64, error) { return s.readData(c, path) }
}

// runData runs a data watch of path whose etcd watch open makes and whose
// state read reads.
func (s *Store) runData(ctx context.Context, path string, open func(context.Context, int64) []clientv3.WatchChan,
	read func(context.Context) (coord.Event, int64, error)) (<-chan coord.Event, error) {
	a, ev, err := s.sync(ctx, open, read)
	if err != nil {
		return nil, err
	}
	q, ch := watchq.New()
	q.Send(ev)
	go s.loop(ctx, q, a, open, dataEvent(path), read)
	return ch, nil
}

// dataEvent turns an etcd event of a node's key into a data watch's event.
func dataEvent(path string) func(int, *clientv3.Event) (coord.Event, bool) {
	return func(_ int, e *clientv3.Event) (coord.Event, bool) {
		if e.Type == clientv3.EventTypeDelete {
			return coord.Event{Path: path}, true
		}
		return coord.Event{Path: path, Exists: true, Data: e.Kv.Value, Stat: statOf(e.Kv.Version, e.Kv.Lease, e.Kv.CreateRevision)}, true
	}
}

// watchFrom is the options of a watch that tells when it is made and
// starts after revision rev, or (rev 0) after the server's current one.
func watchFrom(rev int64, opts ...clientv3.OpOption) []clientv3.OpOption {
	opts = append(opts, clientv3.WithCreatedNotify())
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev+1))
	}
	return opts
}

// readData reads path's node and returns it with the revision read.
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

// WatchChildren implements coord.Store, made and resumed as WatchData is.
func (s *Store) WatchChildren(ctx context.Context, path string) (<-chan coord.Event, error) {
	if err := coord.CheckCall(ctx, "watch", path, nil, 0, 0, s.limits); err != nil {
		return nil, err
	}
	w := s.kidsWatch(path, nil)
	a, ev, err := s.sync(ctx, w.open, w.readOnly)
	if err != nil {
		return nil, coord.Errorf("watch", path, err)
	}
	if !ev.Exists {
		a.cancel()
		return nil, coord.Errorf("watch", path, coord.ErrNoNode)
	}
	return w.run(ctx, a, ev), nil
}

// kidsWatch is a children watch of path: the etcd watches it opens (the
// children's prefix, and the node's key for its deletion), how it reads the
// children and turns etcd events into its own.
type kidsWatch struct {
	s       *Store
	path    string
	cp      string          // the children's key prefix
	kids    map[string]bool // the children as last sent
	resyncs *int            // counts the reads after the first, when not nil
}

func (s *Store) kidsWatch(path string, resyncs *int) *kidsWatch {
	return &kidsWatch{s: s, path: path, cp: s.childPrefix(path), kids: map[string]bool{}, resyncs: resyncs}
}

func (w *kidsWatch) open(c context.Context, rev int64) []clientv3.WatchChan {
	ws := []clientv3.WatchChan{w.s.cli.Watch(c, w.cp, watchFrom(rev, clientv3.WithPrefix())...)}
	if w.path != "/" {
		ws = append(ws, w.s.cli.Watch(c, w.s.nodeKey(w.path), watchFrom(rev, clientv3.WithFilterPut())...))
	}
	return ws
}

// readOnly reads the children, as the first event.
func (w *kidsWatch) readOnly(c context.Context) (coord.Event, int64, error) {
	return w.s.readKids(c, w.path)
}

// resync reads the children again after a broken stream: they replace
// those last sent, and a node gone ends the watch.
func (w *kidsWatch) resync(c context.Context) (coord.Event, int64, error) {
	if w.resyncs != nil {
		*w.resyncs++
	}
	ev, rev, err := w.s.readKids(c, w.path)
	if err != nil {
		return ev, rev, err
	}
	if !ev.Exists {
		ev.Err = coord.Errorf("watch", w.path, coord.ErrNoNode)
		return ev, rev, nil
	}
	clear(w.kids)
	for _, k := range ev.Children {
		w.kids[k] = true
	}
	return ev, rev, nil
}

func (w *kidsWatch) apply(which int, e *clientv3.Event) (coord.Event, bool) {
	if which == 1 { // the node itself was deleted
		return coord.Event{Path: w.path, Err: coord.Errorf("watch", w.path, coord.ErrNoNode)}, true
	}
	name := string(e.Kv.Key[len(w.cp):])
	switch {
	case e.Type == clientv3.EventTypeDelete && w.kids[name]:
		delete(w.kids, name)
	case e.Type == clientv3.EventTypePut && !w.kids[name]:
		w.kids[name] = true
	default:
		return coord.Event{}, false // a child's data changed: not a children event
	}
	return coord.Event{Path: w.path, Exists: true, Children: sortedKeys(w.kids)}, true
}

// run sends ev (the children read when a was made) and then the changes
// that a's watches deliver.
func (w *kidsWatch) run(ctx context.Context, a *armed, ev coord.Event) <-chan coord.Event {
	for _, k := range ev.Children {
		w.kids[k] = true
	}
	q, ch := watchq.New()
	q.Send(ev)
	go w.s.loop(ctx, q, a, w.open, w.apply, w.resync)
	return ch
}

// readKids reads the children of path and returns them with the revision
// read; a missing node is an event that does not exist.
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

// armed is a running set of etcd watches of one coord watch, and the
// revision whose state was read for it: pump sends what came after.
type armed struct {
	chans  []clientv3.WatchChan
	cancel context.CancelFunc
	rev    int64
}

// sync opens a coord watch's etcd watches from the server's current
// revision and reads the state (read, a linearizable read) while the
// server makes them. Events at or before the read's revision are in the
// state read, and pump skips them. A watch delivers what comes after the
// revision it was made at, so the read must be at least that: if it was
// answered before the watches were made (its revision lower), the state is
// read once more, now after them. The revision of a linearizable read made
// after the watches is at least theirs and that of every acknowledged
// write. (The revision a watch was made at would not do as the state's: a
// follower that made it may not yet have applied a write the leader
// acknowledged.)
//
// Made the other way round, a read first and a watch from the revision
// after it, a watch starts behind the server as soon as anything was
// written in between (a proxy answering, a writer elsewhere), and etcd
// brings such watches up to date in a loop every 100 ms: the first events
// waited up to 100 ms (a confirmed action's answers, 1 in 50 of them).
func (s *Store) sync(ctx context.Context, open func(context.Context, int64) []clientv3.WatchChan,
	read func(context.Context) (coord.Event, int64, error)) (*armed, coord.Event, error) {
	c, cancelCall, err := s.call(ctx)
	if err != nil {
		return nil, coord.Event{}, err
	}
	defer cancelCall()
	wctx, cancel := context.WithCancel(ctx)
	chans := open(wctx, 0)
	type state struct {
		ev  coord.Event
		rev int64
		err error
	}
	first := make(chan state, 1)
	go func() {
		ev, rev, err := read(c)
		first <- state{ev, rev, err}
	}()
	fail := func(err error) (*armed, coord.Event, error) {
		cancel()
		cancelCall()
		<-first // the read ends with c
		return nil, coord.Event{}, err
	}
	var rev int64
	for _, ch := range chans {
		select {
		case wr, ok := <-ch:
			if !ok || wr.Canceled || wr.Err() != nil || !wr.Created {
				if ctx.Err() != nil {
					return fail(mapErr(ctx, ctx.Err()))
				}
				err := wr.Err()
				if err == nil {
					err = fmt.Errorf("%w: the watch ended as it was made", coord.ErrUnavailable)
				}
				return fail(mapErr(ctx, err))
			}
			rev = max(rev, wr.Header.Revision)
		case <-c.Done():
			return fail(mapErr(ctx, c.Err()))
		case <-s.life.Done():
			return fail(coord.ErrClosed)
		}
	}
	st := <-first
	if st.err == nil && st.rev < rev {
		// Read before the watches were made: read again, after them.
		st.ev, st.rev, st.err = read(c)
		if st.err == nil && st.rev < rev {
			// Cannot be (see above); were it so, the changes between
			// would be missed.
			st.err = fmt.Errorf("%w: the state was read at revision %d, before the watch was made (%d)", coord.ErrUnavailable, st.rev, rev)
		}
	}
	if st.err != nil {
		cancel()
		return nil, coord.Event{}, st.err
	}
	return &armed{chans: chans, cancel: cancel, rev: st.rev}, st.ev, nil
}

// loop runs a coord watch whose etcd watches are a: apply turns an etcd
// event into a coord event (false: nothing to send); when the watches break
// (a lost stream, a compacted start), they are made again with sync and
// read tells the state to send.
func (s *Store) loop(ctx context.Context, q *watchq.Q, a *armed,
	open func(context.Context, int64) []clientv3.WatchChan,
	apply func(int, *clientv3.Event) (coord.Event, bool),
	read func(context.Context) (coord.Event, int64, error)) {
	defer q.Close()
	for {
		stop := s.pump(ctx, q, a, apply)
		a.cancel()
		if stop {
			return
		}
		// Make the watches again and send the state from there.
		for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
			na, ev, err := s.sync(ctx, open, read)
			if err == nil {
				q.Send(ev)
				if ev.Err != nil {
					na.cancel()
					return
				}
				a = na
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

// pump forwards the events after a.rev until the watches break (returns
// false: resync) or the watch ends (returns true).
func (s *Store) pump(ctx context.Context, q *watchq.Q, a *armed, apply func(int, *clientv3.Event) (coord.Event, bool)) bool {
	var second clientv3.WatchChan
	if len(a.chans) > 1 {
		second = a.chans[1]
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
		case wr, ok = <-a.chans[0]:
		case wr, ok = <-second:
			which = 1
		}
		if !ok || wr.Canceled || wr.Err() != nil || wr.CompactRevision != 0 {
			return ctx.Err() != nil // canceled: stop; otherwise resync
		}
		for _, e := range wr.Events {
			if e.Kv.ModRevision <= a.rev {
				continue // in the state read when the watches were made
			}
			if ev, send := apply(which, e); send {
				q.Send(ev)
				if ev.Err != nil {
					return true
				}
			}
		}
	}
}
