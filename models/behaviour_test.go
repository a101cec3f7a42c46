package models_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/models/proxysim"
)

func TestBadInput(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		for _, name := range []string{"", "a/b", ".", "..", "x\x00y"} {
			is(t, models.InitSlotSet(ctx, s, name, 1024), models.ErrInvalidProductName)
			_, err := models.Slots(ctx, s, name)
			is(t, err, models.ErrInvalidProductName)
			_, err = models.ProxyList(ctx, s, name, nil)
			is(t, err, models.ErrInvalidProductName)
			is(t, models.NewServerGroup(name, 1).Create(ctx, s), models.ErrInvalidProductName)
			is(t, models.ForceRemoveLock(ctx, s, name), models.ErrInvalidProductName)
		}
		must(t, models.InitSlotSet(ctx, s, product, 1024))
		for _, id := range []int{-1, 1024, 1 << 40} {
			_, err := models.GetSlot(ctx, s, product, id)
			is(t, err, models.ErrInvalidSlotId)
			is(t, models.NewSlot(product, id).Update(ctx, s), models.ErrInvalidSlotId)
		}
		is(t, models.InitSlotSet(ctx, s, product, 0), models.ErrInvalidSlotId)
		is(t, models.InitSlotSet(ctx, s, product, 1025), models.ErrInvalidSlotId)
		must(t, models.NewServerGroup(product, 1).Create(ctx, s))
		is(t, models.SetSlotRange(ctx, s, product, 10, 5, 1, models.SLOT_STATUS_ONLINE), models.ErrInvalidSlotId)
		is(t, models.SetSlotRange(ctx, s, product, 0, 1024, 1, models.SLOT_STATUS_ONLINE), models.ErrInvalidSlotId)
		is(t, models.SetSlotRange(ctx, s, product, 0, 5, 1, "migrate"), models.ErrUnknownSlotStatus)
		is(t, models.SetSlotRange(ctx, s, product, 0, 5, 1, "bogus"), models.ErrUnknownSlotStatus)
		is(t, models.SetSlotRange(ctx, s, product, 0, 5, 9, models.SLOT_STATUS_ONLINE), models.ErrGroupNotFound)
		is(t, models.SetSlotRange(ctx, s, product, 0, 5, -3, models.SLOT_STATUS_ONLINE), models.ErrInvalidGroupId)
		bad := models.NewSlot(product, 3)
		bad.State.Status = "sideways"
		is(t, bad.Update(ctx, s), models.ErrUnknownSlotStatus)
		is(t, models.SetProxyStatus(ctx, s, product, "p1", "napping"), models.ErrUnknownProxyStatus)
		is(t, models.ActionGC(ctx, s, product, 7, 1), models.ErrInvalidArgument)
		is(t, models.ActionGC(ctx, s, product, models.GC_TYPE_N, -1), models.ErrInvalidArgument)
		is(t, models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, make(chan int), "", false), models.ErrInvalidArgument)
		g := models.NewServerGroup(product, 1)
		is(t, g.AddServer(ctx, s, models.NewServer("primary", "h:1"), ""), models.ErrInvalidServer)
		is(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, "no-port"), ""), models.ErrInvalidServer)
		is(t, models.NewServerGroup(product, 8).AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, "h:1"), ""), models.ErrGroupNotFound)
		is(t, g.RemoveServer(ctx, s, "h:404"), models.ErrServerNotFound)
		_, err := models.ExtraSeqList([]string{"0000000001", "x"})
		is(t, err, models.ErrMalformed)
		seqs, err := models.ExtraSeqList([]string{"0000000010", "0000000002"})
		must(t, err)
		if len(seqs) != 2 || seqs[0] != 2 || seqs[1] != 10 {
			t.Fatalf("ExtraSeqList: %v", seqs)
		}
		// Nothing bad input did wrote a slot.
		slots, err := models.Slots(ctx, s, product)
		must(t, err)
		for _, sl := range slots {
			if sl.GroupId != models.INVALID_ID || sl.State.Status != models.SLOT_STATUS_OFFLINE {
				t.Fatalf("slot %d changed: %+v", sl.Id, sl)
			}
		}
	})
}

