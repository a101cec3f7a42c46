package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/fanout"
)

// ManyChildren is how many children the Scale/ManyChildren case makes under
// one node.
var ManyChildren = 100_000

// createMany creates the persistent nodes paths (their parents must exist)
// in transactions as large as the store's Limits allow, a few at once.
func createMany(ctx context.Context, t *testing.T, st coord.Store, paths []string) {
	t.Helper()
	ops := make([]coord.Op, len(paths))
	for i, p := range paths {
		ops[i] = coord.CreateOp(p, nil, coord.Persistent)
	}
	batches, err := coord.Batches(ops, st.Limits())
	must(t, err)
	err = fanout.Each(ctx, len(batches), 4, func(ctx context.Context, i int) error {
		_, err := st.Txn(ctx, batches[i]...)
		return err
	})
	if err != nil {
		t.Fatalf("creating %d nodes in %d transactions: %v", len(paths), len(batches), err)
	}
}

// plain hides every method of a store but those of coord.Store, so that
// coord.ScanChildren takes its fallback.
type plain struct{ coord.Store }

// scanAll scans the children of path and returns them, checking the
// batches' sizes and order.
func scanAll(ctx context.Context, t *testing.T, st coord.Store, path string) ([]string, error) {
	t.Helper()
	var all []string
	err := coord.ScanChildren(ctx, st, path, func(names []string) error {
		if len(names) == 0 || len(names) > coord.ScanBatch {
			t.Errorf("a batch of %d names (from 1 to %d)", len(names), coord.ScanBatch)
		}
		all = append(all, names...)
		return nil
	})
	for i := 1; i < len(all); i++ {
		if all[i-1] >= all[i] {
			t.Fatalf("names out of order or repeated: %q then %q", all[i-1], all[i])
		}
	}
	return all, err
}

