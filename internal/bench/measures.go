package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/models/proxysim"
)

const product = "bench"

// runBackend runs every measure on one backend; a measure that fails adds
// a row saying so and the others still run.
func runBackend(ctx context.Context, t *table, be *backend) error {
	steps := []struct {
		name string
		fn   func(context.Context, *table, *backend) error
	}{
		{"calls", benchCalls},
		{"children", benchChildren},
		{"SetSlotRange", benchSlotRange},
		{"watch", benchWatch},
		{"confirmed", benchConfirmed},
		{"memory", benchMemory},
		{"trace", benchTrace},
	}
	for _, st := range steps {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := st.fn(ctx, t, be); err != nil {
			t.add(row{backend: be.name, measure: st.name, note: "failed: " + oneLine(err)})
		}
		be.closeAll()
	}
	return nil
}

// pair runs batches of n calls of coordFn and of baseFn in each round,
// alternating which goes first, and returns the time per call of each batch.
func pair(ctx context.Context, n int, coordFn, baseFn func() error) (c, b []float64, err error) {
	batch := func(fn func() error) (float64, error) {
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := fn(); err != nil {
				return 0, err
			}
		}
		return float64(time.Since(start)) / float64(n), nil
	}
	for r := 0; r < *rounds && ctx.Err() == nil; r++ {
		first, second := coordFn, baseFn
		if r%2 == 1 {
			first, second = baseFn, coordFn
		}
		x, err := batch(first)
		if err != nil {
			return nil, nil, err
		}
		y, err := batch(second)
		if err != nil {
			return nil, nil, err
		}
		if r%2 == 1 {
			x, y = y, x
		}
		c, b = append(c, x), append(b, y)
	}
	return c, b, ctx.Err()
}

func ratios(c, b []float64) []float64 {
	var out []float64
	for i := range c {
		if b[i] > 0 {
			out = append(out, c[i]/b[i])
		}
	}
	return out
}

// allocs measures the allocations and bytes per call of fn over n calls
// (background goroutines count too: a rough figure).
func allocs(n int, fn func() error) (float64, float64, error) {
	runtime.GC()
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	for i := 0; i < n; i++ {
		if err := fn(); err != nil {
			return 0, 0, err
		}
	}
	runtime.ReadMemStats(&b)
	return float64(b.Mallocs-a.Mallocs) / float64(n), float64(b.TotalAlloc-a.TotalAlloc) / float64(n), nil
}

func batchSize(be *backend) int {
	if be.name == "consul" {
		return 100
	}
	return 200
}

func benchCalls(ctx context.Context, t *table, be *backend) error {
	s, err := be.store(ctx, "calls-"+runID)
	if err != nil {
		return err
	}
	data := bytes.Repeat([]byte("x"), 100)
	if _, err := coord.CreateAll(ctx, s, "/b/n", data, coord.Persistent); err != nil {
		return err
	}
	if _, err := s.Create(ctx, "/b/dir", nil, coord.Persistent); err != nil {
		return err
	}
	var kids []string
	for i := 0; i < 10; i++ {
		kids = append(kids, fmt.Sprintf("c%d", i))
		if _, err := s.Create(ctx, "/b/dir/"+kids[i], data, coord.Persistent); err != nil {
			return err
		}
	}
	r := be.raw
	token, err := r.put(ctx, be.rawKey("calls/n"), data)
	if err != nil {
		return err
	}
	if err := r.createMany(ctx, be.rawKey("calls/dir"), kids, data); err != nil {
		return err
	}
	version := int64(0)
	type call struct {
		name      string
		coord, rw func() error
	}
	calls := []call{
		{"Get", func() error { _, _, err := s.Get(ctx, "/b/n"); return err },
			func() error { return r.get(ctx, be.rawKey("calls/n")) }},
		{"Exists", func() error { _, _, err := s.Exists(ctx, "/b/n"); return err },
			func() error { return r.exists(ctx, be.rawKey("calls/n")) }},
		{"Children (10)", func() error { _, err := s.Children(ctx, "/b/dir"); return err },
			func() error { _, err := r.children(ctx, be.rawKey("calls/dir")); return err }},
		{"Set", func() error {
			st, err := s.Set(ctx, "/b/n", data, version)
			version = st.Version
			return err
		}, func() error {
			var err error
			token, err = r.set(ctx, be.rawKey("calls/n"), data, token)
			return err
		}},
		{"Create+Delete", func() error {
			if _, err := s.Create(ctx, "/b/cd", data, coord.Persistent); err != nil {
				return err
			}
			return s.Delete(ctx, "/b/cd", 0)
		}, func() error { return r.createDelete(ctx, be.rawKey("calls/cd"), data) }},
	}
	n := batchSize(be)
	for _, c := range calls {
		if !t.want(be.name, c.name) {
			continue
		}
		cs, bs, err := pair(ctx, n, c.coord, c.rw)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		ca, cb, err := allocs(n, c.coord)
		if err != nil {
			return err
		}
		ra, rb, err := allocs(n, c.rw)
		if err != nil {
			return err
		}
		t.add(row{backend: be.name, measure: c.name, coord: dur(median(cs)), base: dur(median(bs)) + " raw",
			ratio: ratioCell(ratios(cs, bs)), note: fmt.Sprintf("allocs %.0f vs %.0f, %.1f vs %.1f KiB", ca, ra, cb/1024, rb/1024)})
	}
	return nil
}

