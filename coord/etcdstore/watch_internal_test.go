package etcdstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/watchq"
)

// A watch whose revision was compacted away reads the node again and goes
// on from there: the consumer gets the current state, then later changes.
func TestWatchResumesAfterCompaction(t *testing.T) {
	srv, err := StartEmbedded(t.TempDir(), EmbeddedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := New(ctx, srv.Config("compact"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(ctx, "/n", []byte("0"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	_, rev, err := s.readData(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := s.Set(ctx, "/n", []byte(fmt.Sprint(i)), coord.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := s.cli.Get(ctx, s.nodeKey("/n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	// Resume a watch from the old revision, as after a long disconnect.
	q, ch := watchq.New()
	resyncs := 0
	go s.loop(ctx, q, rev, func(c context.Context, rev int64) []clientv3.WatchChan {
		return []clientv3.WatchChan{s.cli.Watch(c, s.nodeKey("/n"), clientv3.WithRev(rev+1))}
	}, func(_ int, e *clientv3.Event) (coord.Event, bool) {
		return coord.Event{Path: "/n", Exists: true, Data: e.Kv.Value, Stat: statOf(e.Kv.Version, e.Kv.Lease)}, true
	}, func(c context.Context) (coord.Event, int64, error) {
		resyncs++
		return s.readData(c, "/n")
	})
	want := func(data string) {
		t.Helper()
		for {
			select {
			case ev := <-ch:
				if ev.Err != nil {
					t.Fatal(ev.Err)
				}
				if string(ev.Data) == data {
					return
				}
			case <-ctx.Done():
				t.Fatalf("never saw %q", data)
			}
		}
	}
	want("5")
	if _, err := s.Set(ctx, "/n", []byte("after"), coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	want("after")
	if resyncs == 0 {
		t.Fatal("the compacted revision did not make the watch read again")
	}
}