// ScanChildren passes every child once, sorted, in batches of at most
// ScanBatch (etcd's pages, or the fallback on one Children call: both must
// give what Children gives), and nothing of siblings or grandchildren; a
// missing node is ErrNoNode; a childless one calls fn never; fn's error ends
// the scan and comes back as it is.
func testChildrenScan(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	for _, p := range []string{"/d", "/dd", "/empty"} {
		_, err := st.Create(ctx, p, nil, coord.Persistent)
		must(t, err)
	}
	// Two full pages and one of a single name; names that are prefixes of
	// others sit at the page boundaries.
	n := 2*coord.ScanBatch + 1
	var paths []string
	for i := range n {
		name := fmt.Sprintf("k%05d", i/2)
		if i%2 == 1 {
			name += "x"
		}
		paths = append(paths, "/d/"+name)
	}
	paths = append(paths, "/dd/sibling")
	createMany(ctx, t, st, paths)
	_, err := st.Create(ctx, "/d/k00000/grandchild", nil, coord.Persistent)
	must(t, err)

	want, err := st.Children(ctx, "/d")
	must(t, err)
	if len(want) != n {
		t.Fatalf("Children gave %d names, want %d", len(want), n)
	}
	for _, view := range []coord.Store{st, plain{st}} {
		got, err := scanAll(ctx, t, view, "/d")
		must(t, err)
		if !slices.Equal(got, want) {
			t.Fatalf("%T: ScanChildren gave %d names, Children %d; first difference at %d", view, len(got), len(want), firstDiff(got, want))
		}
		calls := 0
		err = coord.ScanChildren(ctx, view, "/empty", func([]string) error { calls++; return nil })
		must(t, err)
		err = coord.ScanChildren(ctx, view, "/none", func([]string) error { calls++; return nil })
		is(t, err, coord.ErrNoNode)
		wantPathError(t, err, "/none")
		if calls != 0 {
			t.Fatalf("%T: fn called %d times for a node without children and a missing one", view, calls)
		}
		stop := errors.New("stop here")
		err = coord.ScanChildren(ctx, view, "/d", func([]string) error { calls++; return stop })
		if err != stop || calls != 1 {
			t.Fatalf("%T: fn's error came back as %v after %d calls, want it as it is after 1", view, err, calls)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = coord.ScanChildren(cctx, st, "/d", func([]string) error { t.Error("fn called with a cancelled context"); return nil })
	is(t, err, context.Canceled)
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Children changed during a scan: those that exist all through it are
// passed once each, in order; none is passed twice.
func testChildrenScanChanging(t *testing.T, s *suite) {
	st, other := s.open(t), s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/d", nil, coord.Persistent)
	must(t, err)
	n := 3 * coord.ScanBatch
	var paths []string
	for i := range n {
		paths = append(paths, fmt.Sprintf("/d/k%05d", 2*i))
	}
	createMany(ctx, t, st, paths)
	stays := map[string]bool{}
	for i := range n {
		stays[fmt.Sprintf("k%05d", 2*i)] = i%3 != 0
	}
	for _, view := range []coord.Store{st, plain{st}} {
		seen := map[string]int{}
		first := true
		err := coord.ScanChildren(ctx, view, "/d", func(names []string) error {
			for _, name := range names {
				seen[name]++
			}
			if !first {
				return nil
			}
			first = false
			// Behind the scan and ahead of it: every third child goes and
			// comes back, new ones come between the others.
			var ops []coord.Op
			for i := range n {
				name := fmt.Sprintf("k%05d", 2*i)
				if !stays[name] {
					ops = append(ops, coord.DeleteOp("/d/"+name, coord.AnyVersion))
				}
				if i%5 == 0 {
					ops = append(ops, coord.CreateOp(fmt.Sprintf("/d/k%05d", 2*i+1), nil, coord.Persistent))
				}
			}
			batches, err := coord.Batches(ops, other.Limits())
			must(t, err)
			for _, b := range batches {
				if _, err := other.Txn(ctx, b...); err != nil {
					return err
				}
			}
			return nil
		})
		must(t, err)
		for name, ok := range stays {
			if ok && seen[name] != 1 {
				t.Fatalf("%T: %s, there all through the scan, passed %d times", view, name, seen[name])
			}
		}
		for name, times := range seen {
			if times != 1 {
				t.Fatalf("%T: %s passed %d times", view, name, times)
			}
		}
		// Put the tree back for the next view.
		must(t, coord.DeleteAll(ctx, st, "/d"))
		_, err = st.Create(ctx, "/d", nil, coord.Persistent)
		must(t, err)
		createMany(ctx, t, st, paths)
	}
}

// counting counts the requests made through it.
type counting struct {
	coord.Store
	calls atomic.Int64
}

func (c *counting) Txn(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	c.calls.Add(1)
	return c.Store.Txn(ctx, ops...)
}

func (c *counting) Delete(ctx context.Context, path string, version int64) error {
	c.calls.Add(1)
	return c.Store.Delete(ctx, path, version)
}

func (c *counting) Children(ctx context.Context, path string) ([]string, error) {
	c.calls.Add(1)
	return c.Store.Children(ctx, path)
}

// refusing fails every Txn with err.
type refusing struct {
	coord.Store
	err error
}

func (r refusing) Txn(context.Context, ...coord.Op) ([]coord.OpResult, error) { return nil, r.err }

// DeleteAll of a wide tree deletes its leaves in transactions: a node with
// 2,000 leaves and, among them, subtrees (an ephemeral child of another
// session's, a deep one) goes in far fewer requests than nodes, and
// everything is gone.
func testDeleteAllBatched(t *testing.T, s *suite) {
	st, owner := s.open(t), s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/r", nil, coord.Persistent)
	must(t, err)
	n := 2000
	var paths []string
	for i := range n {
		paths = append(paths, fmt.Sprintf("/r/%04d", i))
	}
	createMany(ctx, t, st, paths)
	for _, p := range []string{"/r/0000/a", "/r/0999/b/c/d", "/r/1999/e", "/r/1999/f"} {
		_, err := coord.CreateAll(ctx, st, p, nil, coord.Persistent)
		must(t, err)
	}
	_, err = owner.Create(ctx, "/r/1000/eph", nil, coord.Ephemeral)
	must(t, err)
	_, err = st.Create(ctx, "/keep", nil, coord.Persistent)
	must(t, err)

	nodes := 0
	must(t, coord.Walk(ctx, st, "/r", func(string, []byte, coord.Stat) error { nodes++; return nil }))
	if want := 1 + n + 7; nodes != want {
		t.Fatalf("Walk saw %d nodes, want %d", nodes, want)
	}
	// A transaction refused for another reason fails DeleteAll with it.
	refused := errors.New("refused by the test")
	err = coord.DeleteAll(ctx, refusing{st, refused}, "/r")
	if !errors.Is(err, refused) {
		t.Fatalf("DeleteAll through a store refusing transactions: %v, want %v", err, refused)
	}
	c := &counting{Store: st}
	must(t, coord.DeleteAll(ctx, c, "/r"))
	if _, ok, err := st.Exists(ctx, "/r"); err != nil || ok {
		t.Fatalf("/r after DeleteAll: exists %v, %v", ok, err)
	}
	if _, ok, err := st.Exists(ctx, "/keep"); err != nil || !ok {
		t.Fatalf("/keep after DeleteAll of /r: exists %v, %v", ok, err)
	}
	// One by one it is 2 requests a node (list, delete): over 4,000.
	if calls := c.calls.Load(); calls > int64(nodes)/5 {
		t.Fatalf("DeleteAll of %d nodes made %d requests, want at most %d", nodes, calls, nodes/5)
	}
}

// A node with ManyChildren children (100,000) works: the children are
// created in transactions, listed whole and by ScanChildren, and deleted
// with DeleteAll. (Walk would list each of them for children of its own:
// 100,000 requests.)
func testScaleManyChildren(t *testing.T, s *suite) {
	st := s.open(t)
	// A liveness bound: on a loaded machine Consul takes minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*Timeout)
	defer cancel()
	start := time.Now()
	_, err := st.Create(ctx, "/big", nil, coord.Persistent)
	must(t, err)
	paths := make([]string, ManyChildren)
	for i := range paths {
		paths[i] = fmt.Sprintf("/big/%010d", i)
	}
	createMany(ctx, t, st, paths)
	t.Logf("created %d children in %v", ManyChildren, time.Since(start))
	start = time.Now()
	kids, err := st.Children(ctx, "/big")
	must(t, err)
	if len(kids) != ManyChildren || kids[0] != "0000000000" || kids[len(kids)-1] != fmt.Sprintf("%010d", ManyChildren-1) {
		t.Fatalf("Children of /big: %d names, want %d", len(kids), ManyChildren)
	}
	scanned, err := scanAll(ctx, t, st, "/big")
	must(t, err)
	if !slices.Equal(scanned, kids) {
		t.Fatalf("ScanChildren gave %d names, Children %d; first difference at %d", len(scanned), len(kids), firstDiff(scanned, kids))
	}
	t.Logf("listed them twice in %v", time.Since(start))
	start = time.Now()
	must(t, coord.DeleteAll(ctx, st, "/big"))
	t.Logf("deleted them in %v", time.Since(start))
	if _, ok, err := st.Exists(ctx, "/big"); err != nil || ok {
		t.Fatalf("/big after DeleteAll: exists %v, %v", ok, err)
	}
}
