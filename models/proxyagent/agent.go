// Package proxyagent lets a Go program take the proxy role of a product: it
// registers the program as a proxy (its ephemeral node R/proxy/<id>, offline,
// then its fence R/fence/<addr>), waits to be set online, and then delivers
// every action that appears, in sequence order, exactly once, answering those
// the proxy is a receiver of once the program has applied them.
//
// It does better than a Codis 2 proxy, with which it interoperates in the same
// product (the same nodes and bytes): a Codis 2 proxy takes only the newest of
// the actions it finds at a change of R/actions and exits when its session
// ends, leaving its fence behind so that every later confirmed action is
// refused. The agent delivers the older ones too, and after losing its session
// registers again under a new one (its node, as it was, and its fence), going
// on from the last action it delivered, so that nothing is lost or delivered
// twice; a node deleted by someone else is made again the same way (to take
// a proxy out, set it mark_offline, as for a Codis 2 proxy). When its store
// gave up on the session before the server ended it (a quorum away longer
// than the session can be vouched for), the old node is still there: the
// agent deletes it and makes it again at once rather than wait, unregistered,
// for the server to end the old session. A confirmed action announced in the
// round trip between the two finds the fence alone and is refused
// (models.ErrFenceWithoutProxy), as a Codis 2 dashboard refuses it; one
// announced again is answered. An action collected before it could be read,
// the only gap the agent cannot fill, is reported to Options.Resync.
package proxyagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/models"
)

// Errors an agent stops with (Err).
var (
	// ErrStopped: Stop was called.
	ErrStopped = errors.New("proxy agent stopped")
	// ErrSetOffline: someone set the proxy's state to offline.
	ErrSetOffline = errors.New("proxy set offline")
)

// Delivery is one action delivered to the program.
type Delivery struct {
	Seq    int64          // the action's sequence number
	Action *models.Action // the action
	// Receiver says whether this proxy is among the action's receivers: the
	// agent then answers it once Handle returns nil. Other actions are
	// delivered too, so that the program sees every change in order.
	Receiver bool
}

// Options configure an agent.
type Options struct {
	// Handle applies one action. It is called from one goroutine, in
	// sequence order, once per action that appears after the proxy went
	// online. An error stops the agent, which then shuts down cleanly
	// (fence and node removed) and reports the error from Err. Required.
	Handle func(ctx context.Context, d Delivery) error
	// Resync, when set, is called when the proxy goes online (before the
	// first delivery) and when an action was collected before the agent
	// could read it: the program should reload the product's slots and
	// groups. An error stops the agent as Handle's does.
	Resync func(ctx context.Context) error
	// RetryWait is the longest pause between attempts to register again
	// after the session was lost (the first pause is 50 ms, doubling up to
	// it; 2 s when 0).
	RetryWait time.Duration
}

// Agent is a running proxy registration.
type Agent struct {
	store   coord.Store
	product string
	opt     Options
	cancel  context.CancelFunc
	online  chan struct{}
	done    chan struct{}

	mu            sync.Mutex
	info          models.ProxyInfo
	err           error
	last          int64 // the newest action delivered (-1: none yet)
	registrations int
	stopping      bool
	// owners holds the IDs of the sessions the agent registered under
	// (the newest few): a node at its path that one of them owns is its
	// own old node, left by a session that the store gave up on before the
	// server ended it.
	owners []string
}

// maxOwners bounds Agent.owners.
const maxOwners = 8