func benchChildren(ctx context.Context, t *table, be *backend) error {
	sizes := []int{10000}
	if *big {
		sizes = append(sizes, 100000)
	}
	for _, size := range sizes {
		name := fmt.Sprintf("Children (%d)", size)
		if !t.want(be.name, name) {
			continue
		}
		s, err := be.store(ctx, fmt.Sprintf("kids%d-%s", size, runID))
		if err != nil {
			return err
		}
		if _, err := s.Create(ctx, "/big", nil, coord.Persistent); err != nil {
			return err
		}
		var ops []coord.Op
		var names []string
		for i := 0; i < size; i++ {
			names = append(names, fmt.Sprintf("c%06d", i))
			ops = append(ops, coord.CreateOp("/big/"+names[i], nil, coord.Persistent))
		}
		batches, err := coord.Batches(ops, s.Limits())
		if err != nil {
			return err
		}
		fill := time.Now()
		for _, b := range batches {
			if _, err := s.Txn(ctx, b...); err != nil {
				return fmt.Errorf("%s: filling: %w", name, err)
			}
		}
		filled := time.Since(fill)
		dir := be.rawKey(fmt.Sprintf("kids%d", size))
		if err := be.raw.createMany(ctx, dir, names, nil); err != nil {
			return fmt.Errorf("%s: raw fill: %w", name, err)
		}
		cs, bs, err := pair(ctx, 3, func() error {
			kids, err := s.Children(ctx, "/big")
			if err == nil && len(kids) != size {
				err = fmt.Errorf("%d children, want %d", len(kids), size)
			}
			return err
		}, func() error {
			n, err := be.raw.children(ctx, dir)
			if err == nil && n != size {
				err = fmt.Errorf("raw: %d children, want %d", n, size)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		t.add(row{backend: be.name, measure: name, coord: dur(median(cs)), base: dur(median(bs)) + " raw",
			ratio: ratioCell(ratios(cs, bs)), note: fmt.Sprintf("made in %s, %d txns", filled.Round(time.Millisecond), len(batches))})
	}
	return nil
}

// setupProduct makes a product with 1024 slots online in group 1 (a
// master at a loopback address nothing listens on: no Redis is called).
func setupProduct(ctx context.Context, s coord.Store) error {
	if err := models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM); err != nil {
		return err
	}
	for _, id := range []int{1, 2} {
		g := models.NewServerGroup(product, id)
		if err := g.Create(ctx, s); err != nil {
			return err
		}
		if err := g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, fmt.Sprintf("127.0.0.1:%d", 6378+id)), ""); err != nil {
			return err
		}
	}
	return models.SetSlotRange(ctx, s, product, 0, 1023, 1, models.SLOT_STATUS_ONLINE)
}

