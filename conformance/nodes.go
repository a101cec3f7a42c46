package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/coordkit/coord/coord"
)

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// is fails the test unless err wraps want.
func is(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want one wrapping %v", err, want)
	}
}

// wantPathError checks that err is a *coord.PathError naming path.
func wantPathError(t *testing.T, err error, path string) {
	t.Helper()
	var pe *coord.PathError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *coord.PathError", err, err)
	}
	if pe.Path != path {
		t.Fatalf("error %v names path %q, want %q", err, pe.Path, path)
	}
}

func testInvalidPaths(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	bad := []string{"", "a", "a/b", "/a/", "//", "/a//b", "/a/./b", "/a/../b", "/.", "/..", "/a\x00b", "/a\nb",
		"/\x7f", "/a\xffb", "/" + strings.Repeat("x", coord.MaxPathLen),
		// Characters some backend cannot store or read back (one path rule
		// for all): beyond the BMP (ZooKeeper), private use (ZooKeeper,
		// Consul), spaces other than ASCII's, format characters and
		// unassigned code points (Consul's HTTP API).
		"/emoji\U0001F600", "/cjk-b\U00020000", "/private\ue000", "/nbsp\u00a0", "/ideographic\u3000",
		"/zwsp\u200b", "/shy\u00ad", "/bom\ufeff", "/unassigned\u0378", "/nonchar\ufdd0", "/specials\ufffd"}
	for _, p := range bad {
		calls := map[string]error{}
		_, err := st.Create(ctx, p, nil, coord.Persistent)
		calls["create"] = err
		_, _, err = st.Get(ctx, p)
		calls["get"] = err
		_, err = st.GetMany(ctx, "/", p)
		calls["getmany"] = err
		_, err = st.Set(ctx, p, nil, coord.AnyVersion)
		calls["set"] = err
		calls["delete"] = st.Delete(ctx, p, coord.AnyVersion)
		_, _, err = st.Exists(ctx, p)
		calls["exists"] = err
		_, err = st.Children(ctx, p)
		calls["children"] = err
		_, err = st.WatchData(ctx, p)
		calls["watchdata"] = err
		_, err = st.WatchChildren(ctx, p)
		calls["watchchildren"] = err
		_, err = st.Txn(ctx, coord.CreateOp(p, nil, coord.Persistent))
		calls["txn"] = err
		for call, err := range calls {
			if !errors.Is(err, coord.ErrInvalidPath) {
				t.Errorf("%s(%q): got %v, want ErrInvalidPath", call, p, err)
			}
		}
	}
	// What the rule keeps is stored and read back as it is everywhere:
	// letters of many scripts, marks, symbols, the ASCII space.
	for _, p := range []string{"/é e", "/中文", "/Ελληνικά", "/עברית", "/e\u0301", "/€$∑", "/\uffe6"} {
		if _, err := st.Create(ctx, p, []byte(p), coord.Persistent); err != nil {
			t.Errorf("create(%q): %v", p, err)
			continue
		}
		if data, _, err := st.Get(ctx, p); err != nil || string(data) != p {
			t.Errorf("get(%q): %q, %v", p, data, err)
		}
	}
	kids, err := st.Children(ctx, "/")
	must(t, err)
	for _, want := range []string{"é e", "中文", "Ελληνικά", "עברית", "e\u0301", "€$∑", "\uffe6"} {
		found := false
		for _, k := range kids {
			found = found || k == want
		}
		if !found {
			t.Errorf("children of /: %q missing from %q", want, kids)
		}
	}
	// The valid edge: exactly MaxPathLen bytes.
	long := "/" + strings.Repeat("y", coord.MaxPathLen-1)
	if _, err := st.Create(ctx, long, []byte("x"), coord.Persistent); err != nil {
		t.Fatalf("create of a %d-byte path: %v", len(long), err)
	}
	// And the deepest: 512 components of one letter.
	deep := strings.Repeat("/d", coord.MaxPathLen/2)
	if err := coord.MkdirAll(ctx, st, deep); err != nil {
		t.Fatalf("MkdirAll of a path %d deep: %v", coord.Depth(deep), err)
	}
	if kids, err := st.Children(ctx, coord.Parent(deep)); err != nil || len(kids) != 1 || kids[0] != "d" {
		t.Fatalf("children at depth %d: %q, %v", coord.Depth(deep)-1, kids, err)
	}
	if _, ok, err := st.Exists(ctx, deep); err != nil || !ok {
		t.Fatalf("the deepest node: %v, %v", ok, err)
	}
	if _, err := st.Create(ctx, "/ok", nil, coord.Mode(99)); !errors.Is(err, coord.ErrInvalidArgument) {
		t.Fatalf("create with mode 99: %v, want ErrInvalidArgument", err)
	}
	if _, err := st.Set(ctx, "/ok", nil, -7); !errors.Is(err, coord.ErrInvalidArgument) {
		t.Fatalf("set with version -7: %v, want ErrInvalidArgument", err)
	}
}

