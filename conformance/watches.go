package conformance

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/coordkit/coord/coord"
)

// next returns the next event, failing after Timeout.
func next(t *testing.T, ch <-chan coord.Event) coord.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(Timeout):
		t.Fatalf("no event after %v", Timeout)
	}
	return coord.Event{}
}

// until reads events until ok(ev), failing on an error event or Timeout.
func until(t *testing.T, ch <-chan coord.Event, what string, ok func(coord.Event) bool) coord.Event {
	t.Helper()
	deadline := time.After(Timeout)
	for {
		select {
		case ev, open := <-ch:
			if !open {
				t.Fatalf("watch closed while waiting for %s", what)
			}
			if ev.Err != nil {
				t.Fatalf("watch ended with %v while waiting for %s", ev.Err, what)
			}
			if ok(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s after %v", what, Timeout)
		}
	}
}

func testWatchData(t *testing.T, s *suite) {
	st, writer := s.open(t), s.open(t)
	ctx := ctxT(t)
	ch, err := st.WatchData(ctx, "/w")
	must(t, err)
	if ev := next(t, ch); ev.Exists || ev.Err != nil || ev.Path != "/w" {
		t.Fatalf("first event of a missing node: %+v", ev)
	}
	_, err = writer.Create(ctx, "/w", []byte("one"), coord.Persistent)
	must(t, err)
	ev := until(t, ch, "create", func(ev coord.Event) bool { return ev.Exists })
	if string(ev.Data) != "one" || ev.Stat.Version != 0 {
		t.Fatalf("create event: %q %+v", ev.Data, ev.Stat)
	}
	_, err = writer.Set(ctx, "/w", []byte("two"), 0)
	must(t, err)
	ev = until(t, ch, "set", func(ev coord.Event) bool { return ev.Stat.Version == 1 })
	if string(ev.Data) != "two" || !ev.Exists {
		t.Fatalf("set event: %+v", ev)
	}
	// The version in the event is good for compare-and-set.
	_, err = writer.Set(ctx, "/w", []byte("three"), ev.Stat.Version)
	must(t, err)
	until(t, ch, "second set", func(ev coord.Event) bool { return string(ev.Data) == "three" && ev.Stat.Version == 2 })
	must(t, writer.Delete(ctx, "/w", 2))
	until(t, ch, "delete", func(ev coord.Event) bool { return !ev.Exists })
	// A data watch outlives the node: it sees it come back.
	_, err = writer.Create(ctx, "/w", []byte("again"), coord.Persistent)
	must(t, err)
	until(t, ch, "re-create", func(ev coord.Event) bool { return ev.Exists && string(ev.Data) == "again" && ev.Stat.Version == 0 })
}

func testWatchDataNoMiss(t *testing.T, s *suite) {
	// A change made right after the watch is armed is never missed: the
	// first event is the state the watch was armed on.
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/n", []byte("0"), coord.Persistent)
	must(t, err)
	for i := int64(0); i < 10; i++ {
		wctx, cancel := context.WithCancel(ctx)
		ch, err := st.WatchData(wctx, "/n")
		must(t, err)
		_, err = st.Set(ctx, "/n", []byte(fmt.Sprint(i+1)), i)
		must(t, err)
		until(t, ch, fmt.Sprintf("version %d", i+1), func(ev coord.Event) bool { return ev.Stat.Version == i+1 })
		cancel()
	}
}

func testWatchChildren(t *testing.T, s *suite) {
	st, writer := s.open(t), s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/dir", nil, coord.Persistent)
	must(t, err)
	_, err = st.Create(ctx, "/dir/a", nil, coord.Persistent)
	must(t, err)
	ch, err := st.WatchChildren(ctx, "/dir")
	must(t, err)
	if ev := next(t, ch); !ev.Exists || fmt.Sprint(ev.Children) != "[a]" {
		t.Fatalf("first children event: %+v", ev)
	}
	_, err = writer.Create(ctx, "/dir/c", nil, coord.Persistent)
	must(t, err)
	_, err = writer.Create(ctx, "/dir/b", nil, coord.Ephemeral)
	must(t, err)
	until(t, ch, "[a b c]", func(ev coord.Event) bool { return fmt.Sprint(ev.Children) == "[a b c]" })
	// Data changes of a child and grandchildren are not children events.
	_, err = writer.Set(ctx, "/dir/a", []byte("x"), coord.AnyVersion)
	must(t, err)
	_, err = writer.Create(ctx, "/dir/a/deep", nil, coord.Persistent)
	must(t, err)
	must(t, writer.Delete(ctx, "/dir/c", coord.AnyVersion))
	ev := until(t, ch, "[a b]", func(ev coord.Event) bool { return fmt.Sprint(ev.Children) == "[a b]" })
	_ = ev
	must(t, coord.DeleteAll(ctx, writer, "/dir"))
	deadline := time.After(Timeout)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("channel closed without a final error event")
			}
			if ev.Err == nil {
				continue
			}
			if !errors.Is(ev.Err, coord.ErrNoNode) || ev.Exists {
				t.Fatalf("final event: %+v", ev)
			}
			select {
			case _, ok := <-ch:
				if ok {
					t.Fatal("event after the final one")
				}
			case <-time.After(Timeout):
				t.Fatal("channel not closed after the final event")
			}
			return
		case <-deadline:
			t.Fatalf("no final event after deleting the node")
		}
	}
}

