package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
)

func wantTxnError(t *testing.T, err error, index int, want error) {
	t.Helper()
	var te *coord.TxnError
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T) is not a *coord.TxnError", err, err)
	}
	if te.Index != index || !errors.Is(err, want) {
		t.Fatalf("txn failed at op %d with %v; want op %d with %v", te.Index, te.Err, index, want)
	}
}

func testTxnCommit(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/old", []byte("o"), coord.Persistent)
	must(t, err)
	_, err = st.Create(ctx, "/gone", nil, coord.Persistent)
	must(t, err)
	res, err := st.Txn(ctx,
		coord.CheckOp("/old", 0),
		coord.CreateOp("/new", []byte("n"), coord.Persistent),
		coord.CreateOp("/new/child", []byte("c"), coord.Persistent),
		coord.SetOp("/old", []byte("o2"), 0),
		coord.DeleteOp("/gone", 0),
		coord.CreateOp("/eph", nil, coord.Ephemeral),
	)
	must(t, err)
	if len(res) != 6 || res[1].Path != "/new" || res[2].Path != "/new/child" || res[3].Stat.Version != 1 || !res[5].Stat.Ephemeral {
		t.Fatalf("results %+v", res)
	}
	data, stat, err := st.Get(ctx, "/old")
	must(t, err)
	if string(data) != "o2" || stat.Version != 1 {
		t.Fatalf("/old: %q %+v", data, stat)
	}
	if _, ok, _ := st.Exists(ctx, "/gone"); ok {
		t.Fatal("/gone still exists")
	}
	data, _, err = st.Get(ctx, "/new/child")
	must(t, err)
	if string(data) != "c" {
		t.Fatalf("/new/child: %q", data)
	}
	_, stat, err = st.Get(ctx, "/eph")
	must(t, err)
	if !stat.Ephemeral {
		t.Fatal("/eph created in a txn is not ephemeral")
	}
}

func testTxnAtomic(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/a", []byte("a"), coord.Persistent)
	must(t, err)
	_, err = st.Create(ctx, "/q", nil, coord.Persistent)
	must(t, err)
	snapshot := func() string {
		var out []string
		must(t, coord.Walk(ctx, st, "/", func(p string, d []byte, s coord.Stat) error {
			out = append(out, fmt.Sprintf("%s=%q@%d", p, d, s.Version))
			return nil
		}))
		return fmt.Sprint(out)
	}
	before := snapshot()
	cases := []struct {
		ops   []coord.Op
		index int
		err   error
	}{
		{[]coord.Op{coord.CreateOp("/b", nil, coord.Persistent), coord.SetOp("/a", []byte("x"), 0), coord.SetOp("/missing", nil, coord.AnyVersion)}, 2, coord.ErrNoNode},
		{[]coord.Op{coord.CreateOp("/b", nil, coord.Persistent), coord.CheckOp("/a", 5)}, 1, coord.ErrBadVersion},
		{[]coord.Op{coord.CreateOp("/q/item-", nil, coord.Sequential), coord.CreateOp("/a", nil, coord.Persistent)}, 1, coord.ErrNodeExists},
		{[]coord.Op{coord.DeleteOp("/a", 0), coord.CreateOp("/c", nil, coord.Persistent), coord.DeleteOp("/q", 0), coord.CreateOp("/q/x", nil, coord.Persistent)}, 3, coord.ErrNoNode},
		{[]coord.Op{coord.CreateOp("/b", nil, coord.Persistent), coord.CreateOp("/b/c", nil, coord.Persistent), coord.DeleteOp("/q", 0), coord.DeleteOp("/a", 3)}, 3, coord.ErrBadVersion},
		{[]coord.Op{coord.CreateOp("/q/c", nil, coord.Persistent), coord.DeleteOp("/q", 0)}, 1, coord.ErrNotEmpty},
		{[]coord.Op{coord.CheckOp("/a", 0), coord.SetOp("/a", nil, 0), coord.CheckOp("/a", 0)}, 2, coord.ErrBadVersion},
		{[]coord.Op{coord.CreateOp("/e", nil, coord.Ephemeral), coord.CreateOp("/e/x", nil, coord.Persistent)}, 1, coord.ErrEphemeralParent},
	}
	for i, c := range cases {
		_, err := st.Txn(ctx, c.ops...)
		wantTxnError(t, err, c.index, c.err)
		if after := snapshot(); after != before {
			t.Fatalf("case %d: failed txn changed the store:\nbefore %s\nafter  %s", i, before, after)
		}
	}
	// A failed sequential create does not give its number away twice.
	p, err := st.Create(ctx, "/q/item-", nil, coord.Sequential)
	must(t, err)
	seqOf(t, coord.Base(p))
}