func benchSlotRange(ctx context.Context, t *table, be *backend) error {
	if !t.want(be.name, "SetSlotRange") {
		return nil
	}
	s, err := be.store(ctx, "slots-"+runID)
	if err != nil {
		return err
	}
	if err := models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM); err != nil {
		return err
	}
	g := models.NewServerGroup(product, 1)
	if err := g.Create(ctx, s); err != nil {
		return err
	}
	dir := be.rawKey("slots")
	var names []string
	kvs := map[string][]byte{}
	oneByOne := map[string][]byte{}
	for i := 0; i < models.DEFAULT_SLOT_NUM; i++ {
		sl := models.NewSlot(product, i)
		sl.GroupId, sl.State.Status = 1, models.SLOT_STATUS_ONLINE
		b, err := json.Marshal(sl)
		if err != nil {
			return err
		}
		names = append(names, fmt.Sprintf("slot_%d", i))
		kvs[dir+"/"+names[i]] = b
		oneByOne[models.GetSlotPath(product, i)] = b
	}
	if err := be.raw.createMany(ctx, dir, names, nil); err != nil {
		return err
	}
	var cs, bs, rws, ones []float64
	txns, rwReqs := 0, 0
	for r := 0; r < *rounds && ctx.Err() == nil; r++ {
		for k := 0; k < 4; k++ {
			switch (r + k) % 4 {
			case 0:
				if err := models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM); err != nil {
					return err
				}
				start := time.Now()
				if err := models.SetSlotRange(ctx, s, product, 0, 1023, 1, models.SLOT_STATUS_ONLINE); err != nil {
					return err
				}
				cs = append(cs, float64(time.Since(start)))
			case 1:
				start := time.Now()
				n, err := be.raw.writeAll(ctx, kvs)
				if err != nil {
					return fmt.Errorf("raw: %w", err)
				}
				bs, txns = append(bs, float64(time.Since(start))), n
			case 3:
				start := time.Now()
				n, err := be.raw.readWriteAll(ctx, kvs)
				if err != nil {
					return fmt.Errorf("raw: %w", err)
				}
				rws, rwReqs = append(rws, float64(time.Since(start))), n
			case 2:
				start := time.Now()
				for p, b := range oneByOne {
					if _, err := s.Set(ctx, p, b, coord.AnyVersion); err != nil {
						return err
					}
				}
				ones = append(ones, float64(time.Since(start)))
			}
		}
	}
	t.add(row{backend: be.name, measure: "SetSlotRange(1024)", coord: dur(median(cs)), base: fmt.Sprintf("%s raw, %d txn(s)", dur(median(bs)), txns),
		ratio: ratioCell(ratios(cs, bs)), note: fmt.Sprintf("store txn limit %d ops, %d of sets", s.Limits().MaxTxnOps, max(s.Limits().MaxTxnOps, s.Limits().MaxTxnSetOps))})
	t.add(row{backend: be.name, measure: "SetSlotRange(1024)", coord: dur(median(cs)), base: fmt.Sprintf("%s raw read + compared write", dur(median(rws))),
		ratio: ratioCell(ratios(cs, rws)), note: fmt.Sprintf("the work it must do: %d raw requests", rwReqs)})
	t.add(row{backend: be.name, measure: "SetSlotRange(1024)", coord: dur(median(cs)), base: dur(median(ones)) + " 1024 Sets",
		ratio: ratioCell(ratios(cs, ones)), note: "vs writing each slot on its own (Codis 2)"})
	return nil
}

func benchWatch(ctx context.Context, t *table, be *backend) error {
	if !t.want(be.name, "watch") {
		return nil
	}
	ns := "watch-" + runID
	a, err := be.store(ctx, ns)
	if err != nil {
		return err
	}
	w, err := be.store(ctx, ns)
	if err != nil {
		return err
	}
	if _, err := a.Create(ctx, "/w", nil, coord.Persistent); err != nil {
		return err
	}
	key := be.rawKey("watch")
	if _, err := be.raw.put(ctx, key, nil); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := w.WatchData(wctx, "/w")
	if err != nil {
		return err
	}
	<-ch // the state at arming
	var cs, bs, rs []float64
	for r := 0; r < *rounds && ctx.Err() == nil; r++ {
		var c, b []float64
		for i := 0; i < 10; i++ {
			data := []byte(fmt.Sprintf("%d-%d", r, i))
			start := time.Now()
			if _, err := a.Set(ctx, "/w", data, coord.AnyVersion); err != nil {
				return err
			}
			for ev := range ch {
				if ev.Err != nil {
					return ev.Err
				}
				if bytes.Equal(ev.Data, data) {
					break
				}
			}
			c = append(c, float64(time.Since(start)))
			d, err := be.raw.watchFloor(ctx, key, data)
			if err != nil {
				return fmt.Errorf("raw: %w", err)
			}
			b = append(b, float64(d))
		}
		cs, bs = append(cs, c...), append(bs, b...)
		rs = append(rs, median(c)/median(b))
	}
	t.add(row{backend: be.name, measure: "watch delivery (write to event)", coord: dur(median(cs)), base: dur(median(bs)) + " raw",
		ratio: ratioCell(rs), note: fmt.Sprintf("p99 %s vs %s", dur(quantile(cs, 0.99)), dur(quantile(bs, 0.99)))})
	return nil
}

