package zkstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/zkstore"
	"github.com/coordkit/coord/internal/testenv"
)

// TestPartitionedLeader cuts the leader of a 3-member ensemble off from the
// other two (each pair of members talks through a proxy of its own; the
// leader's clients still reach it) while a client of it holds a Mutex and a
// client of the majority waits for it. On one clock:
//   - the minority side acknowledges no write and serves no stale read: a
//     set through it fails, and a read through it after the majority wrote
//     either fails or sees that write;
//   - the holder's Lost closes before the waiter is given the lock (the
//     cut-off leader drops its clients once it misses its followers, and
//     the holder's session ends on its own clock before the new leader,
//     which starts every session's timeout afresh, expires it);
//   - once healed, the set the minority refused was never applied.
func TestPartitionedLeader(t *testing.T) {
	e, links := testenv.StartLinkedEnsemble(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lead := e.Leader(t, 30*time.Second)
	var majority []string
	for i, a := range e.Addrs {
		if i != lead {
			majority = append(majority, a)
		}
	}
	const timeout = 3 * time.Second
	chroot := fmt.Sprintf("/partition-%d", time.Now().UnixNano())
	h, err := zkstore.New(ctx, zkstore.Config{Servers: []string{e.Addrs[lead]}, Chroot: chroot, SessionTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// The waiter's session outlives the majority's election of a new leader,
	// during which its members drop their clients.
	w, err := zkstore.New(ctx, zkstore.Config{Servers: majority, Chroot: chroot, SessionTimeout: 20 * time.Second})
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
	links.Isolate(lead)
	defer links.Heal(lead)
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	_, serr := h.Set(sctx, "/data", []byte("minority"), coord.AnyVersion)
	scancel()
	if serr == nil {
		t.Fatal("a set was acknowledged by a member cut off from the quorum")
	}
	// The majority's members drop their clients too while they elect a new
	// leader: a set in flight then has an unknown outcome, and is sent
	// again, as its caller would.
	for deadline := time.Now().Add(30 * time.Second); ; {
		wctx, wcancel := context.WithDeadline(ctx, deadline)
		_, err = w.Set(wctx, "/data", []byte("new"), coord.AnyVersion)
		wcancel()
		if err == nil {
			break
		}
		if !errors.Is(err, coord.ErrOutcomeUnknown) || time.Now().After(deadline) {
			t.Fatalf("the majority did not take a set: %v", err)
		}
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
	t.Logf("ensemble in %s", e.Addrs)
	t.Logf("set through the cut-off member: %v; read: %q %v", serr, data, rerr)
	t.Logf("after the cut: holder told at %v, waiter given the lock at %v (session timeout %v)", lost.Sub(cutAt).Round(time.Millisecond), a.at.Sub(cutAt).Round(time.Millisecond), timeout)

	if err := links.Heal(lead); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
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
