package zkstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
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
	if armed < 3 || armed > 4 {
		t.Fatalf("%d watches of one path armed %d ZooKeeper watches, want 3 or 4 (a data and a children watch, and the data watch armed again after it fired)", 2*n, armed)
	}
}

// syncCounter counts the sync requests (op 9) a connection sends.
type syncCounter struct {
	net.Conn
	mu    sync.Mutex
	f     framer
	syncs *atomic.Int32
}

func (c *syncCounter) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.f.feed(b, func(index int, head []byte) {
		if index > 0 && int32(binary.BigEndian.Uint32(head[4:8])) == 9 {
			c.syncs.Add(1)
		}
	})
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// Reads sync the server with the leader first, unless StaleReads: what
// goes on the wire shows it (a single server cannot show a stale read).
func TestReadsSyncFirst(t *testing.T) {
	addr := testenv.Addr(t, "zk")
	for _, stale := range []bool{false, true} {
		var syncs atomic.Int32
		dial := func(network, address string, timeout time.Duration) (net.Conn, error) {
			c, err := net.DialTimeout(network, address, timeout)
			if err != nil {
				return nil, err
			}
			return &syncCounter{Conn: c, syncs: &syncs}, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s, err := New(ctx, Config{Servers: []string{addr}, Dialer: dial, StaleReads: stale,
			Chroot: fmt.Sprintf("/coordtest/sync-%d", time.Now().UnixNano())})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, "/n", nil, coord.Persistent); err != nil {
			t.Fatal(err)
		}
		before := syncs.Load()
		_, _, err1 := s.Get(ctx, "/n")
		_, _, err2 := s.Exists(ctx, "/n")
		_, err3 := s.Children(ctx, "/n")
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatal(err)
		}
		got := syncs.Load() - before
		// A transaction reads back the Stat of the nodes it checks on the
		// connection the multi ran on: the reads come after the multi
		// there, no sync is needed (a fenced write is two round trips, not
		// three).
		before = syncs.Load()
		res, err := s.Txn(ctx, coord.CheckOp("/n", 0), coord.CreateOp("/n/c", nil, coord.Persistent))
		if err != nil {
			t.Fatal(err)
		}
		txnSyncs := syncs.Load() - before
		s.Close()
		cancel()
		want := int32(3)
		if stale {
			want = 0
		}
		if got != want {
			t.Fatalf("StaleReads %v: %d syncs for three reads, want %d", stale, got, want)
		}
		if txnSyncs != 0 || res[0].Stat.Version != 0 || res[0].Stat.Ephemeral {
			t.Fatalf("StaleReads %v: a txn with a check sent %d syncs, check result %+v; want none, version 0", stale, txnSyncs, res[0].Stat)
		}
	}
}
