package zkstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/testenv"
)

// Watches cancelled by their callers do not pile up in the connection: 500
// watches of one path, each cancelled, arm one ZooKeeper watch of each
// kind, and every one of them still sees the change made after it was armed.
func TestWatchesShareOneZooKeeperWatch(t *testing.T) {
	addr := testenv.Addr(t, "zk")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := New(ctx, Config{Servers: []string{addr}, Chroot: fmt.Sprintf("/coordtest/share-%d", time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Create(ctx, "/n", []byte("0"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := range n {
		wctx, wcancel := context.WithCancel(ctx)
		data, err := s.WatchData(wctx, "/n")
		if err != nil {
			t.Fatal(err)
		}
		kids, err := s.WatchChildren(wctx, "/n")
		if err != nil {
			t.Fatal(err)
		}
		<-data
		<-kids
		if i < n-1 {
			wcancel()
		} else {
			defer wcancel()
			// The last one sees the change.
			if _, err := s.Set(ctx, "/n", []byte("1"), coord.AnyVersion); err != nil {
				t.Fatal(err)
			}
			select {
			case ev := <-data:
				if string(ev.Data) != "1" {
					t.Fatalf("event %+v, want data 1", ev)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no event after the change")
			}
		}
	}
	s.watches.mu.Lock()
	armed := s.watches.armed
	s.watches.mu.Unlock()
	// One data and one children watch, and after the Set one more data
	// watch re-armed by the live watch.
	if armed > 4 {
		t.Fatalf("%d watches of one path armed %d ZooKeeper watches", 2*n, armed)
	}
}