func testWatchChildrenMissing(t *testing.T, s *suite) {
	st := s.open(t)
	_, err := st.WatchChildren(ctxT(t), "/absent")
	is(t, err, coord.ErrNoNode)
	wantPathError(t, err, "/absent")
}

func closedWithin(t *testing.T, ch <-chan coord.Event) {
	t.Helper()
	deadline := time.After(Timeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("watch not closed %v after cancel", Timeout)
		}
	}
}

func testWatchCancel(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/n", nil, coord.Persistent)
	must(t, err)
	for _, kind := range []string{"data", "children"} {
		wctx, cancel := context.WithCancel(ctx)
		var ch <-chan coord.Event
		if kind == "data" {
			ch, err = st.WatchData(wctx, "/n")
		} else {
			ch, err = st.WatchChildren(wctx, "/n")
		}
		must(t, err)
		next(t, ch)
		start := time.Now()
		cancel()
		closedWithin(t, ch)
		t.Logf("%s watch closed %v after cancel", kind, time.Since(start))
	}
	// The store still works and changes after the cancel reach no one.
	_, err = st.Set(ctx, "/n", []byte("after"), coord.AnyVersion)
	must(t, err)
}

func testWatchLastState(t *testing.T, s *suite) {
	st, writer := s.open(t), s.open(t)
	ctx := ctxT(t)
	const writes = 200
	_, err := writer.Create(ctx, "/burst", []byte("0"), coord.Persistent)
	must(t, err)
	ch, err := st.WatchData(ctx, "/burst")
	must(t, err)
	for i := int64(1); i <= writes; i++ {
		_, err := writer.Set(ctx, "/burst", []byte(fmt.Sprint(i)), i-1)
		must(t, err)
	}
	// A slow consumer: states are coalesced, never reordered, and the last
	// one arrives.
	last := int64(-1)
	count := 0
	deadline := time.After(Timeout)
	for last != writes {
		select {
		case ev, ok := <-ch:
			if !ok || ev.Err != nil {
				t.Fatalf("watch ended: %v", ev.Err)
			}
			count++
			if ev.Stat.Version < last {
				t.Fatalf("version %d after %d", ev.Stat.Version, last)
			}
			if string(ev.Data) != fmt.Sprint(ev.Stat.Version) {
				t.Fatalf("event data %q does not match its version %d", ev.Data, ev.Stat.Version)
			}
			last = ev.Stat.Version
			time.Sleep(2 * time.Millisecond)
		case <-deadline:
			t.Fatalf("last state (version %d) not delivered; last seen %d", writes, last)
		}
	}
	t.Logf("%d writes delivered as %d events", writes, count)
}

