package models_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
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

// healthy fails the test if a proxy stopped or was marked offline.
func healthy(t *testing.T, s coord.Store, proxies ...*proxysim.Proxy) {
	t.Helper()
	for _, p := range proxies {
		select {
		case <-p.Done():
			t.Errorf("proxy %s stopped: %v", p.Info().Id, p.Err())
		default:
		}
		pi, err := models.GetProxyInfo(ctxT(t), s, product, p.Info().Id)
		if err != nil {
			t.Errorf("proxy %s: %v", p.Info().Id, err)
		} else if pi.State != models.PROXY_STATE_ONLINE {
			t.Errorf("healthy proxy %s is %s", p.Info().Id, pi.State)
		}
	}
}

// The faithful proxy model answers only the newest action: two actions
// announced before it reads R/actions leave the older one unanswered, as a
// real Codis 2 proxy does. (This is what the product lock is for; the test
// makes sure the model shows it, so that the tests below could fail.)
func TestFaithfulProxyMissesOlderAction(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		p := startProxy(t, open, "proxy_1", proxysim.Options{Delay: 2 * time.Second}, true)
		// Action A, then while the proxy is still busy with A, B and C
		// appear together, written as a tool that neither locks nor waits
		// writes them: it answers C and never B.
		a, err := models.GetSlot(ctx, s, product, 1)
		must(t, err)
		must(t, models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, a, "", false))
		seqs, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		data := raw(t, s, fmt.Sprintf("%s/%010d", models.GetWatchActionPath(product), seqs[len(seqs)-1]))
		// Wait until the proxy is busy with A (it may still be loading
		// its slots when A appears; then it would see A and B together).
		a0 := int64(seqs[len(seqs)-1])
		for until := time.Now().Add(20 * time.Second); p.Busy() != a0 && !contains(p.Handled(), a0) && time.Now().Before(until); {
			time.Sleep(5 * time.Millisecond)
		}
		if p.Busy() != a0 {
			t.Fatalf("the proxy is not busy with action %d (busy %d, handled %v)", a0, p.Busy(), p.Handled())
		}
		b, c := rawAction(t, s, data), rawAction(t, s, data)
		if p.Busy() != a0 {
			t.Fatalf("writing actions %d and %d took longer than the proxy's delay of 2s for %d (handled %v)", b, c, a0, p.Handled())
		}
		deadline := time.Now().Add(20 * time.Second)
		for !contains(p.Handled(), c) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !contains(p.Handled(), c) {
			t.Fatalf("the newest action %d was not answered: handled %v", c, p.Handled())
		}
		if contains(p.Handled(), b) {
			t.Fatalf("the model answered action %d, which a Codis 2 proxy skips (handled %v)", b, p.Handled())
		}
	})
}

// rawAction announces an action as Codis 2's NewAction does, without the
// product lock and without waiting: the response directory takes the
// number, the action appears under it.
func rawAction(t *testing.T, s coord.Store, data string) int64 {
	t.Helper()
	ctx := ctxT(t)
	resp, err := s.Create(ctx, models.GetActionResponsePath(product)+"/", []byte(data), coord.Sequential)
	must(t, err)
	_, err = s.Create(ctx, models.GetWatchActionPath(product)+"/"+coord.Base(resp), []byte(data), coord.Persistent)
	must(t, err)
	seq, err := strconv.ParseInt(coord.Base(resp), 10, 64)
	must(t, err)
	return seq
}

// noGroup fails the test if group id exists.
func noGroup(t *testing.T, s coord.Store, id int) {
	t.Helper()
	ok, err := models.GroupExists(ctxT(t), s, product, id)
	must(t, err)
	if ok {
		t.Fatalf("a refused change made group %d", id)
	}
}

