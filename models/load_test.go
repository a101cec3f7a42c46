package models_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/models"
)

// failTxn fails the n-th transaction (counting from 1) it sees, before
// sending it: a store that went away part-way through a load.
type failTxn struct {
	coord.Store
	n, seen int32
}

func (f *failTxn) Txn(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	if atomic.AddInt32(&f.seen, 1) == f.n {
		return nil, coord.Errorf("txn", ops[0].Path, coord.ErrUnavailable)
	}
	return f.Store.Txn(ctx, ops...)
}

// TestLoadChecksSnapshot: a product loaded under another name is that
// product (its slots name it, and changing them leaves the original alone);
// a snapshot whose nodes are not what their paths say is refused before
// anything is written; held locks and a dashboard are not carried; a load
// cut short takes back what it wrote.
func TestLoadChecksSnapshot(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		must(t, models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM))
		g := models.NewServerGroup(product, 1)
		must(t, g.Create(ctx, s))
		must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, "127.0.0.1:6379"), ""))
		must(t, models.SetSlotRange(ctx, s, product, 0, 1023, 1, models.SLOT_STATUS_ONLINE))
		snap, err := models.Dump(ctx, s, product, models.ConfigOnly)
		must(t, err)

		must(t, models.Load(ctx, s, snap, "copy1", nil))
		sl, err := models.GetSlot(ctx, s, "copy1", 5)
		must(t, err)
		if sl.ProductName != "copy1" {
			t.Fatalf("loaded slot names product %q", sl.ProductName)
		}
		must(t, models.NewServerGroup("copy1", 2).Create(ctx, s))
		sl.GroupId = 2
		must(t, sl.Update(ctx, s))
		orig, err := models.GetSlot(ctx, s, product, 5)
		must(t, err)
		if orig.GroupId != 1 {
			t.Fatalf("changing the copy's slot changed the original's: group %d", orig.GroupId)
		}
		if all, err := models.Slots(ctx, s, "copy1"); err != nil || len(all) != models.DEFAULT_SLOT_NUM {
			t.Fatalf("Slots of the copy: %d, %v", len(all), err)
		}

		// A Codis 2 lock node and dashboard left persistent, in a full dump.
		root := models.ProductPath(product)
		must(t, coord.MkdirAll(ctx, s, root+"/LOCK"))
		_, err = s.Create(ctx, root+"/LOCK/lock-0000000001", []byte(`{"desc":"held","hostname":"h","pid":1}`), coord.Persistent)
		must(t, err)
		_, err = s.Create(ctx, root+"/dashboard", []byte(`{"addr": "127.0.0.1:18087", "pid": 1}`), coord.Persistent)
		must(t, err)
		full, err := models.Dump(ctx, s, product, nil)
		must(t, err)
		must(t, models.Load(ctx, s, full, "copy2", nil))
		if info, _, err := models.LockHolder(ctx, s, "copy2"); err != nil || info != nil {
			t.Fatalf("the loaded product is locked: %v, %v", info, err)
		}
		if _, ok, err := s.Exists(ctx, models.ProductPath("copy2")+"/dashboard"); err != nil || ok {
			t.Fatalf("the loaded product has a dashboard node: %v %v", ok, err)
		}
		cfg, err := models.Dump(ctx, s, product, models.ConfigOnly)
		must(t, err)
		for _, n := range cfg.Nodes {
			if strings.HasPrefix(n.Path, "LOCK") || n.Path == "dashboard" {
				t.Fatalf("ConfigOnly keeps %s", n.Path)
			}
		}

		// Malformed snapshots: refused, nothing written.
		edit := func(f func(n *models.SnapshotNode) bool) *models.Snapshot {
			c := &models.Snapshot{Product: snap.Product}
			for _, n := range snap.Nodes {
				if f(&n) {
					c.Nodes = append(c.Nodes, n)
				}
			}
			return c
		}
		for name, bad := range map[string]*models.Snapshot{
			"slot names a missing group": edit(func(n *models.SnapshotNode) bool {
				if n.Path == "slots/slot_7" {
					n.Data = strings.Replace(n.Data, `"group_id":1`, `"group_id":9`, 1)
				}
				return true
			}),
			"slot path and id differ": edit(func(n *models.SnapshotNode) bool {
				if n.Path == "slots/slot_7" {
					n.Data = strings.Replace(n.Data, `"id":7`, `"id":8`, 1)
				}
				return true
			}),
			"unknown slot status": edit(func(n *models.SnapshotNode) bool {
				if n.Path == "slots/slot_7" {
					n.Data = strings.Replace(n.Data, `"status":"online"`, `"status":"up"`, 1)
				}
				return true
			}),
			"slot is not JSON": edit(func(n *models.SnapshotNode) bool {
				if n.Path == "slots/slot_7" {
					n.Data = "{"
				}
				return true
			}),
			"a slot missing":            edit(func(n *models.SnapshotNode) bool { return n.Path != "slots/slot_1023" }),
			"group of a server missing": edit(func(n *models.SnapshotNode) bool { return n.Path != "servers/group_1" }),
			"server path and address differ": edit(func(n *models.SnapshotNode) bool {
				if strings.HasPrefix(n.Path, "servers/group_1/") {
					n.Data = strings.Replace(n.Data, "6379", "6380", 1)
				}
				return true
			}),
			"server of another group": edit(func(n *models.SnapshotNode) bool {
				if strings.HasPrefix(n.Path, "servers/group_1/") {
					n.Data = strings.Replace(n.Data, `"group_id":1`, `"group_id":2`, 1)
				}
				return true
			}),
		} {
			err := models.Load(ctx, s, bad, "copy3", nil)
			if !errors.Is(err, models.ErrMalformed) {
				t.Fatalf("%s: Load: %v, want ErrMalformed", name, err)
			}
			if _, ok, err := s.Exists(ctx, models.ProductPath("copy3")); err != nil || ok {
				t.Fatalf("%s: the refused load wrote the product (%v)", name, err)
			}
		}

		// A store that goes away after the first transaction: what was
		// written is taken back, and the load can be run again.
		lim := s.Limits().MaxTxnOps
		if lim >= len(snap.Nodes)+1 {
			return // one transaction: nothing half-written to take back
		}
		f := &failTxn{Store: s, n: 2}
		is(t, models.Load(ctx, f, snap, "copy4", nil), coord.ErrUnavailable)
		if _, ok, err := s.Exists(ctx, models.ProductPath("copy4")); err != nil || ok {
			t.Fatalf("a load cut short left the product behind (%v)", err)
		}
		must(t, models.Load(ctx, s, snap, "copy4", nil))
	})
}