// startProxies starts n simulated Codis 2 proxies on ns, each with its own
// store (passed through wrap, if not nil), and sets them online.
func startProxies(ctx context.Context, be *backend, ns string, s coord.Store, n int, wrap func(coord.Store) coord.Store) ([]*proxysim.Proxy, error) {
	var ps []*proxysim.Proxy
	open := be.open
	if be.openProxy != nil {
		open = be.openProxy
	}
	for i := 0; i < n; i++ {
		ps2, err := open(ctx, ns)
		if err != nil {
			return ps, err
		}
		if wrap != nil {
			ps2 = wrap(ps2)
		}
		info := models.ProxyInfo{Id: fmt.Sprintf("proxy_%d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 19000+i), Pid: os.Getpid(), StartAt: "bench"}
		p, err := proxysim.Start(ctx, ps2, product, info, proxysim.Options{})
		if err != nil {
			return ps, err
		}
		ps = append(ps, p)
		if err := models.SetProxyStatus(ctx, s, product, info.Id, models.PROXY_STATE_ONLINE); err != nil {
			return ps, err
		}
		select {
		case <-p.Ready():
		case <-p.Done():
			return ps, fmt.Errorf("proxy %s stopped: %v", info.Id, p.Err())
		case <-time.After(60 * time.Second):
			return ps, fmt.Errorf("proxy %s not online after 60s", info.Id)
		}
	}
	return ps, nil
}

func stopProxies(ps []*proxysim.Proxy) {
	for _, p := range ps {
		p.Stop()
	}
}

func benchConfirmed(ctx context.Context, t *table, be *backend) error {
	for _, n := range []int{1, 10, 100} {
		name := fmt.Sprintf("confirmed action, %d receivers", n)
		if !t.want(be.name, name) {
			continue
		}
		if err := confirmed(ctx, t, be, n, name); err != nil {
			t.add(row{backend: be.name, measure: name, note: "failed: " + oneLine(err)})
		}
		be.closeAll()
	}
	return nil
}

func confirmed(ctx context.Context, t *table, be *backend, n int, name string) error {
	ns := fmt.Sprintf("confirm%d-%s", n, runID)
	s, err := be.store(ctx, ns)
	if err != nil {
		return err
	}
	if err := setupProduct(ctx, s); err != nil {
		return err
	}
	ps, err := startProxies(ctx, be, ns, s, n, nil)
	defer stopProxies(ps)
	if err != nil {
		return err
	}
	slot := models.NewSlot(product, 1)
	if err := models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, slot, "", true); err != nil {
		return err // the warm-up
	}
	floorKey := be.rawKey(fmt.Sprintf("floor%d", n))
	if _, err := be.raw.put(ctx, floorKey, nil); err != nil {
		return err
	}
	var cs, polls, floors, rp []float64
	var busy cpuBusy
	for r := 0; r < *rounds && ctx.Err() == nil; r++ {
		var c []float64
		busy.start()
		for i := 0; i < 10; i++ {
			start := time.Now()
			if err := models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, slot, "", true); err != nil {
				return err
			}
			c = append(c, float64(time.Since(start)))
		}
		busy.stop()
		p, err := pollConfirmed(ctx, s, slot, n)
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		for i := 0; i < 3; i++ {
			d, err := be.raw.watchFloor(ctx, floorKey, []byte(fmt.Sprint(r, i)))
			if err != nil {
				return fmt.Errorf("raw: %w", err)
			}
			floors = append(floors, float64(d))
		}
		cs, polls = append(cs, c...), append(polls, p)
		rp = append(rp, median(c)/p)
	}
	for _, p := range ps {
		select {
		case <-p.Done():
			return fmt.Errorf("proxy %s stopped: %v", p.Info().Id, p.Err())
		default:
		}
	}
	t.add(row{backend: be.name, measure: name, coord: fmt.Sprintf("%s (p99 %s)", dur(median(cs)), dur(quantile(cs, 0.99))),
		base: dur(median(polls)) + " 500ms poll", ratio: ratioCell(rp), note: "raw write-to-watch floor " + dur(median(floors)) + busy.String()})
	return nil
}