func contains(list []int64, v int64) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Unconfirmed actions back to back (Codis 2 returns at once from them) are
// each answered by a slow faithful proxy: the next waits for the previous.
func TestUnconfirmedActionsAllAnswered(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		p := startProxy(t, open, "proxy_1", proxysim.Options{Delay: 200 * time.Millisecond}, true)
		g, err := models.GetGroup(ctx, s, product, 1)
		must(t, err)
		var made []int64
		for i := 0; i < 4; i++ {
			must(t, models.NewAction(ctx, s, product, models.ACTION_TYPE_SERVER_GROUP_CHANGED, g, "", false))
			seqs, err := models.GetActionSeqList(ctx, s, product)
			must(t, err)
			made = append(made, int64(seqs[len(seqs)-1]))
		}
		deadline := time.Now().Add(20 * time.Second)
		for !contains(p.Handled(), made[len(made)-1]) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		for _, seq := range made {
			if !contains(p.Handled(), seq) {
				t.Errorf("unconfirmed action %d never answered (handled %v)", seq, p.Handled())
			}
		}
		healthy(t, s, p)
	})
}

// Many writers at once, in one process and from separate stores (as
// separate processes are), beside faithful proxies: every change succeeds,
// every confirmed action is answered by every proxy, no healthy proxy is
// marked offline.
func TestConcurrentWritersBesideFaithfulProxies(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		addGroup(t, ctx, s, 2, "127.0.0.1:6380")
		var proxies []*proxysim.Proxy
		for i := 1; i <= 3; i++ {
			proxies = append(proxies, startProxy(t, open, fmt.Sprintf("proxy_%d", i), proxysim.Options{}, true))
		}
		const writers, rounds = 6, 3
		stores := []coord.Store{s, open(), open()} // writers share some stores, not others
		together(t, writers, func(w int) error {
			st := stores[w%len(stores)]
			for r := 0; r < rounds; r++ {
				id := w*rounds + r // a slot of its own
				sl, err := models.GetSlot(ctx, st, product, id)
				if err == nil {
					sl.GroupId = 1 + (r+w)%2
					err = sl.Update(ctx, st) // slot_changed, confirmed
				}
				if err != nil {
					return fmt.Errorf("round %d: %w", r, err)
				}
			}
			return nil
		})
		healthy(t, s, proxies...)
		// Every action made since the proxies came up was answered by all.
		seqs, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		answered := 0
		for _, seq := range seqs {
			var act models.Action
			must(t, models.GetActionObject(ctx, s, product, int64(seq), &act, ""))
			if len(act.Receivers) == 0 {
				continue // before the proxies
			}
			kids, err := s.Children(ctx, fmt.Sprintf("%s/%010d", models.GetActionResponsePath(product), seq))
			must(t, err)
			if len(kids) != len(proxies) {
				t.Errorf("action %d answered by %v, want all %d proxies", seq, kids, len(proxies))
			}
			answered++
		}
		if answered != writers*rounds {
			t.Errorf("%d actions with receivers, want %d", answered, writers*rounds)
		}
	})
}

// Fifty writers at once, each with a slot range of its own, from ten
// stores: each SetSlotRange goes through in turn under the product lock
// (on Consul without the agent's 429s for too many connections from one
// address), and the slots end as every writer set them, each announced once.
func TestFiftyConcurrentSlotRanges(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		must(t, models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM)) // offline, free to assign
		addGroup(t, ctx, s, 1, "127.0.0.1:6379")
		addGroup(t, ctx, s, 2, "127.0.0.1:6380")
		before, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		const writers, width = 50, 20
		stores := make([]coord.Store, 10)
		for i := range stores {
			stores[i] = open()
		}
		together(t, writers, func(w int) error {
			return models.SetSlotRange(ctx, stores[w%len(stores)], product, w*width, w*width+width-1, 1+w%2, models.SLOT_STATUS_ONLINE)
		})
		slots, err := models.Slots(ctx, s, product)
		must(t, err)
		for _, sl := range slots {
			if w := sl.Id / width; w < writers && (sl.GroupId != 1+w%2 || sl.State.Status != models.SLOT_STATUS_ONLINE) {
				t.Fatalf("slot %d: group %d, %s; writer %d set group %d online", sl.Id, sl.GroupId, sl.State.Status, w, 1+w%2)
			}
		}
		after, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		if len(after)-len(before) != writers {
			t.Fatalf("%d actions for %d SetSlotRange calls", len(after)-len(before), writers)
		}
	})
}