// TestSlotRangeWriteBetween: a slot written by someone else between
// SetSlotRange's read and its write fails only the transaction that holds
// it; the others stand, and the slots left are read and written again, so
// that every slot ends in the group and none is written from a stale read.
func TestSlotRangeWriteBetween(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		must(t, models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM))
		for _, id := range []int{1, 2} {
			must(t, models.NewServerGroup(product, id).Create(ctx, s))
		}
		for _, id := range []int{5, 1000} {
			ran := false
			w := &interfereOnTxn{Store: s, prefix: models.GetSlotPath(product, id), fn: func() {
				ran = true
				// Another writer, without the lock (as in an emergency),
				// moves the slot to group 2, still offline.
				sl, err := models.GetSlot(ctx, s, product, id)
				must(t, err)
				sl.GroupId = 2
				must(t, sl.Update(models.WithoutLock(ctx), s))
			}}
			// Each round writes the slots from an offline state.
			must(t, models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM))
			must(t, models.SetSlotRange(ctx, w, product, 0, models.DEFAULT_SLOT_NUM-1, 1, models.SLOT_STATUS_ONLINE))
			if !ran {
				t.Fatalf("no transaction wrote slot %d", id)
			}
			slots, err := models.Slots(ctx, s, product)
			must(t, err)
			for _, sl := range slots {
				if sl.GroupId != 1 || sl.State.Status != models.SLOT_STATUS_ONLINE {
					t.Fatalf("slot %d after a write between (slot %d): group %d, %s", sl.Id, id, sl.GroupId, sl.State.Status)
				}
			}
		}
	})
}