func testRoot(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, ok, err := st.Exists(ctx, "/")
	must(t, err)
	if !ok {
		t.Fatal("the root does not exist")
	}
	kids, err := st.Children(ctx, "/")
	must(t, err)
	if len(kids) != 0 {
		t.Fatalf("a fresh namespace has children %v", kids)
	}
	_, err = st.Create(ctx, "/", nil, coord.Persistent)
	is(t, err, coord.ErrInvalidPath)
	_, err = st.Set(ctx, "/", []byte("x"), coord.AnyVersion)
	is(t, err, coord.ErrInvalidPath)
	is(t, st.Delete(ctx, "/", coord.AnyVersion), coord.ErrInvalidPath)
	_, err = st.Create(ctx, "/top", []byte("t"), coord.Persistent)
	must(t, err)
	kids, err = st.Children(ctx, "/")
	must(t, err)
	if fmt.Sprint(kids) != "[top]" {
		t.Fatalf("root children %v, want [top]", kids)
	}
	// The root can be watched; it always exists.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := st.WatchData(wctx, "/")
	must(t, err)
	if ev := next(t, ch); !ev.Exists || ev.Err != nil {
		t.Fatalf("first event of a watch on the root: %+v", ev)
	}
}

// Versions far past any a node reaches (2^31, 2^32, 2^63-1) are conflicts,
// never taken modulo 2^32 (which would turn 2^32 into 0, the version a new
// node has).
func testHugeVersions(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/v", []byte("0"), coord.Persistent)
	must(t, err)
	for _, v := range []int64{1 << 31, 1 << 32, 1<<32 + 1, 1<<63 - 1} {
		_, err := st.Set(ctx, "/v", []byte("x"), v)
		is(t, err, coord.ErrBadVersion)
		is(t, st.Delete(ctx, "/v", v), coord.ErrBadVersion)
		_, err = st.Txn(ctx, coord.CheckOp("/v", v))
		wantTxnError(t, err, 0, coord.ErrBadVersion)
	}
	data, stat, err := st.Get(ctx, "/v")
	must(t, err)
	if string(data) != "0" || stat.Version != 0 {
		t.Fatalf("after refused writes: %q version %d", data, stat.Version)
	}
}

func roundTrip(t *testing.T, s *suite, data []byte) {
	t.Helper()
	st := s.open(t)
	ctx := ctxT(t)
	p, err := st.Create(ctx, "/n", data, coord.Persistent)
	must(t, err)
	if p != "/n" {
		t.Fatalf("create returned %q", p)
	}
	got, stat, err := st.Get(ctx, "/n")
	must(t, err)
	if !bytes.Equal(got, data) || stat.Version != 0 || stat.Ephemeral {
		t.Fatalf("get after create: %d bytes, %+v; want %d bytes, version 0", len(got), stat, len(data))
	}
	stat, err = st.Set(ctx, "/n", data, 0)
	must(t, err)
	// A second store sees the same bytes.
	other := s.open(t)
	got, stat2, err := other.Get(ctx, "/n")
	must(t, err)
	if !bytes.Equal(got, data) || stat2.Version != stat.Version || stat.Version != 1 {
		t.Fatalf("get from another store: %d bytes, %+v; want %d bytes, version 1", len(got), stat2, len(data))
	}
}

func testRoundTripEmpty(t *testing.T, s *suite) { roundTrip(t, s, nil) }

func testRoundTripBinary(t *testing.T, s *suite) {
	data := make([]byte, 0, 1024)
	for i := 0; i < 4; i++ {
		for b := 0; b < 256; b++ {
			data = append(data, byte(b))
		}
	}
	roundTrip(t, s, data)
}