func testTxnOrder(t *testing.T, s *suite) {
	// Ops apply in order: later ops see earlier ones.
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/n", []byte("1"), coord.Persistent)
	must(t, err)
	_, err = coord.CreateAll(ctx, st, "/old/kid", nil, coord.Persistent)
	must(t, err)
	res, err := st.Txn(ctx,
		coord.CheckOp("/n", 0),
		coord.SetOp("/n", []byte("2"), 0),
		coord.CheckOp("/n", 1),
		coord.CreateOp("/m", nil, coord.Persistent),
		coord.CreateOp("/m/c", []byte("c"), coord.Persistent),
		coord.DeleteOp("/old/kid", 0),
		coord.DeleteOp("/old", 0),
	)
	must(t, err)
	if res[1].Stat.Version != 1 || res[4].Path != "/m/c" {
		t.Fatalf("results %+v", res)
	}
	data, stat, err := st.Get(ctx, "/n")
	must(t, err)
	if string(data) != "2" || stat.Version != 1 {
		t.Fatalf("/n: %q %+v", data, stat)
	}
	if _, ok, _ := st.Exists(ctx, "/old"); ok {
		t.Fatal("/old, emptied and deleted in one txn, exists")
	}
	// Writing one path twice in a transaction is refused, on every backend.
	_, err = st.Txn(ctx, coord.SetOp("/n", []byte("3"), 1), coord.SetOp("/n", []byte("4"), 2))
	wantTxnError(t, err, 1, coord.ErrInvalidArgument)
	_, err = st.Txn(ctx, coord.CreateOp("/z", nil, coord.Persistent), coord.DeleteOp("/z", 0))
	wantTxnError(t, err, 1, coord.ErrInvalidArgument)
}

func testTxnSequential(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/q", nil, coord.Persistent)
	must(t, err)
	res, err := st.Txn(ctx,
		coord.CreateOp("/q/item-", []byte("a"), coord.Sequential),
		coord.CreateOp("/q/item-", []byte("b"), coord.EphemeralSequential),
		coord.CreateOp("/q/item-", []byte("c"), coord.Sequential),
	)
	must(t, err)
	var last int64 = -1
	for i, r := range res {
		n := seqOf(t, coord.Base(r.Path))
		if n <= last {
			t.Fatalf("txn sequence %d after %d", n, last)
		}
		last = n
		data, _, err := st.Get(ctx, r.Path)
		must(t, err)
		if string(data) != string(rune('a'+i)) {
			t.Fatalf("%s holds %q", r.Path, data)
		}
	}
	p, err := st.Create(ctx, "/q/item-", nil, coord.Sequential)
	must(t, err)
	if seqOf(t, coord.Base(p)) <= last {
		t.Fatalf("create after the txn got %s", p)
	}
}