func TestSlotRangeAndMigration(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		must(t, models.InitSlotSet(ctx, s, product, 1024))
		for _, id := range []int{1, 2} {
			g := models.NewServerGroup(product, id)
			must(t, g.Create(ctx, s))
			must(t, g.Create(ctx, s)) // idempotent
			must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, fmt.Sprintf("127.0.0.1:%d", 6378+id)), ""))
		}
		must(t, models.SetSlotRange(ctx, s, product, 0, 511, 1, models.SLOT_STATUS_ONLINE))
		must(t, models.SetSlotRange(ctx, s, product, 512, 1023, 2, models.SLOT_STATUS_ONLINE))
		// Take slot 700 offline; a range around it that is not all offline
		// is refused whole, before anything is written.
		sl, err := models.GetSlot(ctx, s, product, 700)
		must(t, err)
		sl.State.Status = models.SLOT_STATUS_OFFLINE
		must(t, sl.Update(ctx, s))
		is(t, models.SetSlotRange(ctx, s, product, 690, 710, 1, models.SLOT_STATUS_ONLINE), models.ErrSlotNotOffline)
		sl, err = models.GetSlot(ctx, s, product, 700)
		must(t, err)
		if sl.GroupId != 2 || sl.State.Status != models.SLOT_STATUS_OFFLINE {
			t.Fatalf("refused range wrote slot 700: %+v", sl)
		}
		// A stale slot value cannot overwrite a newer one.
		stale, err := models.GetSlot(ctx, s, product, 10)
		must(t, err)
		fresh, err := models.GetSlot(ctx, s, product, 10)
		must(t, err)
		must(t, fresh.Update(ctx, s))
		is(t, stale.Update(ctx, s), coord.ErrBadVersion)

		must(t, models.SetSlotRange(ctx, s, product, 700, 700, 1, models.SLOT_STATUS_ONLINE))
		// With proxies online (slots are set up before proxies start, as
		// Codis requires), changes are confirmed by both.
		p1 := startProxy(t, open, "proxy_1", proxysim.Options{}, true)
		p2 := startProxy(t, open, "proxy_2", proxysim.Options{}, true)
		sl, err = models.GetSlot(ctx, s, product, 701)
		must(t, err)
		sl.State.Status = models.SLOT_STATUS_OFFLINE
		must(t, sl.Update(ctx, s))
		must(t, models.SetSlotRange(ctx, s, product, 701, 701, 1, models.SLOT_STATUS_ONLINE))
		sl, err = models.GetSlot(ctx, s, product, 701)
		must(t, err)
		if sl.GroupId != 1 || sl.State.Status != models.SLOT_STATUS_ONLINE {
			t.Fatalf("slot 701 after SetSlotRange: %+v", sl)
		}
		if len(p1.Handled()) < 2 || len(p2.Handled()) < 2 {
			t.Fatalf("proxies answered %v and %v", p1.Handled(), p2.Handled())
		}
		before := len(p1.Handled())
		sl, err = models.GetSlot(ctx, s, product, 5)
		must(t, err)
		must(t, sl.SetMigrateStatus(ctx, s, 1, 2))
		sl, err = models.GetSlot(ctx, s, product, 5)
		must(t, err)
		if sl.GroupId != 2 || sl.State.Status != models.SLOT_STATUS_MIGRATE || sl.State.MigrateStatus != (models.SlotMigrateStatus{From: 1, To: 2}) {
			t.Fatalf("migrating slot: %+v", sl)
		}
		if got := len(p1.Handled()) - before; got != 2 {
			t.Fatalf("proxy_1 answered %d actions for the migration, want 2 (pre_migrate, migrate)", got)
		}
		if len(p2.Handled()) != len(p1.Handled()) {
			t.Fatalf("proxies answered %v and %v", p1.Handled(), p2.Handled())
		}
		var act models.Action
		seqs, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		must(t, models.GetActionObject(ctx, s, product, int64(seqs[len(seqs)-1]), &act, ""))
		if act.Type != models.ACTION_TYPE_SLOT_MIGRATE || len(act.Receivers) != 2 {
			t.Fatalf("last action %+v", act)
		}
		must(t, models.GetActionObject(ctx, s, product, int64(seqs[len(seqs)-2]), &act, ""))
		if act.Type != models.ACTION_TYPE_SLOT_PREMIGRATE {
			t.Fatalf("action before it: %+v", act)
		}
		mig, err := models.GetMigratingSlots(ctx, s, product)
		must(t, err)
		if len(mig) != 1 || mig[0].Id != 5 {
			t.Fatalf("migrating slots %v", mig)
		}
		is(t, models.NewServerGroup(product, 1).Remove(ctx, s), models.ErrGroupInUse)
		is(t, sl.SetMigrateStatus(ctx, s, 1, 7), models.ErrGroupNotFound)
		is(t, sl.SetMigrateStatus(ctx, s, -1, 2), models.ErrInvalidGroupId)
	})
}