// readsUnder counts the reads (Get, Children) of nodes at or below a path.
type readsUnder struct {
	coord.Store
	under string
	n     atomic.Int32
}

func (r *readsUnder) count(p string) {
	if p == r.under || strings.HasPrefix(p, r.under+"/") {
		r.n.Add(1)
	}
}

func (r *readsUnder) Get(ctx context.Context, p string) ([]byte, coord.Stat, error) {
	r.count(p)
	return r.Store.Get(ctx, p)
}

func (r *readsUnder) Children(ctx context.Context, p string) ([]string, error) {
	r.count(p)
	return r.Store.Children(ctx, p)
}

// TestDumpSkipsLeftOutSubtrees: a dump without the action history reads
// none of it (at 10,000 actions it read them all only to drop them), and
// still holds every node of the product's definition.
func TestDumpSkipsLeftOutSubtrees(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		for i := 0; i < 20; i++ {
			must(t, models.NewActionWithTimeout(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, i, "", false, 20))
		}
		all, err := models.Dump(ctx, s, product, nil)
		must(t, err)
		r := &readsUnder{Store: s, under: models.GetWatchActionPath(product)}
		snap, err := models.Dump(ctx, r, product, models.ConfigOnly)
		must(t, err)
		if n := r.n.Load(); n > 1 {
			t.Errorf("a dump without the actions read %d nodes under %s", n, r.under)
		}
		want := 0
		for _, n := range all.Nodes {
			if models.ConfigOnly(n.Path, n.Ephemeral) {
				want++
			}
		}
		if len(snap.Nodes) != want || want == 0 {
			t.Errorf("the dump holds %d nodes, want the %d ConfigOnly keeps of %d", len(snap.Nodes), want, len(all.Nodes))
		}
	})
}
