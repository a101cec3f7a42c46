package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coordkit/coord/coord"
)

// MarkOfflineTimeout bounds how long SetProxyStatus waits for a proxy set to
// mark_offline to go down, when the context has no earlier deadline. Codis 2
// waits forever.
var MarkOfflineTimeout = 30 * time.Second

// CreateProxyInfo creates the proxy's ephemeral node R/proxy/<id> holding pi,
// owned by the store's session, and returns its path.
func CreateProxyInfo(ctx context.Context, store coord.Store, productName string, pi *ProxyInfo) (string, error) {
	const op = "CreateProxyInfo"
	if err := ValidateProductName(productName); err != nil {
		return "", errorf(op, "", err)
	}
	if err := validProxyId(pi.Id); err != nil {
		return "", errorf(op, pi.Id, err)
	}
	if err := ValidateAddr(pi.Addr); err != nil {
		return "", errorf(op, pi.Id, fmt.Errorf("%w: proxy %v", ErrInvalidArgument, err))
	}
	p := coord.Join(GetProxyPath(productName), pi.Id)
	out, err := coord.CreateAll(ctx, store, p, mustEncode(pi), coord.Ephemeral)
	return out, errorf(op, p, err)
}

// CreateProxyFenceNode creates the persistent fence R/fence/<addr> of the
// proxy (its parents too) and returns its path. An existing fence is fine.
func CreateProxyFenceNode(ctx context.Context, store coord.Store, productName string, pi *ProxyInfo) (string, error) {
	const op = "CreateProxyFenceNode"
	if err := ValidateProductName(productName); err != nil {
		return "", errorf(op, "", err)
	}
	if err := ValidateAddr(pi.Addr); err != nil {
		return "", errorf(op, pi.Addr, fmt.Errorf("%w: proxy %v", ErrInvalidArgument, err))
	}
	p := coord.Join(GetProxyFencePath(productName), pi.Addr)
	_, err := coord.CreateAll(ctx, store, p, nil, coord.Persistent)
	if errors.Is(err, coord.ErrNodeExists) {
		err = nil
	}
	return p, errorf(op, p, err)
}

// GetFenceProxyMap returns the fenced proxy addresses.
func GetFenceProxyMap(ctx context.Context, store coord.Store, productName string) (map[string]bool, error) {
	if err := ValidateProductName(productName); err != nil {
		return nil, errorf("GetFenceProxyMap", "", err)
	}
	kids, err := store.Children(ctx, GetProxyFencePath(productName))
	if err != nil && !errors.Is(err, coord.ErrNoNode) {
		return nil, errorf("GetFenceProxyMap", GetProxyFencePath(productName), err)
	}
	m := make(map[string]bool, len(kids))
	for _, k := range kids {
		m[k] = true
	}
	return m, nil
}

// ForceRemoveDeadFence deletes the fences with no online proxy behind them.
func ForceRemoveDeadFence(ctx context.Context, store coord.Store, productName string) error {
	const op = "ForceRemoveDeadFence"
	return locked(ctx, store, productName, op, func(ctx context.Context, store coord.Store) error {
		_, dead, err := onlineAndDead(ctx, store, productName)
		if err != nil {
			return errorf(op, productName, err)
		}
		for _, addr := range dead {
			p := coord.Join(GetProxyFencePath(productName), addr)
			if err := coord.DeleteAll(ctx, store, p); err != nil {
				return errorf(op, p, err)
			}
		}
		return nil
	})
}

// onlineProxies returns the proxies in state online: the receivers of actions.
func onlineProxies(ctx context.Context, store coord.Store, productName string) ([]ProxyInfo, error) {
	return ProxyList(ctx, store, productName, func(p *ProxyInfo) bool { return p.State == PROXY_STATE_ONLINE })
}

// onlineAndDead reads the online proxies and the fences at once (two
// independent reads, sent together) and returns the online proxies and,
// sorted, the fenced addresses with none of them behind: proxies that may
// not have stopped cleanly. An error of the proxy listing comes first.
func onlineAndDead(ctx context.Context, store coord.Store, productName string) ([]ProxyInfo, []string, error) {
	var fences map[string]bool
	var ferr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		fences, ferr = GetFenceProxyMap(ctx, store, productName)
	}()
	online, err := onlineProxies(ctx, store, productName)
	<-done
	if err != nil {
		return nil, nil, err
	}
	if ferr != nil {
		return nil, nil, ferr
	}
	for _, p := range online {
		delete(fences, p.Addr)
	}
	dead := make([]string, 0, len(fences))
	for addr := range fences {
		dead = append(dead, addr)
	}
	sort.Strings(dead)
	return online, dead, nil
}