func testWatchStoreClosed(t *testing.T, s *suite) {
	st := s.open(t)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/n", nil, coord.Persistent)
	must(t, err)
	dch, err := st.WatchData(ctx, "/n")
	must(t, err)
	cch, err := st.WatchChildren(ctx, "/n")
	must(t, err)
	next(t, dch)
	next(t, cch)
	must(t, st.Close())
	for _, ch := range []<-chan coord.Event{dch, cch} {
		deadline := time.After(Timeout)
		sawClosed := false
	loop:
		for {
			select {
			case ev, ok := <-ch:
				if !ok {
					break loop
				}
				if ev.Err != nil {
					if !errors.Is(ev.Err, coord.ErrClosed) {
						t.Fatalf("final event %v, want ErrClosed", ev.Err)
					}
					sawClosed = true
				}
			case <-deadline:
				t.Fatal("watch goes on after Close")
			}
		}
		if !sawClosed {
			t.Fatal("watch closed without an ErrClosed event")
		}
	}
}

func testWatchEphemeral(t *testing.T, s *suite) {
	owner, st := s.open(t), s.open(t)
	ctx := ctxT(t)
	_, err := owner.Create(ctx, "/proxy", []byte("p"), coord.Ephemeral)
	must(t, err)
	ch, err := st.WatchData(ctx, "/proxy")
	must(t, err)
	if ev := next(t, ch); !ev.Exists || !ev.Stat.Ephemeral {
		t.Fatalf("first event %+v", ev)
	}
	must(t, owner.Close())
	until(t, ch, "removal of the ephemeral node", func(ev coord.Event) bool { return !ev.Exists })
}