// Start registers info as a proxy of product on store and runs the agent
// until Stop, a clean shutdown (mark_offline), an error of Handle or Resync,
// or the end of ctx. info.State is set to offline, as a proxy registers.
func Start(ctx context.Context, store coord.Store, product string, info models.ProxyInfo, opt Options) (*Agent, error) {
	if opt.Handle == nil {
		return nil, fmt.Errorf("proxyagent: %w: Options.Handle is nil", models.ErrInvalidArgument)
	}
	if opt.RetryWait <= 0 {
		opt.RetryWait = 2 * time.Second
	}
	info.State = models.PROXY_STATE_OFFLINE
	a := &Agent{store: store, product: product, opt: opt, info: info, last: -1,
		online: make(chan struct{}), done: make(chan struct{})}
	if err := a.register(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	stop := context.AfterFunc(ctx, cancel)
	go func() {
		defer close(a.done)
		defer stop()
		err := a.run(rctx)
		a.mu.Lock()
		if a.stopping {
			err = ErrStopped
		}
		a.err = err
		a.mu.Unlock()
	}()
	return a, nil
}

// register creates the proxy's node (with its current state) and its
// fence, as a proxy does at start. An old node of this proxy left by one of
// the agent's own earlier sessions is deleted and made again at once (the
// server would keep it until that session's timeout, while the agent,
// unregistered, answered nothing); one left by another session is waited
// for.
func (a *Agent) register(ctx context.Context) error {
	for {
		info := a.Info()
		sess, err := a.store.Session(ctx)
		if err != nil {
			return err
		}
		_, err = models.CreateProxyInfo(ctx, a.store, a.product, &info)
		if errors.Is(err, coord.ErrNodeExists) {
			ours, err := a.takeOldNode(ctx, sess)
			if err != nil {
				return err
			}
			if !ours {
				continue
			}
		} else if err != nil {
			return err
		}
		if _, err := models.CreateProxyFenceNode(ctx, a.store, a.product, &info); err != nil {
			return err
		}
		a.mu.Lock()
		a.registrations++
		if len(a.owners) == maxOwners {
			a.owners = a.owners[1:]
		}
		a.owners = append(a.owners, sess.ID())
		a.mu.Unlock()
		return nil
	}
}

// ownedBefore reports whether id is a session the agent registered under.
func (a *Agent) ownedBefore(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.owners, id)
}

// takeOldNode deals with the node found at the proxy's path: ours when it
// belongs to sess (made by a create whose reply was lost); deleted when it
// belongs to one of the agent's earlier sessions (errMarkedOffline if it
// says mark_offline); otherwise waited for until it is gone. It returns
// false when the node should be created again.
func (a *Agent) takeOldNode(ctx context.Context, sess coord.Session) (ours bool, err error) {
	p := a.selfPath()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := a.store.WatchData(wctx, p)
	if err != nil {
		return false, err
	}
	for ev := range events {
		switch {
		case ev.Err != nil:
			return false, ev.Err
		case !ev.Exists:
			return false, nil
		case ev.Stat.Ephemeral && ev.Stat.Owner == sess.ID():
			return true, nil
		case ev.Stat.Ephemeral && a.ownedBefore(ev.Stat.Owner):
			// Ours, from a session the store gave up on: the server would
			// keep it until the session's timeout. Take it out now (unless
			// it changed meanwhile) and make it again; a proxy set
			// mark_offline meanwhile shuts down instead, as it would have.
			var pi models.ProxyInfo
			if json.Unmarshal(ev.Data, &pi) == nil && pi.State == models.PROXY_STATE_MARK_OFFLINE {
				return false, errMarkedOffline
			}
			err := a.store.Delete(ctx, p, ev.Stat.Version)
			if err != nil && !errors.Is(err, coord.ErrNoNode) && !errors.Is(err, coord.ErrBadVersion) {
				return false, err
			}
			return false, nil
		case !ev.Stat.Ephemeral:
			return false, fmt.Errorf("proxyagent: %w: %s is a persistent node; a proxy's node is ephemeral", models.ErrMalformed, p)
		}
	}
	return false, ctx.Err()
}

func (a *Agent) selfPath() string {
	return coord.Join(models.GetProxyPath(a.product), a.Info().Id)
}

// errSessionLost ends one registration's life.
var errSessionLost = errors.New("session lost")

// errMarkedOffline: the node of an earlier session of the agent says
// mark_offline; the agent shuts down cleanly.
var errMarkedOffline = errors.New("marked offline")

