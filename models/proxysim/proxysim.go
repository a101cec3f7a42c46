// Package proxysim plays the part of a Codis 2.x proxy towards the
// coordination store, faithfully, faults included (docs/LAYOUT.md): it
// registers itself (ephemeral node, offline, then its fence), waits to be set
// online, loads the slots and checks them as a proxy does, and shuts down
// cleanly on mark_offline. Like a real Codis 2 proxy it answers only the
// newest action it finds at each change of R/actions (an older one that
// appeared at the same time is never answered), exits when its node changes
// otherwise or its session ends (leaving its fence), and "panics" (stops with
// ErrPanicked) on a child of R/actions that is not a sequence number or an
// action that vanishes before it reads it. It serves no Redis traffic; tests
// and the demo use it to see what a real cluster would.
package proxysim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/models"
)

// Options change how the simulated proxy behaves; the zero value is a
// well-behaved proxy.
type Options struct {
	// Delay before answering each action.
	Delay time.Duration
	// Mute makes the proxy never answer actions (to test timeouts); it still
	// obeys mark_offline.
	Mute bool
	// IgnoreMarkOffline makes the proxy keep running when set mark_offline
	// (a hung proxy).
	IgnoreMarkOffline bool
}

// Proxy is a running simulated proxy.
type Proxy struct {
	store   coord.Store
	product string
	opt     Options
	info    models.ProxyInfo

	mu      sync.Mutex
	handled []int64
	busy    int64 // the action being handled, or -1
	err     error
	done    chan struct{}
	ready   chan struct{}
	cancel  context.CancelFunc
}

// ErrExited is the error of a proxy that exited the way a Codis proxy exits
// on a state change other than mark_offline, or on bad slot data.
var ErrExited = errors.New("proxy exited")

// ErrPanicked is the error of a proxy that stopped where a Codis 2 proxy
// panics: a child of R/actions that is not a number, or an action that is
// gone when the proxy reads it.
var ErrPanicked = errors.New("proxy panicked")

// Start registers the proxy (R/proxy/<id> ephemeral with state offline, then
// R/fence/<addr>) on store and runs it until ctx ends, it is set
// mark_offline, or it exits. The proxy owns store, as a proxy process owns
// its connection: its session owns the proxy's node, and the store is closed
// when the proxy stops.
func Start(ctx context.Context, store coord.Store, product string, info models.ProxyInfo, opt Options) (*Proxy, error) {
	info.State = models.PROXY_STATE_OFFLINE
	if info.StartAt == "" {
		info.StartAt = time.Now().Format("2006-01-02 15:04:05.999999999 -0700 MST")
	}
	if _, err := models.CreateProxyInfo(ctx, store, product, &info); err != nil {
		store.Close()
		return nil, err
	}
	if _, err := models.CreateProxyFenceNode(ctx, store, product, &info); err != nil {
		store.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	p := &Proxy{store: store, product: product, opt: opt, info: info, busy: -1, done: make(chan struct{}), ready: make(chan struct{}), cancel: cancel}
	go func() {
		err := p.run(rctx)
		store.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Info is the proxy's info as registered.
func (p *Proxy) Info() models.ProxyInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

// Ready is closed once the proxy, set online, watches R/actions: every
// action announced from then on reaches it (the newest at each change).
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// Done is closed when the proxy has stopped.
func (p *Proxy) Done() <-chan struct{} { return p.done }

// Err is why the proxy stopped: nil after a clean mark_offline shutdown.
func (p *Proxy) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Busy returns the sequence number of the action the proxy is handling
// now (reading, reloading, waiting its Delay or answering), or -1 between
// actions.
func (p *Proxy) Busy() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy
}

// Handled returns the sequence numbers of the actions it answered.
func (p *Proxy) Handled() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int64(nil), p.handled...)
}

// Stop ends the proxy without its clean shutdown, as a killed process: its
// store is closed, so its node goes with its session and its fence stays.
func (p *Proxy) Stop() { p.cancel(); <-p.done }

func (p *Proxy) selfPath() string { return coord.Join(models.GetProxyPath(p.product), p.info.Id) }

