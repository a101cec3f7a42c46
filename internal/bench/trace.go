package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/models"
)

// recorder collects the store calls of several traced stores: who made
// each, what it was, when it was sent and when it was answered. The
// timeline of one operation (a confirmed action, with the proxies' calls
// among the dashboard's) shows which round trips it waits on one after
// the other, which a CPU profile cannot: the time is spent waiting.
type recorder struct {
	mu    sync.Mutex
	on    bool
	calls []call
}

// call is one traced store call, or one watch event (end == start).
type call struct {
	who, op, path string
	start, end    time.Time
	err           error
}

func (r *recorder) add(c call) {
	r.mu.Lock()
	if r.on {
		r.calls = append(r.calls, c)
	}
	r.mu.Unlock()
}

// record starts recording afresh.
func (r *recorder) record() {
	r.mu.Lock()
	r.on, r.calls = true, nil
	r.mu.Unlock()
}

// stop stops recording and returns the calls, in the order sent.
func (r *recorder) stop() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	cs := r.calls
	r.calls = nil
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].start.Before(cs[j].start) })
	return cs
}

// print writes the calls as offsets from the start: when each was sent,
// how long it took, who made it. It ends with the time spent in each kind
// of call and the time no call was in flight (client work and scheduling).
func (tl timeline) print(w io.Writer, title string) {
	fmt.Fprintf(w, "# %s: %s, %d store calls and events\n", title, dur(float64(tl.total)), len(tl.calls))
	type sum struct {
		n int
		d time.Duration
	}
	sums := map[string]*sum{}
	idle, at := time.Duration(0), tl.start // at: the end of the calls so far
	for _, c := range tl.calls {
		d := c.end.Sub(c.start)
		if !strings.HasPrefix(c.op, "event") {
			if sums[c.op] == nil {
				sums[c.op] = &sum{}
			}
			sums[c.op].n++
			sums[c.op].d += d
			if c.start.After(at) {
				idle += c.start.Sub(at)
			}
			if c.end.After(at) {
				at = c.end
			}
		}
		e := ""
		if c.err != nil {
			e = "  (" + oneLine(c.err) + ")"
		}
		fmt.Fprintf(w, "#   +%7.3f ms %7.3f ms  %-10s %-14s %s%s\n", ms(c.start.Sub(tl.start)), ms(d), c.who, c.op, c.path, e)
	}
	if end := tl.start.Add(tl.total); end.After(at) {
		idle += end.Sub(at)
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(sums)) {
		parts = append(parts, fmt.Sprintf("%s %d× %.2f ms", k, sums[k].n, ms(sums[k].d)))
	}
	fmt.Fprintf(w, "#   in calls: %s; nothing in flight: %.2f ms\n", strings.Join(parts, ", "), ms(idle))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// traced is a Store whose calls a recorder notes, under the name who.
type traced struct {
	coord.Store
	who string
	rec *recorder
}

func traceStore(s coord.Store, who string, rec *recorder) coord.Store {
	return &traced{Store: s, who: who, rec: rec}
}

func (t *traced) note(op, path string, start time.Time, err error) {
	t.rec.add(call{who: t.who, op: op, path: path, start: start, end: time.Now(), err: err})
}

func (t *traced) Create(ctx context.Context, path string, data []byte, mode coord.Mode) (string, error) {
	start := time.Now()
	p, err := t.Store.Create(ctx, path, data, mode)
	t.note("Create", path, start, err)
	return p, err
}

func (t *traced) Get(ctx context.Context, path string) ([]byte, coord.Stat, error) {
	start := time.Now()
	d, st, err := t.Store.Get(ctx, path)
	t.note("Get", path, start, err)
	return d, st, err
}

func (t *traced) GetMany(ctx context.Context, paths ...string) ([]coord.GetResult, error) {
	start := time.Now()
	rs, err := t.Store.GetMany(ctx, paths...)
	what := fmt.Sprintf("%d nodes", len(paths))
	if len(paths) == 1 {
		what = paths[0]
	}
	t.note("GetMany", what, start, err)
	return rs, err
}

func (t *traced) Set(ctx context.Context, path string, data []byte, version int64) (coord.Stat, error) {
	start := time.Now()
	st, err := t.Store.Set(ctx, path, data, version)
	t.note("Set", path, start, err)
	return st, err
}

func (t *traced) Delete(ctx context.Context, path string, version int64) error {
	start := time.Now()
	err := t.Store.Delete(ctx, path, version)
	t.note("Delete", path, start, err)
	return err
}

func (t *traced) Exists(ctx context.Context, path string) (coord.Stat, bool, error) {
	start := time.Now()
	st, ok, err := t.Store.Exists(ctx, path)
	t.note("Exists", path, start, err)
	return st, ok, err
}

func (t *traced) Children(ctx context.Context, path string) ([]string, error) {
	start := time.Now()
	kids, err := t.Store.Children(ctx, path)
	t.note("Children", path, start, err)
	return kids, err
}

func (t *traced) Txn(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	start := time.Now()
	rs, err := t.Store.Txn(ctx, ops...)
	kinds := map[coord.OpKind]int{}
	for _, op := range ops {
		kinds[op.Kind]++
	}
	var what []string
	for _, k := range []coord.OpKind{coord.OpCreate, coord.OpSet, coord.OpDelete, coord.OpCheck} {
		if kinds[k] > 0 {
			what = append(what, fmt.Sprintf("%d %s", kinds[k], k))
		}
	}
	path := strings.Join(what, ", ")
	if len(ops) == 1 {
		path += " " + ops[0].Path
	}
	t.note("Txn", path, start, err)
	return rs, err
}

func (t *traced) WatchData(ctx context.Context, path string) (<-chan coord.Event, error) {
	return t.watch(ctx, "WatchData", path, t.Store.WatchData)
}

func (t *traced) WatchChildren(ctx context.Context, path string) (<-chan coord.Event, error) {
	return t.watch(ctx, "WatchChildren", path, t.Store.WatchChildren)
}

// watch arms a watch and notes when it was armed and when the store
// delivered each of its events.
func (t *traced) watch(ctx context.Context, op, path string, arm func(context.Context, string) (<-chan coord.Event, error)) (<-chan coord.Event, error) {
	start := time.Now()
	ch, err := arm(ctx, path)
	t.note(op, path, start, err)
	if err != nil {
		return ch, err
	}
	out := make(chan coord.Event)
	go func() {
		defer close(out)
		for ev := range ch {
			now := time.Now()
			t.rec.add(call{who: t.who, op: "event " + op[len("Watch"):], path: path, start: now, end: now, err: ev.Err})
			select {
			case out <- ev:
			case <-ctx.Done():
				// The caller stopped reading; let the store close ch.
				for range ch {
				}
				return
			}
		}
	}()
	return out, nil
}

// benchTrace, with -trace, prints the timeline of the store calls of one
// SetSlotRange(1024) and of one confirmed action with one receiver (the
// median of 7), the simulated proxy's calls among the dashboard's.
func benchTrace(ctx context.Context, t *table, be *backend) error {
	if !*trace || !t.want(be.name, "trace") {
		return nil
	}
	rec := &recorder{}
	ns := "trace-" + runID
	s0, err := be.store(ctx, ns)
	if err != nil {
		return err
	}
	s := traceStore(s0, "dashboard", rec)
	if err := setupProduct(ctx, s); err != nil {
		return err
	}
	var timelines []timeline
	for i := 0; i < 3; i++ {
		if err := models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM); err != nil {
			return err
		}
		rec.record()
		start := time.Now()
		err := models.SetSlotRange(ctx, s, product, 0, 1023, 1, models.SLOT_STATUS_ONLINE)
		timelines = append(timelines, timeline{start, time.Since(start), rec.stop()})
		if err != nil {
			return err
		}
	}
	medianTimeline(timelines).print(os.Stderr, be.name+": SetSlotRange(1024), no proxy (the median of 3)")

	ps, err := startProxies(ctx, be, ns, s, 1, func(p coord.Store) coord.Store { return traceStore(p, "proxy", rec) })
	defer stopProxies(ps)
	if err != nil {
		return err
	}
	slot := models.NewSlot(product, 1)
	timelines = nil
	for i := 0; i < 8; i++ {
		rec.record()
		start := time.Now()
		err := models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, slot, "", true)
		d := time.Since(start)
		// The proxy's calls after the answer (it re-arms its watch) belong
		// to this action too: let them land.
		time.Sleep(20 * time.Millisecond)
		if i > 0 { // the first is a warm-up
			timelines = append(timelines, timeline{start, d, rec.stop()})
		} else {
			rec.stop()
		}
		if err != nil {
			return err
		}
	}
	medianTimeline(timelines).print(os.Stderr, be.name+": confirmed action, 1 receiver (the median of 7)")
	return nil
}

// timeline is one traced operation: when it started, how long it took,
// and its calls in the order sent.
type timeline struct {
	start time.Time
	total time.Duration
	calls []call
}

func medianTimeline(ts []timeline) timeline {
	sort.Slice(ts, func(i, j int) bool { return ts[i].total < ts[j].total })
	return ts[len(ts)/2]
}