func TestConfirmationAndTimeout(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		good := startProxy(t, open, "proxy_ok", proxysim.Options{}, true)
		start := time.Now()
		var first []models.Progress
		must(t, models.NewAction(models.WithProgress(ctx, func(p models.Progress) { first = append(first, p) }), s, product, models.ACTION_TYPE_SLOT_CHANGED, models.NewSlot(product, 1), "", true))
		t.Logf("one confirmed action: %v", time.Since(start))
		if n := len(first); n == 0 || first[n-1].Done != 1 || first[n-1].Total != 1 || len(first[n-1].Waiting) != 0 {
			t.Fatalf("progress of a confirmed wait: %+v", first)
		}
		if len(good.Handled()) == 0 {
			t.Fatal("proxy did not answer")
		}
		// A proxy that never answers is marked offline; the caller gets
		// ErrReceiverTimeout after the timeout.
		mute := startProxy(t, open, "proxy_mute", proxysim.Options{Mute: true}, true)
		start = time.Now()
		var reports []models.Progress
		pctx := models.WithProgress(ctx, func(p models.Progress) { reports = append(reports, p) })
		err := models.NewActionWithTimeout(pctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, models.NewSlot(product, 1), "", true, 1500)
		is(t, err, models.ErrReceiverTimeout)
		// The wait reported the silent proxy, also while nothing changed.
		last := reports[len(reports)-1]
		if last.Op != "WaitForReceiverWithTimeout" || last.Done != 1 || last.Total != 2 || len(last.Waiting) != 1 || last.Waiting[0] != "proxy_mute" || last.Elapsed < models.ProgressInterval {
			t.Fatalf("progress of a wait with a silent proxy: %+v", reports)
		}
		if !strings.Contains(err.Error(), "proxy_mute") || strings.Contains(err.Error(), "proxy_ok") {
			t.Fatalf("error should name only the silent proxy: %v", err)
		}
		if el := time.Since(start); el < 1500*time.Millisecond {
			t.Fatalf("timed out after %v, before the 1.5s timeout", el)
		}
		// It obeyed mark_offline: a clean shutdown removed its node and fence.
		select {
		case <-mute.Done():
			if mute.Err() != nil {
				t.Fatalf("silent proxy stopped with %v", mute.Err())
			}
		case <-time.After(20 * time.Second):
			t.Fatal("silent proxy still running")
		}
		if _, err := models.GetProxyInfo(ctx, s, product, "proxy_mute"); !errors.Is(err, coord.ErrNoNode) {
			t.Fatalf("silent proxy's node: %v", err)
		}
		fences, err := models.GetFenceProxyMap(ctx, s, product)
		must(t, err)
		if fences[mute.Info().Addr] {
			t.Fatal("clean shutdown left the fence")
		}
		// Without confirmation nothing waits.
		quiet := startProxy(t, open, "proxy_quiet", proxysim.Options{Mute: true}, true)
		must(t, models.NewActionWithTimeout(ctx, s, product, models.ACTION_TYPE_SERVER_GROUP_CHANGED, models.NewServerGroup(product, 1), "", false, 1))
		// A fence with no online proxy refuses a confirmed action, writing nothing.
		quiet.Stop() // killed: its node goes with its session, its fence stays
		deadline := time.Now().Add(20 * time.Second)
		for {
			ps, err := models.ProxyList(ctx, s, product, nil)
			must(t, err)
			if len(ps) == 1 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		before, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		err = models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, models.NewSlot(product, 1), "", true)
		is(t, err, models.ErrFenceWithoutProxy)
		if !strings.Contains(err.Error(), quiet.Info().Addr) {
			t.Fatalf("error does not name the fence: %v", err)
		}
		is(t, models.SetSlotRange(ctx, s, product, 0, 0, 1, models.SLOT_STATUS_ONLINE), models.ErrFenceWithoutProxy)
		after, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		if len(after) != len(before) {
			t.Fatal("a refused action was written")
		}
		must(t, models.ForceRemoveDeadFence(ctx, s, product))
		fences, err = models.GetFenceProxyMap(ctx, s, product)
		must(t, err)
		if len(fences) != 1 || !fences[good.Info().Addr] {
			t.Fatalf("fences after ForceRemoveDeadFence: %v", fences)
		}
		must(t, models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, models.NewSlot(product, 1), "", true))
	})
}