func testRoundTripMaxSize(t *testing.T, s *suite) {
	st := s.open(t)
	n := st.Limits().MaxValueSize
	if n <= 0 {
		t.Fatalf("Limits().MaxValueSize = %d: a store must state it", n)
	}
	data := bytes.Repeat([]byte{0xa5, 0x00, '{'}, n/3+1)[:n]
	roundTrip(t, s, data)
	// A node of the largest size takes children of every kind, a child of
	// the largest size too, and gives them up, in calls and in a Txn: a
	// backend that guards a create by rewriting the parent must not
	// overflow its request with it.
	ctx := ctxT(t)
	kids := []struct {
		path string
		mode coord.Mode
		data []byte
	}{
		{"/n/a", coord.Persistent, []byte("1")},
		{"/n/e", coord.Ephemeral, []byte("1")},
		{"/n/s-", coord.Sequential, []byte("1")},
		{"/n/big", coord.Persistent, data},
	}
	for _, k := range kids {
		p, err := st.Create(ctx, k.path, k.data, k.mode)
		if err != nil {
			t.Fatalf("create %s (%d bytes) under a node of %d bytes: %v", k.path, len(k.data), n, err)
		}
		must(t, st.Delete(ctx, p, coord.AnyVersion))
	}
	res, err := st.Txn(ctx, coord.CreateOp("/n/t1", []byte("1"), coord.Persistent), coord.CreateOp("/n/t2-", nil, coord.EphemeralSequential))
	if err != nil {
		t.Fatalf("txn of two creates under a node of %d bytes: %v", n, err)
	}
	for _, r := range res {
		must(t, st.Delete(ctx, r.Path, coord.AnyVersion))
	}
	if got, _, err := st.Get(ctx, "/n"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the parent after its children came and went: %d bytes, %v", len(got), err)
	}
}

func testTooLarge(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	n := st.Limits().MaxValueSize
	big := make([]byte, n+1)
	_, err := st.Create(ctx, "/big", big, coord.Persistent)
	is(t, err, coord.ErrTooLarge)
	wantPathError(t, err, "/big")
	if _, ok, err := st.Exists(ctx, "/big"); err != nil || ok {
		t.Fatalf("refused create left a node: %v %v", ok, err)
	}
	_, err = st.Create(ctx, "/small", []byte("s"), coord.Persistent)
	must(t, err)
	_, err = st.Set(ctx, "/small", big, coord.AnyVersion)
	is(t, err, coord.ErrTooLarge)
	got, stat, err := st.Get(ctx, "/small")
	must(t, err)
	if string(got) != "s" || stat.Version != 0 {
		t.Fatalf("refused set changed the node: %q %+v", got, stat)
	}
	_, err = st.Txn(ctx, coord.SetOp("/small", big, coord.AnyVersion))
	is(t, err, coord.ErrTooLarge)
}

func testCreateExists(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/a", []byte("1"), coord.Persistent)
	must(t, err)
	_, err = st.Create(ctx, "/a", []byte("2"), coord.Persistent)
	is(t, err, coord.ErrNodeExists)
	wantPathError(t, err, "/a")
	_, err = st.Create(ctx, "/a", []byte("3"), coord.Ephemeral)
	is(t, err, coord.ErrNodeExists)
	got, _, err := st.Get(ctx, "/a")
	must(t, err)
	if string(got) != "1" {
		t.Fatalf("failed create overwrote data: %q", got)
	}
}

func testMissingParent(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	for _, m := range []coord.Mode{coord.Persistent, coord.Ephemeral, coord.Sequential, coord.EphemeralSequential} {
		_, err := st.Create(ctx, "/no/such/parent", nil, m)
		is(t, err, coord.ErrNoNode)
	}
	kids, err := st.Children(ctx, "/")
	must(t, err)
	if len(kids) != 0 {
		t.Fatalf("failed creates left %v", kids)
	}
}

func testEphemeralParent(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/e", nil, coord.Ephemeral)
	must(t, err)
	_, err = st.Create(ctx, "/e/child", nil, coord.Persistent)
	is(t, err, coord.ErrEphemeralParent)
	_, err = st.Create(ctx, "/e/child", nil, coord.EphemeralSequential)
	is(t, err, coord.ErrEphemeralParent)
}