// fenceError is ErrFenceWithoutProxy naming the dead fences.
func fenceError(dead []string) error {
	return fmt.Errorf("%w: %s", ErrFenceWithoutProxy, strings.Join(dead, " "))
}

// GetProxyInfo reads the node of proxy proxyName.
func GetProxyInfo(ctx context.Context, store coord.Store, productName string, proxyName string) (*ProxyInfo, error) {
	pi, _, err := getProxy(ctx, store, productName, proxyName)
	return pi, err
}

func getProxy(ctx context.Context, store coord.Store, productName, proxyName string) (*ProxyInfo, int64, error) {
	const op = "GetProxyInfo"
	if err := ValidateProductName(productName); err != nil {
		return nil, 0, errorf(op, "", err)
	}
	p := coord.Join(GetProxyPath(productName), proxyName)
	if err := coord.ValidatePath(p); err != nil || proxyName == "" || coord.Base(p) != proxyName {
		return nil, 0, errorf(op, proxyName, fmt.Errorf("%w: proxy id %q", ErrInvalidArgument, proxyName))
	}
	data, st, err := store.Get(ctx, p)
	if err != nil {
		return nil, 0, errorf(op, p, err)
	}
	var pi ProxyInfo
	if err := decode(p, data, &pi); err != nil {
		return nil, 0, err
	}
	return &pi, st.Version, nil
}

// ProxyList returns the proxies for which filter (if not nil) is true,
// ordered by id. A proxy that goes away during the scan is left out.
func ProxyList(ctx context.Context, store coord.Store, productName string, filter func(*ProxyInfo) bool) ([]ProxyInfo, error) {
	const op = "ProxyList"
	if err := ValidateProductName(productName); err != nil {
		return nil, errorf(op, "", err)
	}
	kids, err := store.Children(ctx, GetProxyPath(productName))
	if errors.Is(err, coord.ErrNoNode) {
		return []ProxyInfo{}, nil
	}
	if err != nil {
		return nil, errorf(op, GetProxyPath(productName), err)
	}
	// One GetMany, not a Get a proxy: with 100 proxies that was 7 rounds
	// of 16 reads (and on ZooKeeper a sync each) in every confirmed action.
	paths := make([]string, len(kids))
	for i, kid := range kids {
		paths[i] = coord.Join(GetProxyPath(productName), kid)
	}
	res, err := store.GetMany(ctx, paths...)
	if err != nil {
		return nil, errorf(op, GetProxyPath(productName), err)
	}
	out := make([]ProxyInfo, 0, len(kids))
	for i, r := range res {
		if errors.Is(r.Err, coord.ErrNoNode) {
			continue // gone since the listing (a proxy that exited)
		}
		if r.Err != nil {
			return nil, errorf(op, paths[i], r.Err)
		}
		var pi ProxyInfo
		if err := decode(paths[i], r.Data, &pi); err != nil {
			return nil, err
		}
		if filter == nil || filter(&pi) {
			out = append(out, pi)
		}
	}
	return out, nil
}