func (a *Agent) run(ctx context.Context) error {
	wait := 50 * time.Millisecond
	for {
		err := a.serve(ctx)
		if !errors.Is(err, errSessionLost) {
			a.shutdown(context.WithoutCancel(ctx))
			return err
		}
		// Register again under a new session, going on from the last
		// action delivered.
		for {
			err := a.register(ctx)
			if err == nil {
				break
			}
			if errors.Is(err, errMarkedOffline) {
				a.shutdown(context.WithoutCancel(ctx))
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
			if wait *= 2; wait > a.opt.RetryWait {
				wait = a.opt.RetryWait
			}
		}
		wait = 50 * time.Millisecond
	}
}

// serve runs one registration: until its session ends (errSessionLost) or
// the agent stops for good.
func (a *Agent) serve(ctx context.Context) error {
	sess, err := a.store.Session(ctx)
	if err != nil {
		return errSessionLost
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	self, err := a.store.WatchData(sctx, a.selfPath())
	if err != nil {
		return a.lostOr(sess, err)
	}
	var actions <-chan coord.Event
	armActions := func() error {
		dir := models.GetWatchActionPath(a.product)
		if err := coord.MkdirAll(sctx, a.store, dir); err != nil {
			return err
		}
		actions, err = a.store.WatchChildren(sctx, dir)
		return err
	}
	if a.Info().State == models.PROXY_STATE_ONLINE {
		if err := armActions(); err != nil {
			return a.lostOr(sess, err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sess.Done():
			return errSessionLost
		case ev, ok := <-self:
			if !ok {
				return a.lostOr(sess, ctx.Err())
			}
			if ev.Err != nil {
				return a.lostOr(sess, ev.Err)
			}
			if !ev.Exists {
				// Gone with the session (whose end the client may learn
				// only later), or deleted by someone: register again either
				// way. To take a proxy out, set it mark_offline.
				return errSessionLost
			}
			var pi models.ProxyInfo
			if err := json.Unmarshal(ev.Data, &pi); err != nil {
				return fmt.Errorf("proxyagent: %w: %s: %v", models.ErrMalformed, a.selfPath(), err)
			}
			switch pi.State {
			case models.PROXY_STATE_ONLINE:
				if actions != nil {
					continue
				}
				if err := a.goOnline(sctx); err != nil {
					return a.lostOr(sess, err)
				}
				if err := armActions(); err != nil {
					return a.lostOr(sess, err)
				}
			case models.PROXY_STATE_MARK_OFFLINE:
				return nil // clean shutdown
			case models.PROXY_STATE_OFFLINE:
				if actions != nil {
					return ErrSetOffline
				}
			default:
				return fmt.Errorf("proxyagent: %w: %s has state %q", models.ErrMalformed, a.selfPath(), pi.State)
			}
		case ev, ok := <-actions:
			if !ok {
				return a.lostOr(sess, ctx.Err())
			}
			if ev.Err != nil {
				return a.lostOr(sess, ev.Err)
			}
			if err := a.deliverNew(sctx, ev.Children); err != nil {
				return a.lostOr(sess, err)
			}
		}
	}
}

// lostOr returns errSessionLost when sess has ended, else err.
func (a *Agent) lostOr(sess coord.Session, err error) error {
	if sess.Err() != nil && !a.isStopping() {
		return errSessionLost
	}
	return err
}

// goOnline records the online state and where deliveries start: after the
// newest action now (what came before is in the state Resync loads).
func (a *Agent) goOnline(ctx context.Context) error {
	kids, err := a.store.Children(ctx, models.GetWatchActionPath(a.product))
	if err != nil && !errors.Is(err, coord.ErrNoNode) {
		return err
	}
	last := int64(-1)
	for _, seq := range seqs(kids) {
		last = seq
	}
	a.mu.Lock()
	a.info.State = models.PROXY_STATE_ONLINE
	a.last = last
	a.mu.Unlock()
	if a.opt.Resync != nil {
		if err := a.opt.Resync(ctx); err != nil {
			return err
		}
	}
	select {
	case <-a.online:
	default:
		close(a.online)
	}
	return nil
}

// seqs returns the sequence numbers among names, in order; other names
// (written by someone else) are not actions and are left alone.
func seqs(names []string) []int64 {
	var out []int64
	for _, n := range coord.SortBySequence(names, "") {
		if seq, err := strconv.ParseInt(n, 10, 64); err == nil && fmt.Sprintf("%010d", seq) == n {
			out = append(out, seq)
		}
	}
	return out
}

// deliverNew delivers, in order, every action above the last delivered.
func (a *Agent) deliverNew(ctx context.Context, names []string) error {
	for _, seq := range seqs(names) {
		a.mu.Lock()
		last := a.last
		a.mu.Unlock()
		if seq <= last {
			continue
		}
		if err := a.deliver(ctx, seq); err != nil {
			return err
		}
		a.mu.Lock()
		a.last = seq
		a.mu.Unlock()
	}
	return nil
}

func (a *Agent) deliver(ctx context.Context, seq int64) error {
	var act models.Action
	if err := models.GetActionObject(ctx, a.store, a.product, seq, &act, ""); errors.Is(err, coord.ErrNoNode) {
		// Collected before it could be read: what it said is lost; the
		// program must reload.
		if a.opt.Resync != nil {
			return a.opt.Resync(ctx)
		}
		return nil
	} else if err != nil {
		return err
	}
	d := Delivery{Seq: seq, Action: &act, Receiver: act.IsReceiver(a.Info())}
	if err := a.opt.Handle(ctx, d); err != nil {
		return fmt.Errorf("proxyagent: action %d: %w", seq, err)
	}
	if !d.Receiver {
		return nil
	}
	info := a.Info()
	me, _ := json.Marshal(info)
	resp := coord.Join(models.GetActionResponsePath(a.product), fmt.Sprintf("%010d", seq), info.Id)
	if _, err := a.store.Create(ctx, resp, me, coord.Persistent); err != nil &&
		!errors.Is(err, coord.ErrNodeExists) && !errors.Is(err, coord.ErrNoNode) { // answered already; collected
		return fmt.Errorf("proxyagent: answering action %d: %w", seq, err)
	}
	return nil
}

// shutdown deletes the fence and then the node, if it is still the
// agent's (of the store's session, or of one it registered under), as a
// proxy's clean shutdown does.
func (a *Agent) shutdown(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info := a.Info()
	_ = a.store.Delete(ctx, coord.Join(models.GetProxyFencePath(a.product), info.Addr), coord.AnyVersion)
	p := a.selfPath()
	if st, ok, err := a.store.Exists(ctx, p); err == nil && ok && st.Ephemeral {
		if sess, err := a.store.Session(ctx); (err == nil && sess.ID() == st.Owner) || a.ownedBefore(st.Owner) {
			_ = a.store.Delete(ctx, p, st.Version)
		}
	}
}

func (a *Agent) isStopping() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stopping
}

// Info is the proxy's ProxyInfo as registered, with its current state.
func (a *Agent) Info() models.ProxyInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.info
}

// Online is closed when the proxy first went online.
func (a *Agent) Online() <-chan struct{} { return a.online }

// Done is closed when the agent has stopped.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Err is why the agent stopped: nil after a clean shutdown asked by
// mark_offline, ErrStopped after Stop, ErrSetOffline, the error of Handle
// or Resync, or the context's.
func (a *Agent) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// Last is the sequence number of the newest action delivered (-1: none).
func (a *Agent) Last() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// Registrations counts the times the proxy registered: 1, plus one per
// session lost and replaced.
func (a *Agent) Registrations() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.registrations
}

// Stop shuts the proxy down cleanly (fence, then node, removed) and waits
// for the agent to end, or for ctx.
func (a *Agent) Stop(ctx context.Context) error {
	a.mu.Lock()
	a.stopping = true
	a.mu.Unlock()
	a.cancel()
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