func testCreateAll(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	p, err := coord.CreateAll(ctx, st, "/x/y/z", []byte("leaf"), coord.Persistent)
	must(t, err)
	if p != "/x/y/z" {
		t.Fatalf("CreateAll returned %q", p)
	}
	for _, q := range []string{"/x", "/x/y"} {
		data, stat, err := st.Get(ctx, q)
		must(t, err)
		if len(data) != 0 || stat.Ephemeral {
			t.Fatalf("parent %s: %q %+v, want empty persistent", q, data, stat)
		}
	}
	p, err = coord.CreateAll(ctx, st, "/x/y/q-", nil, coord.EphemeralSequential)
	must(t, err)
	if !strings.HasPrefix(p, "/x/y/q-") || len(p) != len("/x/y/q-")+10 {
		t.Fatalf("CreateAll sequential returned %q", p)
	}
	_, err = coord.CreateAll(ctx, st, "/x/y/z", nil, coord.Persistent)
	is(t, err, coord.ErrNodeExists)
	must(t, coord.MkdirAll(ctx, st, "/x/y"))
}

func testVersions(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/v", []byte("0"), coord.Persistent)
	must(t, err)
	for want := int64(1); want <= 5; want++ {
		stat, err := st.Set(ctx, "/v", []byte(fmt.Sprint(want)), want-1)
		must(t, err)
		if stat.Version != want {
			t.Fatalf("set #%d returned version %d", want, stat.Version)
		}
		_, gs, err := st.Get(ctx, "/v")
		must(t, err)
		es, ok, err := st.Exists(ctx, "/v")
		must(t, err)
		if gs.Version != want || es.Version != want || !ok {
			t.Fatalf("after set #%d: get version %d, exists version %d", want, gs.Version, es.Version)
		}
	}
	stat, err := st.Set(ctx, "/v", []byte("any"), coord.AnyVersion)
	must(t, err)
	if stat.Version != 6 {
		t.Fatalf("set with AnyVersion gave version %d, want 6", stat.Version)
	}
	// A node created again starts again at 0, as on ZooKeeper.
	must(t, st.Delete(ctx, "/v", 6))
	_, err = st.Create(ctx, "/v", nil, coord.Persistent)
	must(t, err)
	_, gs, err := st.Get(ctx, "/v")
	must(t, err)
	if gs.Version != 0 {
		t.Fatalf("recreated node has version %d", gs.Version)
	}
}

func testCASConflict(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/c", []byte("a"), coord.Persistent)
	must(t, err)
	_, err = st.Set(ctx, "/c", []byte("b"), 0)
	must(t, err)
	_, err = st.Set(ctx, "/c", []byte("stale"), 0)
	is(t, err, coord.ErrBadVersion)
	wantPathError(t, err, "/c")
	is(t, st.Delete(ctx, "/c", 0), coord.ErrBadVersion)
	got, stat, err := st.Get(ctx, "/c")
	must(t, err)
	if string(got) != "b" || stat.Version != 1 {
		t.Fatalf("conflicting writes changed the node: %q %+v", got, stat)
	}
	_, err = st.Set(ctx, "/missing", nil, 0)
	is(t, err, coord.ErrNoNode)
	must(t, st.Delete(ctx, "/c", 1))
}

// oneWinner runs fn for writers 0..n-1 started together behind a barrier
// and returns the one writer whose fn succeeded; every other must fail with
// lost. More than one winner, none, or another error is an error.
func oneWinner(n int, lost error, fn func(w int) error) (int, error) {
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			<-start
			errs[w] = fn(w)
		}(w)
	}
	close(start)
	wg.Wait()
	winner, winners := -1, 0
	for w, err := range errs {
		switch {
		case err == nil:
			winner, winners = w, winners+1
		case !errors.Is(err, lost):
			return -1, fmt.Errorf("writer %d: %w", w, err)
		}
	}
	if winners != 1 {
		return -1, fmt.Errorf("%d of %d writers won, want exactly 1", winners, n)
	}
	return winner, nil
}