func (p *Proxy) run(ctx context.Context) error {
	self, err := p.store.WatchData(ctx, p.selfPath())
	if err != nil {
		return err
	}
	// 2. Wait until online.
	for online := false; !online; {
		ev, ok := <-self
		if !ok {
			return ctx.Err()
		}
		if ev.Err != nil || !ev.Exists {
			return fmt.Errorf("%w: own node gone before going online", ErrExited)
		}
		var pi models.ProxyInfo
		if err := json.Unmarshal(ev.Data, &pi); err != nil {
			return fmt.Errorf("%w: own node: %v", ErrExited, err)
		}
		online = pi.State == models.PROXY_STATE_ONLINE
	}
	// Online: watch R/actions at once (a Codis 2 proxy arms its watches as
	// it sees itself online), then load the slots. The watch's first state
	// is handled like any change: its newest action only.
	actionsDir := models.GetWatchActionPath(p.product)
	if err := coord.MkdirAll(ctx, p.store, actionsDir); err != nil {
		return err
	}
	actions, err := p.store.WatchChildren(ctx, actionsDir)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.info.State = models.PROXY_STATE_ONLINE
	p.mu.Unlock()
	close(p.ready)
	if err := p.loadSlots(ctx); err != nil {
		return err
	}
	last := int64(-1)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-self:
			if !ok {
				return ctx.Err()
			}
			// 3. mark_offline: clean shutdown; anything else: exit.
			var pi models.ProxyInfo
			if ev.Exists && json.Unmarshal(ev.Data, &pi) == nil {
				switch pi.State {
				case models.PROXY_STATE_ONLINE:
					continue
				case models.PROXY_STATE_MARK_OFFLINE:
					if p.opt.IgnoreMarkOffline {
						continue
					}
					return p.shutdown(ctx)
				}
			}
			return fmt.Errorf("%w: own node changed (exists %v, state %q)", ErrExited, ev.Exists, pi.State)
		case ev, ok := <-actions:
			if !ok {
				return ctx.Err()
			}
			if ev.Err != nil {
				return ev.Err
			}
			// 4. A Codis 2 proxy parses every name (a bad one is a panic)
			// and takes only the newest action above the last it handled:
			// an older one that appeared with it is never answered. (The
			// watch coalesces states, as a ZooKeeper watch that is armed
			// again after each event does.)
			seqs, err := models.ExtraSeqList(ev.Children)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrPanicked, err)
			}
			if len(seqs) == 0 || int64(seqs[len(seqs)-1]) <= last {
				continue
			}
			newest := int64(seqs[len(seqs)-1])
			p.setBusy(newest)
			err = p.handle(ctx, newest)
			p.setBusy(-1)
			if err != nil {
				return err
			}
			last = newest
		}
	}
}