// SetProxyStatus sets the state of proxy proxyName. Going online needs every
// slot online or migrating and assigned to a group (ErrSlotsNotReady).
// mark_offline asks the proxy to shut down and waits until its node is gone
// or offline, for MarkOfflineTimeout at most (ErrMarkOfflineTimeout).
func SetProxyStatus(ctx context.Context, store coord.Store, productName string, proxyName string, status string) error {
	const op = "SetProxyStatus"
	if status != PROXY_STATE_ONLINE && status != PROXY_STATE_OFFLINE && status != PROXY_STATE_MARK_OFFLINE {
		return errorf(op, proxyName, fmt.Errorf("%w: %q", ErrUnknownProxyStatus, status))
	}
	return locked(ctx, store, productName, op, func(ctx context.Context, store coord.Store) error {
		if _, _, err := getProxy(ctx, store, productName, proxyName); err != nil {
			return errorf(op, proxyName, err)
		}
		if status == PROXY_STATE_ONLINE {
			slots, err := Slots(ctx, store, productName)
			if err != nil {
				return errorf(op, proxyName, err)
			}
			if len(slots) == 0 {
				return errorf(op, proxyName, fmt.Errorf("%w: no slots; run InitSlotSet", ErrSlotsNotReady))
			}
			// A proxy loads every slot and exits on one missing.
			for i, s := range slots {
				if s.Id != i {
					return errorf(op, proxyName, fmt.Errorf("%w: slot %d is missing", ErrSlotsNotReady, i))
				}
			}
			if len(slots) != DEFAULT_SLOT_NUM {
				return errorf(op, proxyName, fmt.Errorf("%w: slot %d is missing", ErrSlotsNotReady, len(slots)))
			}
			for _, s := range slots {
				if s.State.Status != SLOT_STATUS_ONLINE && s.State.Status != SLOT_STATUS_MIGRATE {
					return errorf(op, proxyName, fmt.Errorf("%w: slot %d is %s", ErrSlotsNotReady, s.Id, s.State.Status))
				}
				if s.GroupId == INVALID_ID {
					return errorf(op, proxyName, fmt.Errorf("%w: slot %d has no group", ErrSlotsNotReady, s.Id))
				}
			}
		}
		p := coord.Join(GetProxyPath(productName), proxyName)
		for {
			pi, version, err := getProxy(ctx, store, productName, proxyName)
			if err != nil {
				return errorf(op, proxyName, err)
			}
			pi.State = status
			_, err = store.Set(ctx, p, mustEncode(pi), version)
			if errors.Is(err, coord.ErrBadVersion) {
				continue // changed meanwhile: read again
			}
			if err != nil {
				return errorf(op, p, err)
			}
			break
		}
		if status != PROXY_STATE_MARK_OFFLINE {
			return nil
		}
		wctx, cancel := context.WithTimeout(ctx, MarkOfflineTimeout)
		defer cancel()
		events, err := store.WatchData(wctx, p)
		if err != nil {
			return errorf(op, p, err)
		}
		for ev := range events {
			if ev.Err != nil {
				return errorf(op, p, ev.Err)
			}
			if !ev.Exists {
				return nil
			}
			var pi ProxyInfo
			if err := decode(p, ev.Data, &pi); err != nil {
				return err
			}
			if pi.State == PROXY_STATE_OFFLINE {
				return nil
			}
		}
		if err := ctx.Err(); err != nil {
			return errorf(op, p, err)
		}
		return errorf(op, p, fmt.Errorf("%w: still up after %v", ErrMarkOfflineTimeout, MarkOfflineTimeout))
	})
}

// forEach runs fn(0..n-1) with bounded concurrency and returns the first error.
func forEach(ctx context.Context, n int, fn func(i int) error) error {
	const workers = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		mu.Lock()
		stop := first != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// DebugVarsTimeout bounds DebugVars and Ops when their context has no
// deadline.
const DebugVarsTimeout = 5 * time.Second

// DebugVars reads the proxy's expvar page, http://<debug_var_addr>/debug/vars,
// as a JSON object. An unreachable proxy is ErrUnavailable; an answer that is
// not a JSON object is ErrMalformed.
func (p *ProxyInfo) DebugVars(ctx context.Context) (map[string]interface{}, error) {
	const op = "ProxyInfo.DebugVars"
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DebugVarsTimeout)
		defer cancel()
	}
	url := "http://" + p.DebugVarAddr + "/debug/vars"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, errorf(op, p.Id, fmt.Errorf("%w: debug_var_addr %q: %v", ErrInvalidArgument, p.DebugVarAddr, err))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, errorf(op, p.Id, fmt.Errorf("%w: %v", coord.ErrUnavailable, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errorf(op, p.Id, fmt.Errorf("%w: %s answered %s", coord.ErrUnavailable, url, resp.Status))
	}
	m := map[string]interface{}{}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&m); err != nil {
		return nil, errorf(op, p.Id, fmt.Errorf("%w: %s: %v", ErrMalformed, url, err))
	}
	return m, nil
}

// Ops is the number of operations the proxy has served: "ops" of the
// "router" object of its DebugVars (0 when it publishes none, as Codis 2
// says). A value that is not a number is ErrMalformed (Codis 2 panics).
func (p *ProxyInfo) Ops(ctx context.Context) (int64, error) {
	m, err := p.DebugVars(ctx)
	if err != nil {
		return -1, err
	}
	router, ok := m["router"]
	if !ok {
		return 0, nil
	}
	r, ok := router.(map[string]interface{})
	if !ok {
		return -1, errorf("ProxyInfo.Ops", p.Id, fmt.Errorf("%w: router is %T, not an object", ErrMalformed, router))
	}
	ops, ok := r["ops"]
	if !ok {
		return 0, nil
	}
	n, ok := ops.(float64)
	if !ok {
		return -1, errorf("ProxyInfo.Ops", p.Id, fmt.Errorf("%w: router.ops is %T, not a number", ErrMalformed, ops))
	}
	return int64(n), nil
}