// A change of a child's data is not a children event: after it, the next
// event a children watch sends is the next change of the children.
func testWatchChildrenIgnoresData(t *testing.T, s *suite) {
	ctx := ctxT(t)
	st := s.open(t)
	_, err := st.Create(ctx, "/dir", nil, coord.Persistent)
	must(t, err)
	_, err = st.Create(ctx, "/dir/a", []byte("1"), coord.Persistent)
	must(t, err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := st.WatchChildren(wctx, "/dir")
	must(t, err)
	if ev := <-events; len(ev.Children) != 1 {
		t.Fatalf("first event %v", ev.Children)
	}
	for i := 0; i < 3; i++ {
		_, err = st.Set(ctx, "/dir/a", []byte{byte('2' + i)}, coord.AnyVersion)
		must(t, err)
	}
	// No event may come of it. (A slow one would pass unseen; a bound that
	// holds on a loaded machine can only make this check weaker, not flaky.)
	select {
	case ev := <-events:
		t.Fatalf("a child's data change sent a children event: %v", ev.Children)
	case <-time.After(300 * time.Millisecond):
	}
	_, err = st.Create(ctx, "/dir/b", nil, coord.Persistent)
	must(t, err)
	select {
	case ev := <-events:
		if len(ev.Children) != 2 {
			t.Fatalf("after data changes and a create, the event is %v, want [a b]", ev.Children)
		}
	case <-time.After(Timeout):
		t.Fatal("no event for the new child")
	}
}

// A children watch whose node is deleted and at once created again (with
// the same children) ends with ErrNoNode: the watcher must not carry on as
// if the node it watched were still the same one.
func testWatchChildrenRecreated(t *testing.T, s *suite) {
	st, writer := s.open(t), s.open(t)
	ctx := ctxT(t)
	for i := range 3 {
		_, err := st.Create(ctx, "/dir", nil, coord.Persistent)
		must(t, err)
		ch, err := st.WatchChildren(ctx, "/dir")
		must(t, err)
		if ev := next(t, ch); !ev.Exists || len(ev.Children) != 0 {
			t.Fatalf("first children event: %+v", ev)
		}
		must(t, writer.Delete(ctx, "/dir", coord.AnyVersion))
		_, err = writer.Create(ctx, "/dir", nil, coord.Persistent)
		must(t, err)
		deadline := time.After(Timeout)
	wait:
		for {
			select {
			case ev, ok := <-ch:
				if !ok {
					t.Fatalf("round %d: channel closed without a final error event", i)
				}
				if ev.Err == nil {
					t.Fatalf("round %d: the watch went on after its node was deleted: %+v", i, ev)
				}
				if !errors.Is(ev.Err, coord.ErrNoNode) || ev.Exists {
					t.Fatalf("round %d: final event %+v, want ErrNoNode", i, ev)
				}
				break wait
			case <-deadline:
				t.Fatalf("round %d: no final event after the node was deleted and created again", i)
			}
		}
		must(t, writer.Delete(ctx, "/dir", coord.AnyVersion))
	}
}

// testNoGoroutinesLeft: a store that has had a session, ephemeral nodes,
// watches (one cancelled, others still open) and a held lock leaves no
// goroutine of its own running once Close has returned and its watches
// have closed: a program that opens and closes stores does not grow.
func testNoGoroutinesLeft(t *testing.T, s *suite) {
	// Goroutines that were there before this store are not its own: those
	// of other stores (earlier cases', being closed) and of a server that
	// runs in the process, which the first store of a run may start (so one
	// is opened and closed first).
	must(t, s.b.Open(t, s.ns).Close())
	before := goleak.IgnoreCurrent()
	st := s.b.Open(t, s.ns)
	ctx := ctxT(t)
	_, err := st.Create(ctx, "/n", nil, coord.Persistent)
	must(t, err)
	_, err = st.Create(ctx, "/n/e", []byte("x"), coord.Ephemeral)
	must(t, err)
	cancelled, cancel := context.WithCancel(ctx)
	var chans []<-chan coord.Event
	for _, w := range []func(context.Context, string) (<-chan coord.Event, error){st.WatchData, st.WatchChildren} {
		for _, wctx := range []context.Context{cancelled, ctx} {
			ch, err := w(wctx, "/n")
			must(t, err)
			next(t, ch)
			chans = append(chans, ch)
		}
	}
	m := coord.NewMutex(st, "/lock", "m-", nil)
	must(t, m.Lock(ctx))
	cancel()
	closedWithin(t, chans[0])
	closedWithin(t, chans[2])
	must(t, st.Close())
	for _, ch := range chans {
		closedWithin(t, ch)
	}
	// Goroutines that are on their way out get Timeout to finish (goleak's
	// own retries last about half a second: short on a loaded machine).
	for deadline := time.Now().Add(Timeout); ; {
		err := goleak.Find(append([]goleak.Option{before}, serverGoroutines(s.b.ServerFuncs)...)...)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left %v after Close: %v", Timeout, err)
		}
	}
}

// serverGoroutines returns goleak options leaving out the goroutines running
// now that have on their stack a function whose name starts with one of
// prefixes (Backend.ServerFuncs).
func serverGoroutines(prefixes []string) []goleak.Option {
	if len(prefixes) == 0 {
		return nil
	}
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	seen := map[string]bool{}
	var opts []goleak.Option
	for _, line := range strings.Split(string(buf), "\n") {
		// A frame is "pkg.Func(args)" on a line of its own (its file and
		// line follow, indented); the arguments hold no parenthesis.
		if line == "" || strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "goroutine ") || strings.HasPrefix(line, "created by ") {
			continue
		}
		fn := line
		if i := strings.LastIndexByte(fn, '('); i > 0 {
			fn = fn[:i]
		}
		if seen[fn] {
			continue
		}
		seen[fn] = true
		for _, p := range prefixes {
			if strings.HasPrefix(fn, p) {
				opts = append(opts, goleak.IgnoreAnyFunction(fn))
				break
			}
		}
	}
	return opts
}