func testTxnLimit(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	lim := st.Limits()
	if lim.MaxTxnOps <= 0 || lim.MaxTxnBytes <= 0 {
		t.Fatalf("Limits %+v: a store must state them", lim)
	}
	_, err := st.Create(ctx, "/l", nil, coord.Persistent)
	must(t, err)
	ops := make([]coord.Op, lim.MaxTxnOps+1)
	for i := range ops {
		ops[i] = coord.CreateOp(fmt.Sprintf("/l/n%05d", i), []byte("x"), coord.Persistent)
	}
	_, err = st.Txn(ctx, ops...)
	is(t, err, coord.ErrTooLarge)
	kids, err := st.Children(ctx, "/l")
	must(t, err)
	if len(kids) != 0 {
		t.Fatalf("a refused txn created %d nodes", len(kids))
	}
	// Exactly at the limit: applied whole, or refused whole.
	res, err := st.Txn(ctx, ops[:lim.MaxTxnOps]...)
	must(t, err)
	if len(res) != lim.MaxTxnOps {
		t.Fatalf("%d results for %d ops", len(res), lim.MaxTxnOps)
	}
	kids, err = st.Children(ctx, "/l")
	must(t, err)
	if len(kids) != lim.MaxTxnOps {
		t.Fatalf("%d nodes after a txn of %d creates", len(kids), lim.MaxTxnOps)
	}
	// At the limit, with the last op failing: nothing applied.
	fail := make([]coord.Op, lim.MaxTxnOps)
	for i := range fail {
		fail[i] = coord.SetOp(fmt.Sprintf("/l/n%05d", i), []byte("y"), 0)
	}
	fail[len(fail)-1] = coord.CheckOp("/l/n00000", 7)
	_, err = st.Txn(ctx, fail...)
	wantTxnError(t, err, len(fail)-1, coord.ErrBadVersion)
	data, _, err := st.Get(ctx, "/l/n00001")
	must(t, err)
	if string(data) != "x" {
		t.Fatal("a failed txn at the limit applied some ops")
	}
	// Data over MaxTxnBytes is refused before it is sent.
	per := lim.MaxValueSize
	n := lim.MaxTxnBytes/per + 1
	if n <= lim.MaxTxnOps {
		big := make([]coord.Op, n)
		for i := range big {
			big[i] = coord.SetOp(fmt.Sprintf("/l/n%05d", i%lim.MaxTxnOps), make([]byte, per), coord.AnyVersion)
		}
		_, err = st.Txn(ctx, big...)
		is(t, err, coord.ErrTooLarge)
	}
	// The most creates with the most data Limits admit are accepted, with
	// paths of ordinary length (about 60 bytes), each under a parent of its
	// own (a create checks its parent, a sequential one moves its counter),
	// persistent and ephemeral sequential ones mixed.
	_, err = st.Create(ctx, "/big", nil, coord.Persistent)
	must(t, err)
	parent := func(i int) string { return fmt.Sprintf("/big/%s-%05d", strings.Repeat("p", 44), i) }
	parents := make([]coord.Op, lim.MaxTxnOps)
	for i := range parents {
		parents[i] = coord.CreateOp(parent(i), nil, coord.Persistent)
	}
	batches, err := coord.Batches(parents, lim)
	must(t, err)
	for _, b := range batches {
		_, err := st.Txn(ctx, b...)
		must(t, err)
	}
	per = lim.MaxTxnBytes/lim.MaxTxnOps - lim.TxnOpBytes
	if lim.MaxValueSize > 0 && per > lim.MaxValueSize {
		per = lim.MaxValueSize
	}
	full := make([]coord.Op, lim.MaxTxnOps)
	for i := range full {
		full[i] = coord.CreateOp(parent(i)+"/c", bytes.Repeat([]byte("c"), per), coord.Persistent)
		if i%2 == 1 {
			full[i] = coord.CreateOp(parent(i)+"/c-", bytes.Repeat([]byte("c"), per), coord.EphemeralSequential)
		}
	}
	if n := lim.TxnBytes(full); n > lim.MaxTxnBytes {
		t.Fatalf("TxnBytes of %d creates of %d bytes: %d, over MaxTxnBytes %d", len(full), per, n, lim.MaxTxnBytes)
	}
	if _, err := st.Txn(ctx, full...); err != nil {
		t.Fatalf("%d creates of %d bytes (Limits %+v): %v", len(full), per, lim, err)
	}
	if got, err := st.Children(ctx, parent(len(full)-1)); err != nil || len(got) != 1 {
		t.Fatalf("after the largest txn of creates %s holds %v (%v), want one node", parent(len(full)-1), got, err)
	}
	// Batches split a long list into transactions that fit.
	batches, err = coord.Batches(append(ops, ops...), lim)
	must(t, err)
	for _, b := range batches {
		if len(b) > lim.MaxTxnOps {
			t.Fatalf("batch of %d ops", len(b))
		}
	}
}