func testConcurrentCAS(t *testing.T, s *suite) {
	const writers, rounds = 5, 10
	ctx := ctxT(t)
	stores := make([]coord.Store, writers)
	for i := range stores {
		stores[i] = s.open(t)
	}
	_, err := stores[0].Create(ctx, "/counter", []byte("0"), coord.Persistent)
	must(t, err)
	for r := int64(0); r < rounds; r++ {
		// Every writer has read version r; exactly one Set(r) may win.
		winner, err := oneWinner(writers, coord.ErrBadVersion, func(w int) error {
			_, err := stores[w].Set(ctx, "/counter", []byte(fmt.Sprintf("%d by %d", r+1, w)), r)
			return err
		})
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		got, stat, err := stores[0].Get(ctx, "/counter")
		must(t, err)
		if want := fmt.Sprintf("%d by %d", r+1, winner); string(got) != want || stat.Version != r+1 {
			t.Fatalf("round %d: node holds %q version %d, want %q version %d", r, got, stat.Version, want, r+1)
		}
	}
}

// Writers started together behind a barrier create the same node: exactly
// one wins, the others get ErrNodeExists, and the node holds the winner's
// data (a backend that plans a create from a read and then writes it
// unguarded lets several win, the last one's data left).
func testConcurrentCreate(t *testing.T, s *suite) {
	const writers, rounds = 5, 10
	ctx := ctxT(t)
	stores := make([]coord.Store, writers)
	for i := range stores {
		stores[i] = s.open(t)
	}
	for r := 0; r < rounds; r++ {
		path := fmt.Sprintf("/race%d", r)
		mode := coord.Persistent
		if r%2 == 1 {
			mode = coord.Ephemeral
		}
		winner, err := oneWinner(writers, coord.ErrNodeExists, func(w int) error {
			_, err := stores[w].Create(ctx, path, []byte(fmt.Sprintf("by %d", w)), mode)
			return err
		})
		if err != nil {
			t.Fatalf("round %d (%v) creating %s: %v", r, mode, path, err)
		}
		got, stat, err := stores[0].Get(ctx, path)
		must(t, err)
		if want := fmt.Sprintf("by %d", winner); string(got) != want || stat.Ephemeral != (mode == coord.Ephemeral) {
			t.Fatalf("round %d: %s holds %q (ephemeral %v), want %q from the one winner", r, path, got, stat.Ephemeral, want)
		}
		if mode == coord.Ephemeral {
			sess, err := stores[winner].Session(ctx)
			must(t, err)
			if stat.Owner != sess.ID() {
				t.Fatalf("round %d: ephemeral %s owned by %q, want the winner's session %q", r, path, stat.Owner, sess.ID())
			}
		}
	}
}

func testDeleteMissing(t *testing.T, s *suite) {
	st := s.open(t)
	err := st.Delete(ctxT(t), "/nothing", coord.AnyVersion)
	is(t, err, coord.ErrNoNode)
	wantPathError(t, err, "/nothing")
}

// A node this store made or read, deleted since by another client, is
// gone for it too: a Delete (at its version or any) and a Txn with its
// delete are ErrNoNode, not a second successful delete, whatever the store
// remembers of it.
func testDeleteGone(t *testing.T, s *suite) {
	st, other := s.open(t), s.open(t)
	ctx := ctxT(t)
	for _, p := range []string{"/made", "/read", "/txn"} {
		_, err := st.Create(ctx, p, nil, coord.Persistent)
		must(t, err)
	}
	_, _, err := st.Get(ctx, "/read")
	must(t, err)
	for _, p := range []string{"/made", "/read", "/txn"} {
		must(t, other.Delete(ctx, p, 0))
	}
	err = st.Delete(ctx, "/made", 0)
	is(t, err, coord.ErrNoNode)
	wantPathError(t, err, "/made")
	is(t, st.Delete(ctx, "/read", coord.AnyVersion), coord.ErrNoNode)
	_, err = st.Txn(ctx, coord.DeleteOp("/txn", 0), coord.CreateOp("/after", nil, coord.Persistent))
	var te *coord.TxnError
	if !errors.As(err, &te) || te.Index != 0 || !errors.Is(err, coord.ErrNoNode) {
		t.Fatalf("Txn deleting a node another client deleted: %v, want ErrNoNode at op 0", err)
	}
	if _, ok, err := other.Exists(ctx, "/after"); err != nil || ok {
		t.Fatalf("/after after the refused Txn: exists %v, %v", ok, err)
	}
}