// pollConfirmed announces an action and waits for its answers as a Codis 2
// dashboard does: it reads the answers, and sleeps 500 ms while some are
// missing.
func pollConfirmed(ctx context.Context, s coord.Store, slot *models.Slot, n int) (float64, error) {
	start := time.Now()
	if err := models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, slot, "", false); err != nil {
		return 0, err
	}
	seqs, err := models.GetActionSeqList(ctx, s, product)
	if err != nil || len(seqs) == 0 {
		return 0, fmt.Errorf("no action: %v", err)
	}
	dir := coord.Join(models.GetActionResponsePath(product), fmt.Sprintf("%010d", seqs[len(seqs)-1]))
	for {
		kids, err := s.Children(ctx, dir)
		if err != nil {
			return 0, err
		}
		if len(kids) >= n {
			return float64(time.Since(start)), nil
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// cpuBusy adds up how busy the machine's CPUs were (/proc/stat) over the
// spans between start and stop: with every server and simulated proxy on
// one host, a figure near 100 % means the CPUs, not the protocol, set the
// pace.
type cpuBusy struct {
	at         [2]uint64 // busy and total jiffies at start
	busy, all  uint64
	unreadable bool
}

func cpuJiffies() (busy, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, true
}

func (c *cpuBusy) start() {
	b, t, ok := cpuJiffies()
	c.at, c.unreadable = [2]uint64{b, t}, c.unreadable || !ok
}

func (c *cpuBusy) stop() {
	b, t, ok := cpuJiffies()
	if !ok || c.unreadable {
		c.unreadable = true
		return
	}
	c.busy += b - c.at[0]
	c.all += t - c.at[1]
}

// String is ", CPUs N% busy", or nothing when it could not be read.
func (c *cpuBusy) String() string {
	if c.unreadable || c.all == 0 {
		return ""
	}
	return fmt.Sprintf(", CPUs %.0f%% busy", 100*float64(c.busy)/float64(c.all))
}

type usage struct {
	heap       uint64
	goroutines int
}

func measureUsage() usage {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return usage{heap: m.HeapInuse, goroutines: runtime.NumGoroutine()}
}

func per(a, b usage, n int) string {
	return fmt.Sprintf("%.0f KiB, %.1f goroutines", (float64(b.heap)-float64(a.heap))/1024/float64(n), float64(b.goroutines-a.goroutines)/float64(n))
}

func benchMemory(ctx context.Context, t *table, be *backend) error {
	if !t.want(be.name, "memory") {
		return nil
	}
	ns := "mem-" + runID
	const stores = 20
	before := measureUsage()
	for i := 0; i < stores; i++ {
		s, err := be.store(ctx, ns)
		if err != nil {
			return err
		}
		if _, err := s.Session(ctx); err != nil {
			return err
		}
	}
	after := measureUsage()
	if _, err := be.raw.put(ctx, be.rawKey("mem"), nil); err != nil {
		return err
	}
	var raws []raw
	defer func() {
		for _, r := range raws {
			r.close()
		}
	}()
	for i := 0; i < stores; i++ {
		r, err := be.newRaw(ctx)
		if err != nil {
			return err
		}
		raws = append(raws, r)
		if err := r.get(ctx, be.rawKey("mem")); err != nil {
			return err
		}
	}
	rawAfter := measureUsage()
	t.add(row{backend: be.name, measure: "memory per store (with its session)", coord: per(before, after, stores), base: per(after, rawAfter, stores) + " raw client"})
	be.closeAll()

	const watches = 200
	s, err := be.store(ctx, ns)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	before = measureUsage()
	for i := 0; i < watches; i++ {
		ch, err := s.WatchData(wctx, fmt.Sprintf("/m%d", i))
		if err != nil {
			return err
		}
		<-ch
	}
	after = measureUsage()
	t.add(row{backend: be.name, measure: "memory per data watch", coord: per(before, after, watches)})
	cancel()
	be.closeAll()

	const proxies = 10
	s, err = be.store(ctx, ns+"-p")
	if err != nil {
		return err
	}
	if err := setupProduct(ctx, s); err != nil {
		return err
	}
	before = measureUsage()
	ps, err := startProxies(ctx, be, ns+"-p", s, proxies, nil)
	defer stopProxies(ps)
	if err != nil {
		return err
	}
	after = measureUsage()
	t.add(row{backend: be.name, measure: "memory per simulated proxy", coord: per(before, after, proxies)})
	return nil
}