func testTxnInvalid(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Txn(ctx)
	is(t, err, coord.ErrInvalidArgument)
	_, err = st.Txn(ctx, coord.CreateOp("/ok", nil, coord.Persistent), coord.CreateOp("bad", nil, coord.Persistent))
	wantTxnError(t, err, 1, coord.ErrInvalidPath)
	_, err = st.Txn(ctx, coord.Op{Kind: "frobnicate", Path: "/x"})
	wantTxnError(t, err, 0, coord.ErrInvalidArgument)
	if _, ok, _ := st.Exists(ctx, "/ok"); ok {
		t.Fatal("an invalid txn applied an op")
	}
}

func testContextCanceled(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/n", []byte("v"), coord.Persistent)
	must(t, err)
	dead, cancel := context.WithCancel(ctx)
	cancel()
	calls := map[string]error{}
	_, err = st.Create(dead, "/new", nil, coord.Persistent)
	calls["create"] = err
	_, _, err = st.Get(dead, "/n")
	calls["get"] = err
	_, err = st.GetMany(dead, "/n")
	calls["getmany"] = err
	_, err = st.Set(dead, "/n", []byte("changed"), coord.AnyVersion)
	calls["set"] = err
	calls["delete"] = st.Delete(dead, "/n", coord.AnyVersion)
	_, _, err = st.Exists(dead, "/n")
	calls["exists"] = err
	_, err = st.Children(dead, "/")
	calls["children"] = err
	_, err = st.WatchData(dead, "/n")
	calls["watchdata"] = err
	_, err = st.WatchChildren(dead, "/")
	calls["watchchildren"] = err
	_, err = st.Txn(dead, coord.CreateOp("/new", nil, coord.Persistent))
	calls["txn"] = err
	_, err = st.Session(dead)
	calls["session"] = err
	for call, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v", call, err)
		}
	}
	data, stat, err := st.Get(ctx, "/n")
	must(t, err)
	if string(data) != "v" || stat.Version != 0 {
		t.Fatalf("canceled calls changed /n: %q %+v", data, stat)
	}
	if _, ok, _ := st.Exists(ctx, "/new"); ok {
		t.Fatal("a canceled create made a node")
	}
	// A deadline in the past is a DeadlineExceeded.
	past, cancel2 := context.WithDeadline(ctx, time.Unix(1, 0))
	defer cancel2()
	_, _, err = st.Get(past, "/n")
	is(t, err, context.DeadlineExceeded)
}

func testClosedCalls(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/n", nil, coord.Persistent)
	must(t, err)
	must(t, st.Close())
	_, err = st.Create(ctx, "/m", nil, coord.Persistent)
	is(t, err, coord.ErrClosed)
	_, _, err = st.Get(ctx, "/n")
	is(t, err, coord.ErrClosed)
	// The root is answered without the server on some backends; a closed
	// store still refuses it.
	_, _, err = st.Get(ctx, "/")
	is(t, err, coord.ErrClosed)
	_, _, err = st.Exists(ctx, "/")
	is(t, err, coord.ErrClosed)
	for _, paths := range [][]string{{"/n"}, {"/"}, nil} {
		_, err = st.GetMany(ctx, paths...)
		is(t, err, coord.ErrClosed)
	}
	_, _, err = st.Exists(ctx, "/n")
	is(t, err, coord.ErrClosed)
	_, err = st.Set(ctx, "/n", nil, coord.AnyVersion)
	is(t, err, coord.ErrClosed)
	is(t, st.Delete(ctx, "/n", coord.AnyVersion), coord.ErrClosed)
	_, err = st.WatchChildren(ctx, "/")
	is(t, err, coord.ErrClosed)
	_, err = st.Children(ctx, "/")
	is(t, err, coord.ErrClosed)
	_, err = st.WatchData(ctx, "/n")
	is(t, err, coord.ErrClosed)
	_, err = st.Txn(ctx, coord.CheckOp("/n", 0))
	is(t, err, coord.ErrClosed)
	_, err = st.Session(ctx)
	is(t, err, coord.ErrClosed)
}