func TestProxyStatus(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		// No slots at all: a proxy cannot go online.
		p := startProxy(t, open, "proxy_0", proxysim.Options{}, false)
		is(t, models.SetProxyStatus(ctx, s, product, "proxy_0", models.PROXY_STATE_ONLINE), models.ErrSlotsNotReady)
		p.Stop()
		must(t, models.ForceRemoveDeadFence(ctx, s, product))
		// One slot offline: still not.
		must(t, models.InitSlotSet(ctx, s, product, 1024))
		g := models.NewServerGroup(product, 1)
		must(t, g.Create(ctx, s))
		must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, "127.0.0.1:6379"), ""))
		must(t, models.SetSlotRange(ctx, s, product, 0, 1022, 1, models.SLOT_STATUS_ONLINE))
		p = startProxy(t, open, "proxy_1", proxysim.Options{}, false)
		err := models.SetProxyStatus(ctx, s, product, "proxy_1", models.PROXY_STATE_ONLINE)
		is(t, err, models.ErrSlotsNotReady)
		if !strings.Contains(err.Error(), "slot 1023") {
			t.Fatalf("error does not name the slot: %v", err)
		}
		p.Stop()
		must(t, models.ForceRemoveDeadFence(ctx, s, product))
		must(t, models.SetSlotRange(ctx, s, product, 1023, 1023, 1, models.SLOT_STATUS_ONLINE))
		p = startProxy(t, open, "proxy_1", proxysim.Options{}, true)
		online, err := models.ProxyList(ctx, s, product, func(pi *models.ProxyInfo) bool { return pi.State == models.PROXY_STATE_ONLINE })
		must(t, err)
		if len(online) != 1 || online[0].Id != "proxy_1" {
			t.Fatalf("online proxies: %v", online)
		}
		is(t, models.SetProxyStatus(ctx, s, product, "nobody", models.PROXY_STATE_OFFLINE), coord.ErrNoNode)
		// mark_offline waits for the proxy to go, within a bound.
		start := time.Now()
		must(t, models.SetProxyStatus(ctx, s, product, "proxy_1", models.PROXY_STATE_MARK_OFFLINE))
		t.Logf("mark_offline returned after %v", time.Since(start))
		<-p.Done()
		if p.Err() != nil {
			t.Fatalf("proxy stopped with %v, want a clean shutdown", p.Err())
		}
		startProxy(t, open, "proxy_hung", proxysim.Options{IgnoreMarkOffline: true}, true)
		old := models.MarkOfflineTimeout
		models.MarkOfflineTimeout = 500 * time.Millisecond
		defer func() { models.MarkOfflineTimeout = old }()
		is(t, models.SetProxyStatus(ctx, s, product, "proxy_hung", models.PROXY_STATE_MARK_OFFLINE), models.ErrMarkOfflineTimeout)
	})
}

func TestActionGCAndLocks(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		for i := 0; i < 6; i++ {
			must(t, models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, models.NewSlot(product, i), "", false))
		}
		seqs, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		if len(seqs) != 6 {
			t.Fatalf("%d actions", len(seqs))
		}
		// GC_TYPE_N keeps keep+500 (ActionGCFloor), as Codis 2 does.
		must(t, models.ActionGC(ctx, s, product, models.GC_TYPE_N, 0))
		if left, _ := models.GetActionSeqList(ctx, s, product); len(left) != 6 {
			t.Fatalf("GC_TYPE_N 0 with 6 actions kept %v, want all (the floor of %d)", left, models.ActionGCFloor)
		}
		// Past the floor: 6 + 500 actions (written as plain nodes named as
		// actions are), keep 2: the newest 502 stay.
		var ops []coord.Op
		for i := 100; i < 100+models.ActionGCFloor; i++ {
			name := fmt.Sprintf("%010d", i)
			ops = append(ops, coord.CreateOp(models.GetActionResponsePath(product)+"/"+name, nil, coord.Persistent),
				coord.CreateOp(models.GetWatchActionPath(product)+"/"+name, []byte(`{"type":"slot_changed","ts":"0"}`), coord.Persistent))
		}
		txns := func(ops []coord.Op) {
			batches, err := coord.Batches(ops, s.Limits())
			must(t, err)
			for _, b := range batches {
				_, err := s.Txn(ctx, b...)
				must(t, err)
			}
		}
		txns(ops)
		var gcReports []models.Progress
		must(t, models.ActionGC(models.WithProgress(ctx, func(p models.Progress) { gcReports = append(gcReports, p) }), s, product, models.GC_TYPE_N, 2))
		// It reported the start and the end (4 actions: one batch).
		if n := len(gcReports); n != 2 || gcReports[0].Done != 0 || gcReports[n-1].Done != 4 || gcReports[n-1].Total != 4 || gcReports[n-1].Op != "ActionGC" {
			t.Fatalf("ActionGC progress: %+v", gcReports)
		}
		left, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		if len(left) != 2+models.ActionGCFloor || left[0] != seqs[4] {
			t.Fatalf("GC_TYPE_N 2 kept %d actions from %d, want %d from %d", len(left), left[0], 2+models.ActionGCFloor, seqs[4])
		}
		resp, err := s.Children(ctx, models.GetActionResponsePath(product))
		must(t, err)
		if len(resp) != 2+models.ActionGCFloor {
			t.Fatalf("%d response directories left", len(resp))
		}
		ops = ops[:0] // the plain ones go again, so that the checks below see only real actions
		for _, seq := range left[2:] {
			name := fmt.Sprintf("%010d", seq)
			ops = append(ops, coord.DeleteOp(models.GetWatchActionPath(product)+"/"+name, coord.AnyVersion),
				coord.DeleteOp(models.GetActionResponsePath(product)+"/"+name, coord.AnyVersion))
		}
		txns(ops)
		must(t, models.ActionGC(ctx, s, product, models.GC_TYPE_SEC, 3600))
		if left, _ := models.GetActionSeqList(ctx, s, product); len(left) != 2 {
			t.Fatalf("GC_TYPE_SEC 3600 removed fresh actions: %v", left)
		}
		time.Sleep(1100 * time.Millisecond)
		must(t, models.ActionGC(ctx, s, product, models.GC_TYPE_SEC, 0))
		if left, _ := models.GetActionSeqList(ctx, s, product); len(left) != 0 {
			t.Fatalf("GC_TYPE_SEC 0 kept %v", left)
		}
		if resp, _ := s.Children(ctx, models.GetActionResponsePath(product)); len(resp) != 0 {
			t.Fatalf("response directories left: %v", resp)
		}
		// Locks: ForceRemoveLock deletes every lock node, even one whose
		// holder is alive (the operator's last resort).
		lock, err := models.NewProductLock(open(), product, "test")
		must(t, err)
		must(t, lock.Lock(ctx))
		must(t, models.ForceRemoveLock(ctx, s, product))
		kids, err := s.Children(ctx, models.GetLockPath(product))
		must(t, err)
		if len(kids) != 0 {
			t.Fatalf("lock nodes left: %v", kids)
		}
		other, err := models.NewProductLock(s, product, "next")
		must(t, err)
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		must(t, other.Lock(c))
		must(t, other.Unlock(ctx))
	})
}