// A Codis 2 dashboard holding R/LOCK (its persistent lock node) holds off
// every change: the call waits, fails with ErrLocked naming the holder when
// its context ends, writes nothing, and goes through once the lock is free.
func TestChangesWaitForDashboardLock(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		must(t, coord.MkdirAll(ctx, s, models.GetLockPath(product)))
		node, err := s.Create(ctx, models.GetLockPath(product)+"/lock-", []byte(`{"desc":"slot migrate","hostname":"dash-1","pid":4242}`), coord.Sequential)
		must(t, err)
		before, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		// While it waits, it reports every second who holds the lock.
		var reports []models.Progress
		short, cancel := context.WithTimeout(models.WithProgress(ctx, func(p models.Progress) { reports = append(reports, p) }), 2500*time.Millisecond)
		defer cancel()
		err = models.NewServerGroup(product, 3).Create(short, open())
		if len(reports) == 0 {
			t.Error("no progress report while waiting 2.5 s for the lock")
		}
		for _, p := range reports {
			if p.Op != "Lock" || len(p.Waiting) != 1 || !strings.Contains(p.Waiting[0], "dash-1") || p.Elapsed < models.ProgressInterval {
				t.Errorf("progress while waiting for the lock: %+v", p)
			}
		}
		is(t, err, coord.ErrLocked)
		is(t, err, context.DeadlineExceeded)
		for _, want := range []string{`"slot migrate"`, "dash-1", "4242", "ServerGroup.Create"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not name %s: %v", want, err)
			}
		}
		if !regexp.MustCompile(`after waiting [0-9.]+s for the product lock`).MatchString(err.Error()) {
			t.Errorf("the error does not say how long it waited: %v", err)
		}
		noGroup(t, s, 3)
		after, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		if len(after) != len(before) {
			t.Fatalf("a refused change announced: %v, before %v", after, before)
		}
		info, holder, err := models.LockHolder(ctx, s, product)
		must(t, err)
		if holder != node || info.Hostname != "dash-1" || info.Pid != 4242 {
			t.Fatalf("LockHolder = %+v at %s, want the dashboard's %s", info, holder, node)
		}
		// Released while a change waits: the change goes through.
		done := make(chan error, 1)
		go func() { done <- models.NewServerGroup(product, 3).Create(ctx, open()) }()
		time.Sleep(300 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("the change did not wait for the lock: %v", err)
		default:
		}
		must(t, s.Delete(ctx, node, coord.AnyVersion))
		select {
		case err := <-done:
			must(t, err)
		case <-time.After(20 * time.Second):
			t.Fatal("the change did not go through after the lock was released")
		}
		if info, _, err := models.LockHolder(ctx, s, product); err != nil || info != nil {
			t.Fatalf("the change left the lock held: %+v, %v", info, err)
		}
	})
}

// A caller holding the product lock passes it with WithLock: its changes go
// through under it (no deadlock); a lock that was lost is refused before
// anything is written.
func TestWithLock(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		p := startProxy(t, open, "proxy_1", proxysim.Options{}, true)
		lock, err := models.NewProductLock(s, product, "operator")
		must(t, err)
		must(t, lock.Lock(ctx))
		lctx := models.WithLock(ctx, lock)
		sl, err := models.GetSlot(ctx, s, product, 3)
		must(t, err)
		sl.GroupId = 2
		addGroup(t, lctx, s, 2, "127.0.0.1:6380")
		must(t, sl.Update(lctx, s)) // confirmed by the proxy, under the lock
		// Without WithLock, the same process waits like any other writer.
		short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		err = models.NewServerGroup(product, 4).Create(short, s)
		is(t, err, coord.ErrLocked)
		noGroup(t, s, 4)
		if !strings.Contains(err.Error(), `"operator"`) {
			t.Errorf("the error does not name the holder: %v", err)
		}
		// Lost (removed by an operator): refused, nothing written.
		must(t, models.ForceRemoveLock(ctx, s, product))
		select {
		case <-lock.Lost():
		case <-time.After(20 * time.Second):
			t.Fatal("the removed lock was not lost")
		}
		// Refused before anything is sent, saying which lock.
		c := &txnCounter{Store: s}
		err = models.NewServerGroup(product, 5).Create(lctx, c)
		is(t, err, coord.ErrLockLost)
		if !strings.Contains(err.Error(), "WithLock") {
			t.Errorf("the error does not say the lock passed with WithLock was lost: %v", err)
		}
		if n := c.txns.Load(); n != 0 {
			t.Errorf("a call under a lock known lost sent %d transactions", n)
		}
		noGroup(t, s, 5)
		healthy(t, s, p)
		if err := lock.Unlock(ctx); err != nil && !errors.Is(err, coord.ErrNoNode) {
			t.Fatal(err)
		}
	})
}