// A transaction whose data is within MaxTxnBytes but whose paths are long
// (the largest number of ops, each with a path near MaxPathLen) is applied
// whole or refused with ErrTooLarge before anything is sent; it never
// breaks the connection, and the store goes on working.
func testTxnLongPaths(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	lim := st.Limits()
	_, err := st.Create(ctx, "/l", nil, coord.Persistent)
	must(t, err)
	n := lim.MaxTxnOps
	per := lim.MaxTxnBytes/n - lim.TxnOpBytes
	if per > lim.MaxValueSize {
		per = lim.MaxValueSize
	}
	ops := make([]coord.Op, n)
	for i := range ops {
		name := fmt.Sprintf("%05d-%s", i, strings.Repeat("p", coord.MaxPathLen-len("/l/00000-")-200))
		ops[i] = coord.CreateOp("/l/"+name, make([]byte, per), coord.Persistent)
	}
	_, err = st.Txn(ctx, ops...)
	kids, kerr := st.Children(ctx, "/l")
	must(t, kerr)
	switch {
	case err == nil:
		if len(kids) != n {
			t.Fatalf("an applied txn of %d creates made %d nodes", n, len(kids))
		}
	case errors.Is(err, coord.ErrTooLarge):
		if len(kids) != 0 {
			t.Fatalf("a refused txn made %d nodes", len(kids))
		}
	default:
		t.Fatalf("a txn of %d ops with long paths and %d bytes of data: %v, want success or ErrTooLarge", n, n*per, err)
	}
}

// limitNodes creates /l and m+1 nodes under it holding "x", the first an
// ephemeral node of st's session, the rest in the transactions Batches
// makes (each within MaxTxnOps), and returns their paths.
func limitNodes(ctx context.Context, t *testing.T, st coord.Store, m int) []string {
	t.Helper()
	lim := st.Limits()
	_, err := st.Create(ctx, "/l", nil, coord.Persistent)
	must(t, err)
	paths := make([]string, m+1)
	var creates []coord.Op
	for i := range paths {
		paths[i] = fmt.Sprintf("/l/n%05d", i)
		if i > 0 {
			creates = append(creates, coord.CreateOp(paths[i], []byte("x"), coord.Persistent))
		}
	}
	_, err = st.Create(ctx, paths[0], []byte("x"), coord.Ephemeral)
	must(t, err)
	batches, err := coord.Batches(creates, lim)
	must(t, err)
	for _, b := range batches {
		if len(b) > lim.MaxTxnOps {
			t.Fatalf("Batches: %d creates in one batch, MaxTxnOps is %d", len(b), lim.MaxTxnOps)
		}
		_, err := st.Txn(ctx, b...)
		must(t, err)
	}
	return paths
}

