package conformance

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
)

// Partition is a cluster of three or more members that a test can cut
// apart: a member cut off from its peers still takes its clients'
// connections. A backend's own tests run PartitionedLeader with it (not
// every backend's test cluster can be cut apart on one loopback address).
type Partition struct {
	// Leader returns the index of the member that leads.
	Leader func(t testing.TB) int
	// OpenOn opens a store on namespace ns that talks to member i alone,
	// with session timeout ttl.
	OpenOn func(t testing.TB, i int, ns string, ttl time.Duration) coord.Store
	// OpenBut opens a store on namespace ns that talks to every member but
	// i, with a session that outlives the election of a new leader.
	OpenBut func(t testing.TB, i int, ns string) coord.Store
	// Isolate cuts member i off from the others, both ways; Heal ends it.
	Isolate func(i int)
	Heal    func(i int) error
	// TTL is the session timeout of the store on the cut-off member.
	TTL time.Duration
}

// PartitionedLeader cuts the leader off from the other members while a
// client of it alone holds a Mutex and a client of the majority waits for
// it. On one clock:
//   - the minority side acknowledges no write and serves no stale read: a
//     set through it fails, and a read through it after the majority wrote
//     either fails or sees that write;
//   - the majority takes writes (a set in flight while its members elect
//     has an unknown outcome and is sent again, as its caller would);
//   - the holder's Lost closes before the waiter is given the lock, which
//     it is within the session's TTL and an election;
//   - once healed, the set the minority refused was never applied.
func PartitionedLeader(t *testing.T, p Partition) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lead := p.Leader(t)
	ns := fmt.Sprintf("partition-%d", time.Now().UnixNano())
	h := p.OpenOn(t, lead, ns, p.TTL)
	defer h.Close()
	w := p.OpenBut(t, lead, ns)
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
	p.Isolate(lead)
	defer p.Heal(lead)
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	_, serr := h.Set(sctx, "/data", []byte("minority"), coord.AnyVersion)
	scancel()
	if serr == nil {
		t.Fatal("a set was acknowledged by a member cut off from the quorum")
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		wctx, wcancel := context.WithDeadline(ctx, deadline)
		_, err := w.Set(wctx, "/data", []byte("new"), coord.AnyVersion)
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
	t.Logf("set through the cut-off member: %v; read: %q %v", serr, data, rerr)
	t.Logf("after the cut: holder told at %v, waiter given the lock at %v (TTL %v)", lost.Sub(cutAt).Round(time.Millisecond), a.at.Sub(cutAt).Round(time.Millisecond), p.TTL)

	if err := p.Heal(lead); err != nil {
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