// txnCounter counts the transactions sent through it.
type txnCounter struct {
	coord.Store
	txns atomic.Int64
}

func (c *txnCounter) Txn(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	c.txns.Add(1)
	return c.Store.Txn(ctx, ops...)
}

// A stray child of R/actions makes a Codis 2 proxy panic at the next change,
// so NewAction refuses to announce over it (ErrMalformed naming it) and
// writes nothing; the faithful proxy model panics on it.
func TestStrayActionChild(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		p := startProxy(t, open, "proxy_1", proxysim.Options{}, true)
		before, err := s.Children(ctx, models.GetActionResponsePath(product))
		must(t, err)
		_, err = s.Create(ctx, models.GetWatchActionPath(product)+"/abc", nil, coord.Persistent)
		must(t, err)
		select {
		case <-p.Done():
			is(t, p.Err(), proxysim.ErrPanicked)
		case <-time.After(20 * time.Second):
			t.Fatal("the proxy model did not panic on a stray action name")
		}
		err = models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, models.NewSlot(product, 1), "", false)
		is(t, err, models.ErrMalformed)
		if !strings.Contains(err.Error(), "abc") {
			t.Fatalf("the error does not name the stray node: %v", err)
		}
		after, err := s.Children(ctx, models.GetActionResponsePath(product))
		must(t, err)
		if len(after) != len(before) {
			t.Fatalf("a refused action wrote a response directory: %v", after)
		}
	})
}

// A lock that cannot be taken for another reason than a holder (here the
// store is closed) says so, not that the lock was held.
func TestLockFailureNotTakenForHolder(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		must(t, s.Close())
		err := models.NewServerGroup(product, 3).Create(context.Background(), s)
		is(t, err, coord.ErrClosed)
		if errors.Is(err, coord.ErrLocked) {
			t.Fatalf("a closed store's failure reads as a held lock: %v", err)
		}
	})
}

// TestReceiverIDs: the ids of an action's receivers, whether each is a
// proxy's whole info (what Codis 2 writes) or its bare id.
func TestReceiverIDs(t *testing.T) {
	full, err := json.Marshal(models.ProxyInfo{Id: "proxy_1", Addr: "127.0.0.1:19000", Pid: 7})
	if err != nil {
		t.Fatal(err)
	}
	a := &models.Action{Receivers: []string{string(full), "proxy_2", `{"id":"proxy_3"}`}}
	got := a.ReceiverIDs()
	want := []string{"proxy_1", "proxy_2", "proxy_3"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ReceiverIDs() = %q, want %q", got, want)
	}
	if ids := (&models.Action{}).ReceiverIDs(); len(ids) != 0 {
		t.Errorf("no receivers: %q", ids)
	}
}

// WithLockDesc describes the lock the models functions take: the caller's
// words, then the function's name.
func TestLockDescribedByCaller(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		for _, c := range []struct {
			ctx  context.Context
			want string
		}{
			{ctx, "repair"},
			{models.WithLockDesc(ctx, "coordctl raw put /x (since now)"), "coordctl raw put /x (since now): repair"},
		} {
			must(t, models.WithProductLock(c.ctx, s, product, "repair", func(ctx context.Context, _ coord.Store) error {
				info, _, err := models.LockHolder(ctx, s, product)
				if err != nil || info == nil || info.Desc != c.want {
					t.Errorf("the holder while held: %+v, %v; want desc %q", info, err, c.want)
				}
				return nil
			}))
		}
	})
}

// together runs fn(0) ... fn(n-1) in goroutines released at once (behind a
// barrier), waits for all, and reports each error with its writer.
func together(t *testing.T, n int, fn func(w int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			<-start
			if err := fn(w); err != nil {
				errs <- fmt.Errorf("writer %d: %w", w, err)
			}
		}(w)
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