// A transaction of sets and checks may hold Limits().TxnOps of them (above
// MaxTxnOps where the backend says MaxTxnSetOps): at that size it applies
// whole (an ephemeral node set in it stays its session's) or, with its last
// op failing, not at all; one op more, or a create among them past
// MaxTxnOps, is refused with ErrTooLarge before anything is sent.
func testTxnSetLimit(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	lim := st.Limits()
	m := lim.TxnOps([]coord.Op{coord.SetOp("/x", nil, 0)})
	if m < lim.MaxTxnOps {
		t.Fatalf("TxnOps of sets %d, below MaxTxnOps %d", m, lim.MaxTxnOps)
	}
	paths := limitNodes(ctx, t, st, m)
	sets := func(n int, data string) []coord.Op {
		ops := make([]coord.Op, n)
		for i := range ops {
			ops[i] = coord.SetOp(paths[i%len(paths)], []byte(data), coord.AnyVersion)
		}
		return ops
	}
	unchanged := func(what, data string, version int64) {
		t.Helper()
		res, err := st.GetMany(ctx, paths...)
		must(t, err)
		for i, r := range res {
			if i == m && version > 0 {
				data, version = "x", 0 // never in a set of m
			}
			if r.Err != nil || string(r.Data) != data || r.Stat.Version != version {
				t.Fatalf("%s: %s holds %q at version %d (%v), want %q at %d", what, paths[i], r.Data, r.Stat.Version, r.Err, data, version)
			}
		}
	}
	_, err := st.Txn(ctx, sets(m+1, "y")...)
	is(t, err, coord.ErrTooLarge)
	if m > lim.MaxTxnOps {
		mixed := append(sets(m-1, "y"), coord.CreateOp("/l/made", nil, coord.Persistent))
		_, err = st.Txn(ctx, mixed...)
		is(t, err, coord.ErrTooLarge)
		if _, ok, _ := st.Exists(ctx, "/l/made"); ok {
			t.Fatal("a refused transaction created its node")
		}
	}
	failing := sets(m, "y")
	failing[m-1] = coord.CheckOp(paths[m-1], 7)
	_, err = st.Txn(ctx, failing...)
	wantTxnError(t, err, m-1, coord.ErrBadVersion)
	unchanged("after refused transactions", "x", 0)
	ok := sets(m, "z")
	ok[m-1] = coord.CheckOp(paths[m], 0)
	res, err := st.Txn(ctx, ok...)
	must(t, err)
	sess, err := st.Session(ctx)
	must(t, err)
	for i, r := range res {
		want := coord.Stat{Version: 1}
		if i == m-1 {
			want = coord.Stat{}
		}
		if i == 0 {
			want = coord.Stat{Version: 1, Ephemeral: true, Owner: sess.ID()}
		}
		if r.Path != ok[i].Path || r.Stat != want {
			t.Fatalf("result %d of %d sets and a check: %+v, want %s %+v", i, m, r, ok[i].Path, want)
		}
	}
	got, err := st.GetMany(ctx, paths[0], paths[m-1])
	must(t, err)
	if !got[0].Stat.Ephemeral || got[0].Stat.Owner != sess.ID() || string(got[0].Data) != "z" {
		t.Fatalf("an ephemeral node set in a transaction: %q %+v", got[0].Data, got[0].Stat)
	}
	if string(got[1].Data) != "x" || got[1].Stat.Version != 0 {
		t.Fatalf("the node only checked: %q %+v", got[1].Data, got[1].Stat)
	}
	// Batches put sets in batches of up to m, a create in one of MaxTxnOps.
	batches, err := coord.Batches(append(sets(2*m+1, "w"), coord.CreateOp("/l/made", nil, coord.Persistent)), lim)
	must(t, err)
	for i, b := range batches {
		max := lim.TxnOps(b)
		if len(b) > max || (i == 0 && len(b) != m) {
			t.Fatalf("batch %d of %d ops (limit %d, sets %d)", i, len(b), max, m)
		}
	}
	// The most sets with the most data Limits admit are accepted (with
	// the short paths of this case); a byte more is refused before it is
	// sent. So is one op of the largest value.
	if lim.MaxTxnBytes > 0 {
		per := lim.MaxTxnBytes/m - lim.TxnOpBytes
		if lim.MaxValueSize > 0 && per > lim.MaxValueSize {
			per = lim.MaxValueSize
		}
		big := sets(m, strings.Repeat("b", per))
		if lim.TxnBytes(big) > lim.MaxTxnBytes {
			t.Fatalf("TxnBytes of %d sets of %d bytes: %d, over MaxTxnBytes %d", m, per, lim.TxnBytes(big), lim.MaxTxnBytes)
		}
		res, err := st.Txn(ctx, big...)
		if err != nil {
			t.Fatalf("%d sets of %d bytes (Limits %+v): %v", m, per, lim, err)
		}
		got, err := st.GetMany(ctx, paths[:m]...)
		must(t, err)
		for i, r := range got {
			r.Stat.Created = 0 // write results do not carry it
			if r.Err != nil || len(r.Data) != per || r.Stat != res[i].Stat {
				t.Fatalf("after the largest set transaction %s holds %d bytes, %+v (%v); the set said %+v", paths[i], len(r.Data), r.Stat, r.Err, res[i].Stat)
			}
		}
		if lim.MaxValueSize <= 0 || per < lim.MaxValueSize {
			over := lim.MaxTxnBytes - lim.TxnBytes(big) + 1
			big[0].Data = append(big[0].Data, make([]byte, over)...)
			if lim.MaxValueSize <= 0 || len(big[0].Data) <= lim.MaxValueSize {
				_, err = st.Txn(ctx, big...)
				is(t, err, coord.ErrTooLarge)
			}
		}
		if lim.MaxValueSize > 0 {
			_, err = st.Txn(ctx, coord.SetOp(paths[0], make([]byte, lim.MaxValueSize), coord.AnyVersion))
			if err != nil {
				t.Fatalf("a txn of one set of MaxValueSize bytes: %v", err)
			}
		}
	}
}