func TestConcurrentMasters(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		ctx := ctxT(t)
		g := models.NewServerGroup(product, 3)
		must(t, g.Create(ctx, open()))
		stores := []coord.Store{open(), open(), open(), open()}
		var wg sync.WaitGroup
		errs := make([]error, len(stores))
		for i, st := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = models.NewServerGroup(product, 3).AddServer(ctx, st, models.NewServer(models.SERVER_TYPE_MASTER, fmt.Sprintf("127.0.0.1:%d", 7000+i)), "")
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else if !errors.Is(err, models.ErrNodeExists) {
				t.Fatal(err)
			}
		}
		servers, err := g.GetServers(ctx, open())
		must(t, err)
		masters := 0
		for _, sv := range servers {
			if sv.Type == models.SERVER_TYPE_MASTER {
				masters++
			}
		}
		if ok != 1 || masters != 1 || len(servers) != 1 {
			t.Fatalf("%d AddServer(master) succeeded, %d masters among %d servers", ok, masters, len(servers))
		}
	})
}

// Behaviours Codis 2 has that a Codis reader relies on: adding the master
// again is "node already exists" and announces nothing; a slot already
// migrating is not put back into pre_migrate.
func TestCodisParity(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		g, err := models.GetGroup(ctx, s, product, 1)
		must(t, err)
		before, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		is(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, "127.0.0.1:6379"), ""), models.ErrNodeExists)
		after, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		if len(after) != len(before) {
			t.Fatalf("adding the master again announced %v", after[len(before):])
		}
		addGroup(t, ctx, s, 2, "127.0.0.1:6390")
		p := startProxy(t, open, "proxy_1", proxysim.Options{}, true)
		sl, err := models.GetSlot(ctx, s, product, 9)
		must(t, err)
		must(t, sl.SetMigrateStatus(ctx, s, 1, 2))
		first, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		// Resumed: the slot is migrating already; only slot_migrate follows.
		sl, err = models.GetSlot(ctx, s, product, 9)
		must(t, err)
		must(t, sl.SetMigrateStatus(ctx, s, 1, 2))
		then, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		if len(then) != len(first)+1 {
			t.Fatalf("a resumed migration announced %d actions, want 1 (slot_migrate)", len(then)-len(first))
		}
		var act models.Action
		must(t, models.GetActionObject(ctx, s, product, int64(then[len(then)-1]), &act, ""))
		if act.Type != models.ACTION_TYPE_SLOT_MIGRATE {
			t.Fatalf("a resumed migration announced %s", act.Type)
		}
		healthy(t, s, p)
	})
}

