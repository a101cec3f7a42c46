package etcdstore

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/watchq"
)

// Hooks for the external tests, which start the server with etcdembed (an
// internal test cannot: etcdembed imports etcdstore).

// DataRevision is the revision at which path's data was read.
func (s *Store) DataRevision(ctx context.Context, path string) (int64, error) {
	_, rev, err := s.readData(ctx, path)
	return rev, err
}

// ResumeDataWatch runs a data watch of path from revision rev, as a watch
// does after a long disconnect, and counts its resyncs in *resyncs.
func (s *Store) ResumeDataWatch(ctx context.Context, path string, rev int64, resyncs *int) <-chan coord.Event {
	q, ch := watchq.New()
	go s.loop(ctx, q, rev, func(c context.Context, rev int64) []clientv3.WatchChan {
		return []clientv3.WatchChan{s.cli.Watch(c, s.nodeKey(path), clientv3.WithRev(rev+1))}
	}, func(_ int, e *clientv3.Event) (coord.Event, bool) {
		return coord.Event{Path: path, Exists: true, Data: e.Kv.Value, Stat: statOf(e.Kv.Version, e.Kv.Lease, e.Kv.CreateRevision)}, true
	}, func(c context.Context) (coord.Event, int64, error) {
		*resyncs++
		return s.readData(c, path)
	})
	return ch
}

// Compact compacts the server's history up to the current revision.
func (s *Store) Compact(ctx context.Context) error {
	resp, err := s.cli.Get(ctx, "compact-probe")
	if err != nil {
		return err
	}
	_, err = s.cli.Compact(ctx, resp.Header.Revision)
	return err
}

// LoseNextReply makes the next transaction the store commits get applied
// and its answer lost, as when the connection dies in between; then, at
// that instant, runs then.
func LoseNextReply(s *Store, then func()) { s.loseReply.Store(&then) }

// ResumeChildrenWatch runs a children watch of path from revision rev,
// starting from the children it had then (kids), as after a long
// disconnect, and counts its resyncs in *resyncs.
func (s *Store) ResumeChildrenWatch(ctx context.Context, path string, kids []string, rev int64, resyncs *int) <-chan coord.Event {
	return s.watchKidsFrom(ctx, path, coord.Event{Path: path, Exists: true, Children: kids}, rev, resyncs)
}

// ChildrenRevision is the revision at which path's children were read.
func (s *Store) ChildrenRevision(ctx context.Context, path string) ([]string, int64, error) {
	ev, rev, err := s.readKids(ctx, path)
	return ev.Children, rev, err
}

// DropNextWrite makes the next transaction the store commits get lost on
// its way to the server, as when the connection dies before it is sent on.
func DropNextWrite(s *Store) { s.dropWrite.Store(true) }