// Deletes of a node and some of its descendants in one transaction: each
// delete sees the ops before it, so a node left with a child that the
// transaction does not delete (a grandchild, a sibling of a deleted child,
// a child created outside) fails it with ErrNotEmpty at that node's delete,
// and nothing is applied.
func testTxnDeleteSubtree(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	for _, p := range []string{"/p/c/g", "/p/c/h", "/p/b", "/q/a/x/y"} {
		_, err := coord.CreateAll(ctx, st, p, nil, coord.Persistent)
		must(t, err)
	}
	// /p/c keeps /p/c/h.
	_, err := st.Txn(ctx, coord.DeleteOp("/p/c/g", 0), coord.DeleteOp("/p/c", 0), coord.DeleteOp("/p/b", 0), coord.DeleteOp("/p", 0))
	wantTxnError(t, err, 1, coord.ErrNotEmpty)
	// /p keeps /p/b.
	_, err = st.Txn(ctx, coord.DeleteOp("/p/c/g", 0), coord.DeleteOp("/p/c/h", 0), coord.DeleteOp("/p/c", 0), coord.DeleteOp("/p", 0))
	wantTxnError(t, err, 3, coord.ErrNotEmpty)
	// A parent before its child.
	_, err = st.Txn(ctx, coord.DeleteOp("/p/b", 0), coord.DeleteOp("/p", 0), coord.DeleteOp("/p/c/g", 0), coord.DeleteOp("/p/c/h", 0), coord.DeleteOp("/p/c", 0))
	wantTxnError(t, err, 1, coord.ErrNotEmpty)
	// /q/a keeps /q/a/x/y two levels down.
	_, err = st.Txn(ctx, coord.DeleteOp("/q/a/x", 0), coord.DeleteOp("/q/a", 0), coord.DeleteOp("/q", 0))
	wantTxnError(t, err, 0, coord.ErrNotEmpty)
	for _, p := range []string{"/p/c/g", "/p/c/h", "/p/c", "/p/b", "/p", "/q/a/x/y"} {
		if _, ok, err := st.Exists(ctx, p); err != nil || !ok {
			t.Fatalf("%s after refused transactions: exists %v, %v", p, ok, err)
		}
	}
	// The whole subtree, children first.
	_, err = st.Txn(ctx, coord.DeleteOp("/p/c/g", 0), coord.DeleteOp("/p/c/h", 0), coord.DeleteOp("/p/c", 0), coord.DeleteOp("/p/b", 0), coord.DeleteOp("/p", 0),
		coord.DeleteOp("/q/a/x/y", 0), coord.DeleteOp("/q/a/x", 0), coord.DeleteOp("/q/a", 0), coord.DeleteOp("/q", 0))
	must(t, err)
	for _, p := range []string{"/p", "/q"} {
		if _, ok, err := st.Exists(ctx, p); err != nil || ok {
			t.Fatalf("%s after its subtree was deleted: exists %v, %v", p, ok, err)
		}
	}
}

