package coord_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/coordkit/coord/coord"
)

// Each op counts its data and TxnOpBytes against MaxTxnBytes, in CheckTxn
// and in Batches alike; runs of sets may reach MaxTxnSetOps.
func TestTxnBytesCountEachOp(t *testing.T) {
	lim := coord.Limits{MaxValueSize: 500, MaxTxnOps: 10, MaxTxnSetOps: 20, MaxTxnBytes: 1000, TxnOpBytes: 100}
	ops := func(n, size int, kind coord.OpKind) []coord.Op {
		out := make([]coord.Op, n)
		for i := range out {
			p := fmt.Sprintf("/n%d", i)
			if kind == coord.OpCreate {
				out[i] = coord.CreateOp(p, make([]byte, size), coord.Persistent)
			} else {
				out[i] = coord.SetOp(p, make([]byte, size), coord.AnyVersion)
			}
		}
		return out
	}
	ctx := context.Background()
	for _, c := range []struct {
		n, size int
		kind    coord.OpKind
		fits    bool
		batches int
	}{
		{10, 0, coord.OpCreate, true, 1},
		{10, 1, coord.OpCreate, false, 2},
		{9, 11, coord.OpCreate, true, 1},
		{9, 12, coord.OpCreate, false, 2},
		{1, 500, coord.OpSet, true, 1},
		{2, 400, coord.OpSet, true, 1},
		{2, 401, coord.OpSet, false, 2},
		{11, 0, coord.OpCreate, false, 2},
		{10, 0, coord.OpSet, true, 1},
		{11, 0, coord.OpSet, false, 2}, // bytes, not ops: 1100 > 1000
	} {
		o := ops(c.n, c.size, c.kind)
		if got := lim.TxnBytes(o); got != c.n*(c.size+100) {
			t.Fatalf("TxnBytes of %d %s ops of %d bytes: %d", c.n, c.kind, c.size, got)
		}
		err := coord.CheckTxn(ctx, o, lim)
		if c.fits != (err == nil) || (err != nil && !errors.Is(err, coord.ErrTooLarge)) {
			t.Fatalf("CheckTxn of %d %s ops of %d bytes: %v, want fits=%v", c.n, c.kind, c.size, err, c.fits)
		}
		b, err := coord.Batches(o, lim)
		if err != nil || len(b) != c.batches {
			t.Fatalf("Batches of %d %s ops of %d bytes: %d batches, %v, want %d", c.n, c.kind, c.size, len(b), err, c.batches)
		}
		for _, x := range b {
			if err := coord.CheckTxn(ctx, x, lim); err != nil {
				t.Fatalf("a batch of %d %s ops of %d bytes does not fit: %v", len(x), c.kind, c.size, err)
			}
		}
	}
	// Sets past MaxTxnOps, up to MaxTxnSetOps, when the bytes allow.
	lim.MaxTxnBytes = 20 * 100
	if err := coord.CheckTxn(ctx, ops(20, 0, coord.OpSet), lim); err != nil {
		t.Fatalf("20 empty sets under MaxTxnSetOps 20: %v", err)
	}
	if err := coord.CheckTxn(ctx, ops(11, 0, coord.OpCreate), lim); !errors.Is(err, coord.ErrTooLarge) {
		t.Fatalf("11 creates over MaxTxnOps 10: %v", err)
	}
}

// TxnOps and Batches follow a Txn's kinds of ops: only sets and checks
// reach MaxTxnSetOps, only deletes and checks MaxTxnDeleteOps, checks alone
// the larger, any other mix (or a create) MaxTxnOps; a limit below
// MaxTxnOps (0 included) leaves MaxTxnOps.
func TestTxnOpsByKind(t *testing.T) {
	lim := coord.Limits{MaxTxnOps: 10, MaxTxnSetOps: 20, MaxTxnDeleteOps: 15}
	run := func(spec string) []coord.Op {
		var ops []coord.Op
		for i, k := range spec {
			p := fmt.Sprintf("/n%d", i)
			switch k {
			case 's':
				ops = append(ops, coord.SetOp(p, nil, coord.AnyVersion))
			case 'd':
				ops = append(ops, coord.DeleteOp(p, coord.AnyVersion))
			case 'k':
				ops = append(ops, coord.CheckOp(p, coord.AnyVersion))
			case 'c':
				ops = append(ops, coord.CreateOp(p, nil, coord.Persistent))
			}
		}
		return ops
	}
	rep := func(k string, n int) string { return strings.Repeat(k, n) }
	for _, c := range []struct {
		lim     coord.Limits
		spec    string
		txnOps  int
		batches []int
	}{
		{lim, rep("s", 21), 20, []int{20, 1}},
		{lim, rep("d", 16), 15, []int{15, 1}},
		{lim, rep("k", 21), 20, []int{20, 1}},
		{lim, rep("k", 5) + rep("d", 11), 15, []int{15, 1}},
		{lim, rep("k", 5) + rep("s", 16), 20, []int{20, 1}},
		{lim, rep("d", 5) + rep("s", 6), 10, []int{10, 1}},
		{lim, "c" + rep("d", 10), 10, []int{10, 1}},
		{lim, rep("d", 12) + rep("s", 5), 10, []int{12, 5}},
		{lim, rep("s", 12) + rep("d", 5), 10, []int{12, 5}},
		{coord.Limits{MaxTxnOps: 10, MaxTxnDeleteOps: 5}, rep("d", 11), 10, []int{10, 1}},
		{coord.Limits{MaxTxnDeleteOps: 5}, rep("d", 11), 0, []int{11}},
	} {
		ops := run(c.spec)
		if got := c.lim.TxnOps(ops); got != c.txnOps {
			t.Errorf("TxnOps(%s) = %d, want %d", c.spec, got, c.txnOps)
		}
		b, err := coord.Batches(ops, c.lim)
		var sizes []int
		for _, x := range b {
			sizes = append(sizes, len(x))
			if err := coord.CheckTxn(context.Background(), x, c.lim); err != nil {
				t.Errorf("a batch of %s does not fit: %v", c.spec, err)
			}
		}
		if err != nil || fmt.Sprint(sizes) != fmt.Sprint(c.batches) {
			t.Errorf("Batches(%s) = %v (%v), want %v", c.spec, sizes, err, c.batches)
		}
		if c.txnOps > 0 && len(ops) > c.txnOps {
			if err := coord.CheckTxn(context.Background(), ops, c.lim); !errors.Is(err, coord.ErrTooLarge) {
				t.Errorf("CheckTxn of %d ops (%s) over %d = %v, want ErrTooLarge", len(ops), c.spec, c.txnOps, err)
			}
		}
	}
}