// loadSlots reads every slot and applies a proxy's checks to it, reading
// each group the slots name once.
func (p *Proxy) loadSlots(ctx context.Context) error {
	slots, err := models.Slots(ctx, p.store, p.product)
	if err != nil {
		return err
	}
	// A Codis 2 proxy reads slot 0 to 1023 one by one and panics on one it
	// cannot read.
	for i, s := range slots {
		if s.Id != i {
			return fmt.Errorf("%w: get slot by index %d failed: %v", ErrPanicked, i, coord.ErrNoNode)
		}
	}
	if len(slots) != models.DEFAULT_SLOT_NUM {
		return fmt.Errorf("%w: get slot by index %d failed: %v", ErrPanicked, len(slots), coord.ErrNoNode)
	}
	gs := p.groups()
	for _, s := range slots {
		if err := gs.checkSlot(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// group is what a proxy learns of a group it loads: whether it exists, how
// many masters it has and the (last) master's address.
type group struct {
	found   bool
	masters int
	master  string
}

// groups reads the groups of one load of slots, each once.
type groups struct {
	p    *Proxy
	seen map[int]group
}

func (p *Proxy) groups() *groups { return &groups{p: p, seen: map[int]group{}} }

// master returns the address of the one master of group id that slot s
// names, or the error a Codis 2 proxy exits with.
func (gs *groups) master(ctx context.Context, s *models.Slot, id int) (string, error) {
	g, ok := gs.seen[id]
	if !ok {
		sg, err := models.GetGroup(ctx, gs.p.store, gs.p.product, id)
		switch {
		case errors.Is(err, coord.ErrNoNode) || errors.Is(err, models.ErrGroupNotFound):
		case err != nil:
			return "", err
		default:
			g.found = true
			for _, srv := range sg.Servers {
				if srv.Type == models.SERVER_TYPE_MASTER {
					g.masters++
					g.master = srv.Addr
				}
			}
		}
		gs.seen[id] = g
	}
	if !g.found {
		return "", fmt.Errorf("%w: slot %d points to missing group %d", ErrExited, s.Id, id)
	}
	if g.masters != 1 {
		return "", fmt.Errorf("%w: slot %d: group %d has %d masters", ErrExited, s.Id, id, g.masters)
	}
	return g.master, nil
}

// checkSlot applies a proxy's checks to a slot it loads: its group (and, in
// migration, the source group) exists with exactly one master, and a
// migration's source and target masters differ. A Codis 2 proxy exits on
// each.
func (gs *groups) checkSlot(ctx context.Context, s *models.Slot) error {
	to, err := gs.master(ctx, s, s.GroupId)
	if err != nil {
		return err
	}
	if s.State.Status == models.SLOT_STATUS_MIGRATE {
		from, err := gs.master(ctx, s, s.State.MigrateStatus.From)
		if err != nil {
			return err
		}
		if from == to {
			return fmt.Errorf("%w: slot %d migrates between groups with the same master", ErrExited, s.Id)
		}
	}
	return nil
}

func (p *Proxy) setBusy(seq int64) {
	p.mu.Lock()
	p.busy = seq
	p.mu.Unlock()
}

func (p *Proxy) handle(ctx context.Context, seq int64) error {
	var act models.Action
	resp := coord.Join(models.GetActionResponsePath(p.product), fmt.Sprintf("%010d", seq), p.info.Id)
	if err := models.GetActionObject(ctx, p.store, p.product, seq, &act, "zookeeper"); err != nil {
		if errors.Is(err, coord.ErrNoNode) {
			return fmt.Errorf("%w: action %d vanished before it was read: %v", ErrPanicked, seq, err)
		}
		return err
	}
	if !act.IsReceiver(p.Info()) || p.opt.Mute {
		return nil
	}
	// Reload what the action names, as a proxy does.
	switch act.Type {
	case models.ACTION_TYPE_SLOT_CHANGED, models.ACTION_TYPE_SLOT_MIGRATE, models.ACTION_TYPE_SLOT_PREMIGRATE:
		var target struct {
			Id int `json:"id"`
		}
		b, _ := json.Marshal(act.Target)
		if json.Unmarshal(b, &target) == nil {
			sl, err := models.GetSlot(ctx, p.store, p.product, target.Id)
			if err != nil {
				return err
			}
			if err := p.groups().checkSlot(ctx, sl); err != nil {
				return err
			}
		}
	case models.ACTION_TYPE_MULTI_SLOT_CHANGED:
		if err := p.loadSlots(ctx); err != nil {
			return err
		}
	}
	if p.opt.Delay > 0 {
		select {
		case <-time.After(p.opt.Delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	name := strconv.FormatInt(seq, 10)
	me, _ := json.Marshal(p.Info())
	// Recorded before the answer exists, so that whoever sees the answer
	// also sees it in Handled.
	p.mu.Lock()
	p.handled = append(p.handled, seq)
	sort.Slice(p.handled, func(i, j int) bool { return p.handled[i] < p.handled[j] })
	p.mu.Unlock()
	// A plain create, as a Codis 2 proxy answers (Topology.DoResponse): an
	// answer already there (a proxy started again with the same id and
	// start time, handed the action it answered before) is left as it is.
	if _, err := p.store.Create(ctx, resp, me, coord.Persistent); err != nil && !errors.Is(err, coord.ErrNodeExists) {
		p.mu.Lock()
		p.handled = slices.DeleteFunc(p.handled, func(h int64) bool { return h == seq })
		p.mu.Unlock()
		if errors.Is(err, coord.ErrNoNode) {
			return nil // the action was collected meanwhile
		}
		return fmt.Errorf("answering action %s: %w", name, err)
	}
	return nil
}

// shutdown deletes the fence and the node, as a proxy's clean shutdown does.
func (p *Proxy) shutdown(ctx context.Context) error {
	fence := coord.Join(models.GetProxyFencePath(p.product), p.info.Addr)
	if err := p.store.Delete(ctx, fence, coord.AnyVersion); err != nil && !errors.Is(err, coord.ErrNoNode) {
		return err
	}
	if err := p.store.Delete(ctx, p.selfPath(), coord.AnyVersion); err != nil && !errors.Is(err, coord.ErrNoNode) {
		return err
	}
	return nil
}
