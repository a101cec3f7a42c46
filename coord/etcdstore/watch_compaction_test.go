package etcdstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/coord/etcdstore"
)

// A watch whose revision was compacted away reads the node again and goes
// on from there: the consumer gets the current state, then later changes.
func TestWatchResumesAfterCompaction(t *testing.T) {
	ctx, s := embeddedStore(t, "compact", 30*time.Second)
	if _, err := s.Create(ctx, "/n", []byte("0"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	rev, err := s.DataRevision(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := s.Set(ctx, "/n", []byte(fmt.Sprint(i)), coord.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	// Resume a watch from the old revision, as after a long disconnect.
	resyncs := 0
	ch := s.ResumeDataWatch(ctx, "/n", rev, &resyncs)
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

// A watch whose etcd watch started before the revision its state was read
// at does not deliver the changes in between after that state: the next
// event is the next change, not an older value.
func TestWatchSkipsEventsBeforeItsRead(t *testing.T) {
	ctx, s := embeddedStore(t, "skew", 30*time.Second)
	if _, err := s.Create(ctx, "/n", []byte("0"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	rev, err := s.DataRevision(ctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := s.Set(ctx, "/n", []byte(fmt.Sprint(i)), coord.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := s.SkewedDataWatch(ctx, "/n", rev)
	if err != nil {
		t.Fatal(err)
	}
	firstThenNext(ctx, t, s, ch, "3", "4")
}

// firstThenNext checks that the first event of ch, a data watch of /n,
// holds first; then sets /n to next and checks the next event holds it.
func firstThenNext(ctx context.Context, t *testing.T, s *etcdstore.Store, ch <-chan coord.Event, first, next string) {
	t.Helper()
	for _, want := range []string{first, next} {
		if want == next {
			if _, err := s.Set(ctx, "/n", []byte(next), coord.AnyVersion); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case ev := <-ch:
			if ev.Err != nil || string(ev.Data) != want {
				t.Fatalf("event %q (%v), want %q: an older state was delivered", ev.Data, ev.Err, want)
			}
		case <-ctx.Done():
			t.Fatalf("no event %q", want)
		}
	}
}

// A watch whose read was answered before the server made its etcd watch
// reads again: its first event is the state after the write in between,
// not the older one (whose successor the etcd watch would never deliver).
func TestWatchReadsAgainAfterAnEarlyRead(t *testing.T) {
	ctx, s := embeddedStore(t, "early", 30*time.Second)
	if _, err := s.Create(ctx, "/n", []byte("0"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	ch, err := s.EarlyReadDataWatch(ctx, "/n", func() {
		if _, err := s.Set(ctx, "/n", []byte("1"), coord.AnyVersion); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	firstThenNext(ctx, t, s, ch, "1", "2")
}

// A children watch resumed after its revision was compacted away reads the
// children again and forgets those deleted meanwhile: later events show
// the set as it is, not the old one with the new child added.
func TestChildrenWatchResumesAfterCompaction(t *testing.T) {
	ctx, s := embeddedStore(t, "compact", 30*time.Second)
	for _, p := range []string{"/d", "/d/a", "/d/b"} {
		if _, err := s.Create(ctx, p, nil, coord.Persistent); err != nil {
			t.Fatal(err)
		}
	}
	kids, rev, err := s.ChildrenRevision(ctx, "/d")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/d/a", "/d/b"} {
		if err := s.Delete(ctx, p, coord.AnyVersion); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(ctx, "/d/c", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	resyncs := 0
	ch := s.ResumeChildrenWatch(ctx, "/d", kids, rev, &resyncs)
	// The state read again after the compaction, then a change after it.
	for ev := range ch {
		if ev.Err != nil {
			t.Fatal(ev.Err)
		}
		if fmt.Sprint(ev.Children) == "[c]" {
			break
		}
	}
	if _, err := s.Create(ctx, "/d/e", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev := <-ch:
			if ev.Err != nil {
				t.Fatal(ev.Err)
			}
			got := fmt.Sprint(ev.Children)
			if got == "[c e]" {
				if resyncs == 0 {
					t.Fatal("the compacted revision did not make the watch read again")
				}
				return
			}
			if got != "[a b]" && got != "[c]" {
				t.Fatalf("children after a resync: %s (deleted children kept?)", got)
			}
		case <-ctx.Done():
			t.Fatal("never saw [c e]")
		}
	}
}

// A scan's pages are read at the revision of its first page, so they are
// one snapshot: children deleted and created meanwhile do not show. If that
// revision is compacted during the scan, the rest is read at the newest
// one, and every child there all along is still passed once.
func TestScanChildrenSnapshotAndCompaction(t *testing.T) {
	ctx, s := embeddedStore(t, "scan", 60*time.Second)
	if _, err := s.Create(ctx, "/d", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	n := 3 * coord.ScanBatch
	var ops []coord.Op
	for i := range n {
		ops = append(ops, coord.CreateOp(fmt.Sprintf("/d/k%05d", i), nil, coord.Persistent))
	}
	batches, err := coord.Batches(ops, s.Limits())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		if _, err := s.Txn(ctx, b...); err != nil {
			t.Fatal(err)
		}
	}
	for _, compact := range []bool{false, true} {
		seen, calls := map[string]int{}, 0
		err := s.ScanChildren(ctx, "/d", func(names []string) error {
			for _, name := range names {
				seen[name]++
			}
			calls++
			if calls > 1 {
				return nil
			}
			// Behind the scan and ahead of it.
			for _, p := range []string{"/d/k00010", "/d/k02990"} {
				if err := s.Delete(ctx, p, coord.AnyVersion); err != nil {
					return err
				}
				if _, err := s.Create(ctx, p+"-new", nil, coord.Persistent); err != nil {
					return err
				}
			}
			if compact {
				return s.Compact(ctx)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("compact %v: %v", compact, err)
		}
		if calls != 3 {
			t.Fatalf("compact %v: %d pages, want 3", compact, calls)
		}
		for name, k := range seen {
			if k != 1 {
				t.Fatalf("compact %v: %s passed %d times", compact, name, k)
			}
		}
		for i := range n {
			name := fmt.Sprintf("k%05d", i)
			if name == "k00010" || name == "k02990" {
				continue
			}
			if seen[name] != 1 {
				t.Fatalf("compact %v: %s, there all along, passed %d times", compact, name, seen[name])
			}
		}
		// At one revision, the scan saw neither the deletes nor the creates;
		// read on after the compaction, it sees those ahead of it.
		if ahead := seen["k02990"] == 0 && seen["k02990-new"] == 1; ahead != compact {
			t.Fatalf("compact %v: the changes ahead of the scan were seen: %v (want %v)", compact, ahead, compact)
		}
		if !compact && (seen["k00010"] != 1 || seen["k00010-new"] != 0) {
			t.Fatalf("the scan at one revision saw a change behind it")
		}
		// Back to n children named k.
		for _, p := range []string{"/d/k00010", "/d/k02990"} {
			if err := s.Delete(ctx, p+"-new", coord.AnyVersion); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Create(ctx, p, nil, coord.Persistent); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// embeddedStore starts an etcd server of the test's own and returns a
// store on it under prefix, with a context bounding the test to limit;
// both are closed when the test ends.
func embeddedStore(t *testing.T, prefix string, limit time.Duration) (context.Context, *etcdstore.Store) {
	t.Helper()
	srv, err := etcdembed.Start(t.TempDir(), etcdembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	t.Cleanup(cancel)
	s, err := etcdstore.New(ctx, srv.Config(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return ctx, s
}
