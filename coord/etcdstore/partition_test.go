package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/coord/etcdstore"
)

// TestPartitionedLeader cuts the leader of a 3-member cluster off from the
// other two (a partition: its clients still reach it) while a client of it
// holds a Mutex and a client of the majority waits for it. On one clock:
//   - the minority side acknowledges no write and serves no stale read: a
//     set through it fails, and a read through it after the majority wrote
//     either fails or sees that write;
//   - the holder's Lost closes before the waiter is given the lock (the
//     holder's session ends on its own clock before the majority expires
//     its lease), and the waiter is given it within the session's TTL and
//     an election;
//   - once healed, the set the minority refused was never applied.
func TestPartitionedLeader(t *testing.T) {
	c, err := etcdembed.StartCluster(t.TempDir(), 3, etcdembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lead := -1
	for deadline := time.Now().Add(30 * time.Second); lead < 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		lead = c.Leader()
	}
	if lead < 0 {
		t.Fatal("no leader")
	}
	var majority []string
	for i := 0; i < c.Size(); i++ {
		if i != lead {
			majority = append(majority, c.Member(i).Endpoints()...)
		}
	}
	const ttl = 3 * time.Second
	prefix := fmt.Sprintf("partition-%d", time.Now().UnixNano())
	hcfg := c.Member(lead).Config(prefix)
	hcfg.SessionTTL = ttl
	h, err := etcdstore.New(ctx, hcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	wcfg := c.Config(prefix)
	wcfg.Endpoints, wcfg.SessionTTL = majority, ttl
	w, err := etcdstore.New(ctx, wcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Create(ctx, "/data", []byte("old"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	holder := coord.NewMutex(h, "/LOCK", "lock-", nil)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	lostAt := make(chan time.Time, 1)
	go func() {
		<-holder.Lost()
		lostAt <- time.Now()
	}()
	waiter := coord.NewMutex(w, "/LOCK", "lock-", nil)
	type acquired struct {
		at  time.Time
		err error
	}
	got := make(chan acquired, 1)
	go func() {
		err := waiter.Lock(ctx)
		got <- acquired{time.Now(), err}
	}()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if kids, err := w.Children(ctx, "/LOCK"); err == nil && len(kids) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the waiter did not queue")
		}
	}

	cutAt := time.Now()
	c.Isolate(lead)
	defer c.Heal(lead)
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	_, serr := h.Set(sctx, "/data", []byte("minority"), coord.AnyVersion)
	scancel()
	if serr == nil {
		t.Fatal("a set was acknowledged by a member cut off from the quorum")
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = w.Set(wctx, "/data", []byte("new"), coord.AnyVersion)
	wcancel()
	if err != nil {
		t.Fatalf("the majority did not take a set: %v", err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	data, _, rerr := h.Get(rctx, "/data")
	rcancel()
	if rerr == nil && string(data) != "new" {
		t.Fatalf("the cut-off member served a stale read: %q after the majority wrote \"new\"", data)
	}
	var a acquired
	select {
	case a = <-got:
	case <-time.After(60 * time.Second):
		t.Fatal("the waiter was not given the lock")
	}
	if a.err != nil {
		t.Fatalf("the waiter's Lock: %v", a.err)
	}
	var lost time.Time
	select {
	case lost = <-lostAt:
	default:
		t.Fatal("the waiter was given the lock while the cut-off holder's Lost was still open")
	}
	if lost.After(a.at) {
		t.Fatalf("two holders: the holder was told %v after the waiter got the lock", lost.Sub(a.at))
	}
	t.Logf("set through the cut-off member: %v; read: %q %v", serr, data, rerr)
	t.Logf("after the cut: holder told at %v, waiter given the lock at %v (TTL %v)", lost.Sub(cutAt).Round(time.Millisecond), a.at.Sub(cutAt).Round(time.Millisecond), ttl)

	c.Heal(lead)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		data, _, err := h.Get(rctx, "/data")
		rcancel()
		if err == nil {
			if string(data) != "new" {
				t.Fatalf("after the heal, the data is %q: the refused set was applied", data)
			}
			break
		}
		if time.Now().After(deadline) || !errors.Is(err, coord.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("the healed member does not answer: %v", err)
		}
	}
	if err := waiter.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