func testDeleteNotEmpty(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := coord.CreateAll(ctx, st, "/p/c", nil, coord.Persistent)
	must(t, err)
	is(t, st.Delete(ctx, "/p", coord.AnyVersion), coord.ErrNotEmpty)
	// At a version other than 0: the right one is told it has children,
	// a wrong one that its version is wrong.
	_, err = st.Set(ctx, "/p", []byte("v1"), 0)
	must(t, err)
	is(t, st.Delete(ctx, "/p", 1), coord.ErrNotEmpty)
	is(t, st.Delete(ctx, "/p", 0), coord.ErrBadVersion)
	if _, ok, _ := st.Exists(ctx, "/p/c"); !ok {
		t.Fatal("refused delete removed the child")
	}
	must(t, st.Delete(ctx, "/p/c", 0))
	must(t, st.Delete(ctx, "/p", 1))
}

func testDeleteAll(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	for _, p := range []string{"/r/a/1", "/r/a/2", "/r/b", "/r/c/d/e/f", "/keep/x"} {
		_, err := coord.CreateAll(ctx, st, p, []byte(p), coord.Persistent)
		must(t, err)
	}
	_, err := st.Create(ctx, "/r/b/eph", nil, coord.Ephemeral)
	must(t, err)
	must(t, coord.DeleteAll(ctx, st, "/r"))
	if _, ok, _ := st.Exists(ctx, "/r"); ok {
		t.Fatal("/r survived DeleteAll")
	}
	if _, ok, _ := st.Exists(ctx, "/keep/x"); !ok {
		t.Fatal("DeleteAll removed a sibling tree")
	}
	must(t, coord.DeleteAll(ctx, st, "/r")) // missing is fine
	// A sequential child made after the parent was deleted and recreated
	// starts a fresh counter, and no old counter leaks into listings.
	_, err = st.Create(ctx, "/r", nil, coord.Persistent)
	must(t, err)
	kids, err := st.Children(ctx, "/r")
	must(t, err)
	if len(kids) != 0 {
		t.Fatalf("recreated node has children %v", kids)
	}
}

func testChildrenOrder(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/d", nil, coord.Persistent)
	must(t, err)
	names := []string{"slot_10", "b", "slot_2", "A", "a-b", "a", "slot_1", "z9", "Z", "ä", "host:6379"}
	for _, n := range names {
		_, err := st.Create(ctx, "/d/"+n, nil, coord.Persistent)
		must(t, err)
	}
	_, err = st.Create(ctx, "/d/a/deeper", nil, coord.Persistent)
	must(t, err)
	_, err = st.Create(ctx, "/dd", nil, coord.Persistent) // a sibling sharing the prefix
	must(t, err)
	kids, err := st.Children(ctx, "/d")
	must(t, err)
	want := "[A Z a a-b b host:6379 slot_1 slot_10 slot_2 z9 ä]"
	if fmt.Sprint(kids) != want {
		t.Fatalf("children %v\nwant     %s", kids, want)
	}
	kids, err = st.Children(ctx, "/d/a")
	must(t, err)
	if fmt.Sprint(kids) != "[deeper]" {
		t.Fatalf("children of /d/a: %v", kids)
	}
}

func testChildrenMissing(t *testing.T, s *suite) {
	st := s.open(t)
	_, err := st.Children(ctxT(t), "/none")
	is(t, err, coord.ErrNoNode)
	wantPathError(t, err, "/none")
}