// A transaction of deletes and checks may hold Limits().TxnOps of them
// (above MaxTxnOps where the backend says MaxTxnDeleteOps): at that size it
// applies whole (an ephemeral node among them included) or, with its last
// op failing, not at all; one op more, or a create among them past
// MaxTxnOps, is refused with ErrTooLarge before anything is sent, and
// Batches puts deletes in batches of that size.
func testTxnDeleteLimit(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	lim := st.Limits()
	m := lim.TxnOps([]coord.Op{coord.DeleteOp("/x", coord.AnyVersion)})
	if m < lim.MaxTxnOps || m <= 0 {
		t.Fatalf("TxnOps of deletes %d, MaxTxnOps %d", m, lim.MaxTxnOps)
	}
	paths := limitNodes(ctx, t, st, m)
	deletes := func(n int) []coord.Op {
		ops := make([]coord.Op, n)
		for i := range ops {
			ops[i] = coord.DeleteOp(paths[i], coord.AnyVersion)
		}
		return ops
	}
	count := func(what string, want int) {
		t.Helper()
		kids, err := st.Children(ctx, "/l")
		must(t, err)
		if len(kids) != want {
			t.Fatalf("%s: /l holds %d nodes, want %d", what, len(kids), want)
		}
	}
	_, err := st.Txn(ctx, deletes(m+1)...)
	is(t, err, coord.ErrTooLarge)
	if m > lim.MaxTxnOps {
		mixed := append(deletes(m-1), coord.CreateOp("/l/made", nil, coord.Persistent))
		_, err = st.Txn(ctx, mixed...)
		is(t, err, coord.ErrTooLarge)
	}
	failing := deletes(m)
	failing[m-1] = coord.CheckOp(paths[m-1], 7)
	_, err = st.Txn(ctx, failing...)
	wantTxnError(t, err, m-1, coord.ErrBadVersion)
	count("after refused transactions", m+1)
	ok := deletes(m)
	ok[m-1] = coord.CheckOp(paths[m], 0)
	res, err := st.Txn(ctx, ok...)
	must(t, err)
	if len(res) != m {
		t.Fatalf("%d results of %d ops", len(res), m)
	}
	count("after the deletes", 2)
	// Batches put deletes in batches of up to m, a create in one of at most
	// MaxTxnOps: after m and then MaxTxnOps deletes, the create (which a
	// batch of deletes would still have room for if the batch's kind were
	// judged before the create joined it) starts a batch of its own.
	var ops []coord.Op
	for i := range m + lim.MaxTxnOps {
		ops = append(ops, coord.DeleteOp(fmt.Sprintf("/l/d%05d", i), coord.AnyVersion))
	}
	ops = append(ops, coord.CreateOp("/l/made", nil, coord.Persistent))
	batches, err := coord.Batches(ops, lim)
	must(t, err)
	var joined []coord.Op
	for i, b := range batches {
		max := lim.TxnOps(b)
		if len(b) > max || (i == 0 && len(b) != m) {
			t.Fatalf("batch %d of %d ops (limit %d, deletes %d)", i, len(b), max, m)
		}
		joined = append(joined, b...)
	}
	if fmt.Sprint(joined) != fmt.Sprint(ops) {
		t.Fatalf("the batches do not hold the ops in their order: %d ops in, %d out", len(ops), len(joined))
	}
}