// answerOnFirstTxn adds an answer to the response directory dir just before
// the first transaction that deletes dir: a proxy answering while ActionGC
// runs.
type answerOnFirstTxn struct {
	coord.Store
	dir  string
	done atomic.Bool
}

func (a *answerOnFirstTxn) Txn(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	if slices.ContainsFunc(ops, func(op coord.Op) bool { return op.Path == a.dir }) && a.done.CompareAndSwap(false, true) {
		if _, err := a.Store.Create(ctx, a.dir+"/late_proxy", nil, coord.Persistent); err != nil {
			return nil, err
		}
	}
	return a.Store.Txn(ctx, ops...)
}

// ActionGC deletes in batches: 300 old actions with their answers go, the
// newest keep+500 stay, progress is reported per batch; an answer that comes
// while a batch is being deleted does not stop it (that batch goes node by
// node) and is deleted with its action.
func TestActionGCBatches(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		const old, keep = 300, 2
		acts, resp := models.GetWatchActionPath(product), models.GetActionResponsePath(product)
		must(t, coord.MkdirAll(ctx, s, acts))
		must(t, coord.MkdirAll(ctx, s, resp))
		var ops []coord.Op
		for i := 0; i < old+keep+models.ActionGCFloor; i++ {
			name := fmt.Sprintf("%010d", i)
			ops = append(ops, coord.CreateOp(acts+"/"+name, []byte(`{"type":"slot_changed","ts":"0"}`), coord.Persistent),
				coord.CreateOp(resp+"/"+name, nil, coord.Persistent))
			if i < old {
				ops = append(ops, coord.CreateOp(resp+"/"+name+"/proxy_1", nil, coord.Persistent), coord.CreateOp(resp+"/"+name+"/proxy_2", nil, coord.Persistent))
			}
		}
		batches, err := coord.Batches(ops, s.Limits())
		must(t, err)
		for _, b := range batches {
			_, err := s.Txn(ctx, b...)
			must(t, err)
		}
		var reports []models.Progress
		late := &answerOnFirstTxn{Store: s, dir: resp + "/0000000005"}
		must(t, models.ActionGC(models.WithProgress(ctx, func(p models.Progress) { reports = append(reports, p) }), late, product, models.GC_TYPE_N, keep))
		if !late.done.Load() {
			t.Fatal("ActionGC wrote no transaction")
		}
		left, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		if len(left) != keep+models.ActionGCFloor || left[0] != old {
			t.Fatalf("kept %d actions from %d, want %d from %d", len(left), left[0], keep+models.ActionGCFloor, old)
		}
		dirs, err := s.Children(ctx, resp)
		must(t, err)
		if len(dirs) != keep+models.ActionGCFloor || dirs[0] != fmt.Sprintf("%010d", old) {
			t.Fatalf("%d response directories left from %s", len(dirs), dirs[0])
		}
		var done []int
		for _, p := range reports {
			done = append(done, p.Done)
			if p.Total != old {
				t.Fatalf("progress %+v, want Total %d", p, old)
			}
		}
		if len(done) < 2 || done[0] != 0 || done[len(done)-1] != old || len(done) > old/10 {
			t.Fatalf("progress Done %v: want 0 first, %d last, one report a batch", done, old)
		}
	})
}