// Stat.Created orders creations, stays across Sets, and changes when a node
// is deleted and made again; Get, Exists and WatchData agree on it.
func testStatCreated(t *testing.T, s *suite) {
	st, other := s.open(t), s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/a", []byte("1"), coord.Persistent)
	must(t, err)
	_, a, err := st.Get(ctx, "/a")
	must(t, err)
	if a.Created <= 0 {
		t.Fatalf("Created of a node: %d", a.Created)
	}
	_, err = other.Create(ctx, "/b", nil, coord.Ephemeral)
	must(t, err)
	b, ok, err := st.Exists(ctx, "/b")
	must(t, err)
	if !ok || b.Created <= a.Created {
		t.Fatalf("a node made after another: Created %d, the other's %d", b.Created, a.Created)
	}
	_, err = st.Set(ctx, "/a", []byte("2"), coord.AnyVersion)
	must(t, err)
	_, a2, err := other.Get(ctx, "/a")
	must(t, err)
	if a2.Created != a.Created {
		t.Fatalf("a Set changed Created from %d to %d", a.Created, a2.Created)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := st.WatchData(wctx, "/a")
	must(t, err)
	if ev := next(t, ch); ev.Stat.Created != a.Created {
		t.Fatalf("WatchData says Created %d, Get %d", ev.Stat.Created, a.Created)
	}
	must(t, other.Delete(ctx, "/a", coord.AnyVersion))
	_, err = other.Create(ctx, "/a", []byte("1"), coord.Persistent)
	must(t, err)
	_, a3, err := st.Get(ctx, "/a")
	must(t, err)
	if a3.Created <= b.Created {
		t.Fatalf("a node deleted and made again: Created %d, want above %d", a3.Created, b.Created)
	}
}

// GetMany answers each path as Get does, in order: more paths than the
// largest transaction (so across any chunks the backend reads in), every
// other one missing, with the root, an ephemeral node, a node at version 1
// and a repeated path among them, all written by another client first.
func testGetMany(t *testing.T, s *suite) {
	st, other := s.open(t), s.open(t)
	ctx := ctxT(t)
	res, err := st.GetMany(ctx)
	must(t, err)
	if len(res) != 0 {
		t.Fatalf("GetMany of no paths: %d results", len(res))
	}
	_, err = other.Create(ctx, "/m", nil, coord.Persistent)
	must(t, err)
	n := max(2*st.Limits().MaxTxnOps, 300) + 3
	var ops []coord.Op
	paths := []string{"/"}
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("/m/%05d", i)
		paths = append(paths, p)
		if i%2 == 0 && i != 4 {
			ops = append(ops, coord.CreateOp(p, []byte(p), coord.Persistent))
		}
	}
	for len(ops) > 0 {
		k := min(len(ops), other.Limits().MaxTxnOps)
		_, err := other.Txn(ctx, ops[:k]...)
		must(t, err)
		ops = ops[k:]
	}
	_, err = other.Create(ctx, "/m/00004", []byte("mine"), coord.Ephemeral)
	must(t, err)
	_, err = other.Set(ctx, "/m/00002", []byte("set"), 0)
	must(t, err)
	paths = append(paths, "/m/00002", "/m/00003")
	res, err = st.GetMany(ctx, paths...)
	must(t, err)
	if len(res) != len(paths) {
		t.Fatalf("GetMany of %d paths: %d results", len(paths), len(res))
	}
	for i, p := range paths {
		r := res[i]
		data, stat, err := st.Get(ctx, p)
		if errors.Is(err, coord.ErrNoNode) {
			if !errors.Is(r.Err, coord.ErrNoNode) {
				t.Fatalf("GetMany, result %d (%s, missing): %+v", i, p, r)
			}
			wantPathError(t, r.Err, p)
			continue
		}
		must(t, err)
		if r.Err != nil || !bytes.Equal(r.Data, data) || r.Stat != stat {
			t.Fatalf("GetMany, result %d (%s): %q %+v %v; Get says %q %+v", i, p, r.Data, r.Stat, r.Err, data, stat)
		}
	}
	if got := res[len(res)-2]; string(got.Data) != "set" || got.Stat.Version != 1 {
		t.Fatalf("GetMany of a node set once: %q version %d", got.Data, got.Stat.Version)
	}
	sess, err := other.Session(ctx)
	must(t, err)
	if got := res[5]; string(got.Data) != "mine" || !got.Stat.Ephemeral || got.Stat.Owner != sess.ID() {
		t.Fatalf("GetMany of an ephemeral node: %q %+v, owner want %s", got.Data, got.Stat, sess.ID())
	}
	if got := res[1]; string(got.Data) != "/m/00000" || got.Stat.Created <= 0 {
		t.Fatalf("GetMany of /m/00000: %q %+v", got.Data, got.Stat)
	}
	// A bad path fails the call, with no results.
	res, err = st.GetMany(ctx, "/m/00000", "/m//x")
	is(t, err, coord.ErrInvalidPath)
	wantPathError(t, err, "/m//x")
	if res != nil {
		t.Fatalf("a refused GetMany returned %d results", len(res))
	}
}
