package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/coord/etcdstore"
)

func TestTimeline(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	cs := []call{
		{who: "dashboard", op: "Txn", path: "1 create", start: at(0), end: at(1)},
		{who: "proxy", op: "Get", path: "/a", start: at(0.5), end: at(2)},
		{who: "dashboard", op: "event Children", path: "/r", start: at(2.5), end: at(2.5)},
		{who: "dashboard", op: "Txn", path: "2 set", start: at(3), end: at(4)},
	}
	var b bytes.Buffer
	timeline{start: t0, total: 5 * time.Millisecond, calls: cs}.print(&b, "one action")
	out := b.String()
	for _, want := range []string{
		"# one action: 5.0ms, 4 store calls and events\n",
		"+  0.500 ms   1.500 ms  proxy      Get            /a\n",
		"+  2.500 ms   0.000 ms  dashboard  event Children /r\n",
		// The event is not a call: 2-3 ms and 4-5 ms have nothing in flight.
		"in calls: Get 1× 1.50 ms, Txn 2× 2.00 ms; nothing in flight: 2.00 ms\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("timeline lacks %q:\n%s", want, out)
		}
	}
}

// TestTracedStore records the calls of a real store, and the events of its
// watches as the store delivers them, only while recording; a watch whose
// context ends leaves no goroutine behind (TestMain checks).
func TestTracedStore(t *testing.T) {
	srv, err := etcdembed.Start(t.TempDir(), etcdembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s0, err := etcdstore.New(ctx, srv.Config("trace"))
	if err != nil {
		t.Fatal(err)
	}
	defer s0.Close()
	rec := &recorder{}
	s := traceStore(s0, "me", rec)
	if _, err := s.Create(ctx, "/before", nil, coord.Persistent); err != nil {
		t.Fatal(err)
	}
	rec.record()
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	events, err := s.WatchData(wctx, "/n")
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-events; ev.Exists {
		t.Fatalf("first event: %+v", ev)
	}
	if _, err := s.Create(ctx, "/n", []byte("x"), coord.Persistent); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; !ev.Exists {
		t.Fatalf("second event: %+v", ev)
	}
	if _, _, err := s.Get(ctx, "/missing"); err == nil {
		t.Fatal("Get of a missing node succeeded")
	}
	if _, err := s.Txn(ctx, coord.SetOp("/n", nil, 0), coord.CheckOp("/before", 0)); err != nil {
		t.Fatal(err)
	}
	if ev := <-events; string(ev.Data) != "" || ev.Stat.Version != 1 {
		t.Fatalf("third event: %+v", ev)
	}
	cs := rec.stop()
	if err := s.Delete(ctx, "/n", coord.AnyVersion); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.who+" "+c.op+" "+c.path)
		if c.end.Before(c.start) {
			t.Errorf("%s %s ends before it starts", c.op, c.path)
		}
	}
	want := "me WatchData /n|me event Data /n|me Create /n|me event Data /n|me Get /missing|me Txn 1 set, 1 check|me event Data /n"
	if strings.Join(got, "|") != want {
		t.Errorf("recorded\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	if cs[4].err == nil {
		t.Error("the failed Get was recorded without its error")
	}
	wcancel()
	for range events {
	}
}
