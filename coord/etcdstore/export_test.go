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
	open := s.dataOpen(path)
	q, ch := watchq.New()
	wctx, cancel := context.WithCancel(ctx)
	a := &armed{chans: open(wctx, rev), cancel: cancel, rev: rev}
	go s.loop(ctx, q, a, open, dataEvent(path), func(c context.Context) (coord.Event, int64, error) {
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

// LoseNextReply makes the answer of the next transaction the store commits
// and the server applies get lost, as when the connection dies in between;
// then, at that instant, runs then. (A commit the server refuses, such as
// one planned on state that moved since, is left alone.)
func LoseNextReply(s *Store, then func()) { s.loseReply.Store(&then) }

// LoseNextRefusal makes the answer of the next transaction the store
// commits and the server refuses get lost; then, at that instant, runs then.
func LoseNextRefusal(s *Store, then func()) { s.loseRefusal.Store(&then) }

// ResumeChildrenWatch runs a children watch of path from revision rev,
// starting from the children it had then (kids), as after a long
// disconnect, and counts its resyncs in *resyncs.
func (s *Store) ResumeChildrenWatch(ctx context.Context, path string, kids []string, rev int64, resyncs *int) <-chan coord.Event {
	w := s.kidsWatch(path, resyncs)
	wctx, cancel := context.WithCancel(ctx)
	a := &armed{chans: w.open(wctx, rev), cancel: cancel, rev: rev}
	return w.run(ctx, a, coord.Event{Path: path, Exists: true, Children: kids})
}

// ChildrenRevision is the revision at which path's children were read.
func (s *Store) ChildrenRevision(ctx context.Context, path string) ([]string, int64, error) {
	ev, rev, err := s.readKids(ctx, path)
	return ev.Children, rev, err
}

// DropNextWrite makes the next transaction the store commits get lost on
// its way to the server, as when the connection dies before it is sent on.
func DropNextWrite(s *Store) { s.dropWrite.Store(true) }

// SkewedDataWatch runs a data watch of path whose etcd watch starts after
// revision from, older than the revision its first state is read at, as a
// children watch's etcd watches are made at revisions older than its read.
func (s *Store) SkewedDataWatch(ctx context.Context, path string, from int64) (<-chan coord.Event, error) {
	first, open := true, s.dataOpen(path)
	skewed := func(c context.Context, rev int64) []clientv3.WatchChan {
		if first {
			first, rev = false, from
		}
		return open(c, rev)
	}
	return s.runData(ctx, path, skewed, s.dataRead(path))
}

// EarlyReadDataWatch runs a data watch of path whose first read answers
// with the state read before between ran (a write, say) and before the
// watch was made, as a read the server answers before it makes the watch.
func (s *Store) EarlyReadDataWatch(ctx context.Context, path string, between func()) (<-chan coord.Event, error) {
	ev0, rev0, err := s.readData(ctx, path)
	if err != nil {
		return nil, err
	}
	between()
	early, read := true, s.dataRead(path)
	readEarly := func(c context.Context) (coord.Event, int64, error) {
		if early {
			early = false
			return ev0, rev0, nil
		}
		return read(c)
	}
	return s.runData(ctx, path, s.dataOpen(path), readEarly)
}

// BeforeNextCommit runs f just before the store's next commit is sent, after
// it was planned: another client's write lands in between.
func BeforeNextCommit(s *Store, f func()) { s.beforeCommit.Store(&f) }
