package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/fanout"
)

// DefaultActionTimeout is how long NewAction waits for confirmations.
const DefaultActionTimeout = 30 * time.Second

// CreateActionRootPath makes the directory path (and its parents) if missing.
func CreateActionRootPath(ctx context.Context, store coord.Store, path string) error {
	return errorf("CreateActionRootPath", path, coord.MkdirAll(ctx, store, path))
}

// ExtraSeqList parses sequence node names ("0000000042") and sorts them.
func ExtraSeqList(nodes []string) ([]int, error) {
	res := make([]int, 0, len(nodes))
	for _, n := range nodes {
		i, err := strconv.Atoi(n)
		if err != nil || i < 0 {
			return nil, errorf("ExtraSeqList", n, fmt.Errorf("%w: not a sequence number", ErrMalformed))
		}
		res = append(res, i)
	}
	sort.Ints(res)
	return res, nil
}

// seqName formats a sequence number as ZooKeeper names it.
func seqName(seq int64) string { return fmt.Sprintf("%010d", seq) }

// GetActionSeqList returns the sequence numbers of the product's actions, sorted.
func GetActionSeqList(ctx context.Context, store coord.Store, productName string) ([]int, error) {
	if err := ValidateProductName(productName); err != nil {
		return nil, errorf("GetActionSeqList", "", err)
	}
	kids, err := store.Children(ctx, GetWatchActionPath(productName))
	if errors.Is(err, coord.ErrNoNode) {
		return []int{}, nil
	}
	if err != nil {
		return nil, errorf("GetActionSeqList", productName, err)
	}
	return ExtraSeqList(kids)
}

// GetActionObject reads action seq into act (an *Action, or any value the
// JSON fits). provider is accepted for compatibility and not used: sequence
// names are the same on every backend.
func GetActionObject(ctx context.Context, store coord.Store, productName string, seq int64, act interface{}, provider string) error {
	if err := ValidateProductName(productName); err != nil {
		return errorf("GetActionObject", "", err)
	}
	p := coord.Join(GetWatchActionPath(productName), seqName(seq))
	data, _, err := store.Get(ctx, p)
	if err != nil {
		return errorf("GetActionObject", p, err)
	}
	return decode(p, data, act)
}

// NewAction announces a change to the online proxies, waiting up to 30s for
// their confirmations when needConfirm is set. See NewActionWithTimeout.
func NewAction(ctx context.Context, store coord.Store, productName string, actionType ActionType, target interface{}, desc string, needConfirm bool) error {
	return NewActionWithTimeout(ctx, store, productName, actionType, target, desc, needConfirm, int(DefaultActionTimeout/time.Millisecond))
}

// NewActionWithTimeout announces a change to the online proxies.
//
// The receivers are the online proxies. With needConfirm, a fence with no
// online proxy behind it refuses the action (ErrFenceWithoutProxy) before
// anything is written. The action takes its number from a sequential node
// created under R/ActionResponse (which then holds the action and receives
// the answers), then appears under R/actions with the same number. With
// needConfirm it then waits, on a children watch, until every receiver has
// answered or timeoutInMs passed: receivers that did not answer are set to
// mark_offline and ErrReceiverTimeout is returned.
func NewActionWithTimeout(ctx context.Context, store coord.Store, productName string, actionType ActionType, target interface{}, desc string, needConfirm bool, timeoutInMs int) error {
	return locked(ctx, store, productName, "NewAction", func(ctx context.Context, store coord.Store) error {
		_, err := newAction(ctx, store, productName, actionType, target, desc, needConfirm, time.Duration(timeoutInMs)*time.Millisecond)
		return err
	})
}

// newAction is NewActionWithTimeout returning the action's sequence number.
func newAction(ctx context.Context, store coord.Store, productName string, actionType ActionType, target interface{}, desc string, needConfirm bool, timeout time.Duration) (int64, error) {
	const op = "NewAction"
	if err := ValidateProductName(productName); err != nil {
		return 0, errorf(op, "", err)
	}
	if timeout < 0 {
		return 0, errorf(op, productName, fmt.Errorf("%w: timeout %v", ErrInvalidArgument, timeout))
	}
	// The reads that decide the action do not depend on one another: the
	// online proxies, the fences (with needConfirm) and the actions go out
	// together, so that a confirmed action waits for as few round trips as
	// it can (each is one, and a proxy's answer waits for all of them).
	// The newest action and its answers are read as soon as the listing
	// of the actions names it, while the proxies are still being read.
	var proxies []ProxyInfo
	var dead []string
	var perr error
	var prev previous
	listed := make(chan struct{})
	go func() {
		defer close(listed)
		prev = readPrevious(ctx, store, productName)
	}()
	if needConfirm {
		proxies, dead, perr = onlineAndDead(ctx, store, productName)
	} else {
		proxies, perr = onlineProxies(ctx, store, productName)
	}
	<-listed
	if perr != nil {
		return 0, errorf(op, productName, perr)
	}
	if len(dead) > 0 {
		return 0, errorf(op, productName, fenceError(dead))
	}
	action := &Action{Type: actionType, Desc: desc, Target: target, Ts: strconv.FormatInt(time.Now().Unix(), 10)}
	for _, p := range proxies {
		action.Receivers = append(action.Receivers, string(mustEncode(p)))
	}
	data, err := json.Marshal(action)
	if err != nil {
		return 0, errorf(op, productName, fmt.Errorf("%w: target cannot be encoded: %v", ErrInvalidArgument, err))
	}
	// A Codis 2 proxy answers only the newest action it finds: the last one
	// announced (by anyone, locked or not) must have been answered by its
	// receivers that are still online before another appears.
	if err := waitPrevious(ctx, store, productName, prev, proxies, timeout); err != nil {
		return 0, errorf(op, productName, err)
	}
	// The response directory exists before the action appears, because
	// proxies answer into it as soon as they see the action. The parents
	// are made only when a create finds one missing (a new product).
	respRoot := GetActionResponsePath(productName)
	respPath, err := store.Create(ctx, respRoot+"/", data, coord.Sequential)
	if errors.Is(err, coord.ErrNoNode) {
		if err = coord.MkdirAll(ctx, store, respRoot); err == nil {
			respPath, err = store.Create(ctx, respRoot+"/", data, coord.Sequential)
		}
	}
	if err != nil {
		return 0, errorf(op, respRoot, err)
	}
	seqStr := coord.Base(respPath)
	seq, err := strconv.ParseInt(seqStr, 10, 64)
	if err != nil {
		return 0, errorf(op, respPath, fmt.Errorf("%w: sequence name %q", ErrMalformed, seqStr))
	}
	// The answers' watch is armed while the action is created: it reads
	// the answers when armed, so none is missed, whichever ends first.
	var answers *armedWatch
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if needConfirm && len(proxies) > 0 {
		answers = armChildren(wctx, store, respPath)
	}
	actionPath := coord.Join(GetWatchActionPath(productName), seqStr)
	_, err = store.Create(ctx, actionPath, data, coord.Persistent)
	if errors.Is(err, coord.ErrNoNode) {
		if err = coord.MkdirAll(ctx, store, GetWatchActionPath(productName)); err == nil {
			_, err = store.Create(ctx, actionPath, data, coord.Persistent)
		}
	}
	if err != nil {
		cancel()
		if answers != nil {
			answers.wait()
		}
		_ = store.Delete(context.WithoutCancel(ctx), respPath, coord.AnyVersion)
		return 0, errorf(op, actionPath, err)
	}
	if answers != nil {
		if err := waitAnswered(ctx, wctx, store, productName, respPath, proxies, answers); err != nil {
			return seq, err
		}
	}
	return seq, nil
}

// armedWatch is a children watch being armed in the background.
type armedWatch struct {
	done   chan struct{}
	events <-chan coord.Event
	err    error
}

// armChildren starts arming a children watch of path within ctx.
func armChildren(ctx context.Context, store coord.Store, path string) *armedWatch {
	w := &armedWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.events, w.err = store.WatchChildren(ctx, path)
	}()
	return w
}

// wait returns the watch once armed.
func (w *armedWatch) wait() (<-chan coord.Event, error) {
	<-w.done
	return w.events, w.err
}

// previous is what readPrevious found of the newest action.
type previous struct {
	seq      int64    // -1: no action to wait for
	action   Action   // the action
	answered []string // the answers to it
	aerr     error    // reading the answers
	err      error
}

// readPrevious lists the actions and reads the newest one and its answers
// (two reads sent together: most often every receiver has answered
// already, and nothing is watched).
func readPrevious(ctx context.Context, store coord.Store, productName string) previous {
	kids, err := store.Children(ctx, GetWatchActionPath(productName))
	if errors.Is(err, coord.ErrNoNode) {
		return previous{seq: -1}
	}
	if err != nil {
		return previous{err: err}
	}
	seqs, err := ExtraSeqList(kids)
	if err != nil {
		// A proxy would panic on this name: announcing would not be heard.
		return previous{err: err}
	}
	if len(seqs) == 0 {
		return previous{seq: -1}
	}
	p := previous{seq: int64(seqs[len(seqs)-1])}
	respPath := coord.Join(GetActionResponsePath(productName), seqName(p.seq))
	read := make(chan struct{})
	go func() {
		defer close(read)
		p.answered, p.aerr = store.Children(ctx, respPath)
	}()
	err = GetActionObject(ctx, store, productName, p.seq, &p.action, "")
	<-read
	if errors.Is(err, coord.ErrNoNode) || errors.Is(p.aerr, coord.ErrNoNode) {
		return previous{seq: -1} // collected
	}
	p.err = err
	return p
}

// waitPrevious waits, up to timeout, until the newest action (prev, as
// readPrevious found it) has been answered by those of its receivers that
// are among online. An action still unanswered after that is left to its
// writer (which marks the silent proxies offline when it asked for
// confirmation).
func waitPrevious(ctx context.Context, store coord.Store, productName string, prev previous, online []ProxyInfo, timeout time.Duration) error {
	if prev.err != nil {
		return prev.err
	}
	if prev.seq < 0 || len(online) == 0 {
		return nil
	}
	respPath := coord.Join(GetActionResponsePath(productName), seqName(prev.seq))
	isOnline := map[string]ProxyInfo{}
	for _, p := range online {
		isOnline[p.Id] = p
	}
	var pending []ProxyInfo
	for _, r := range prev.action.Receivers {
		pi, _ := receiverInfo(r)
		if p, ok := isOnline[pi.Id]; ok && (pi.StartAt == "" || pi.StartAt == p.StartAt) {
			pending = append(pending, p)
		}
	}
	if prev.aerr == nil {
		has := make(map[string]bool, len(prev.answered))
		for _, a := range prev.answered {
			has[a] = true
		}
		left := pending[:0]
		for _, p := range pending {
			if !has[p.Id] {
				left = append(left, p)
			}
		}
		pending = left
	}
	if len(pending) == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	left, err := awaitAnswers(wctx, store, respPath, pending, nil)
	if errors.Is(err, coord.ErrNoNode) || (err != nil && ctx.Err() == nil && wctx.Err() != nil) {
		return nil // collected, or the bound ran out already
	}
	if err != nil || len(left) == 0 {
		return err
	}
	return ctx.Err() // the bound ran out: go on, as Codis 2 would have
}

// awaitAnswers watches the children of respPath (R/ActionResponse/<seq>)
// until every proxy of proxies has answered there, or ctx ends. It returns
// the ids of those that have not answered, sorted (none when all have).
// armed, if not nil, is that watch already being armed within ctx.
func awaitAnswers(ctx context.Context, store coord.Store, respPath string, proxies []ProxyInfo, armed *armedWatch) ([]string, error) {
	pending := map[string]bool{}
	for _, p := range proxies {
		pending[p.Id] = true
	}
	waiting := func() []string {
		ids := make([]string, 0, len(pending))
		for id := range pending {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		return ids
	}
	if armed == nil {
		armed = armChildren(ctx, store, respPath)
	}
	events, err := armed.wait()
	if err != nil {
		return nil, err
	}
	report := reporter(ctx)
	var tick <-chan time.Time
	start, reported := time.Now(), -1
	if report != nil {
		t := time.NewTicker(ProgressInterval)
		defer t.Stop()
		tick = t.C
	}
	tell := func(always bool) {
		if report != nil && (always || len(pending) != reported) {
			reported = len(pending)
			report(Progress{Op: "WaitForReceiverWithTimeout", Done: len(proxies) - len(pending), Total: len(proxies), Waiting: waiting(), Elapsed: time.Since(start)})
		}
	}
	for {
		select {
		case <-tick:
			tell(true)
			continue
		case ev, ok := <-events:
			if !ok {
				return waiting(), nil
			}
			if ev.Err != nil {
				return nil, ev.Err
			}
			for _, c := range ev.Children {
				delete(pending, c)
			}
			tell(false)
			if len(pending) == 0 {
				return nil, nil
			}
		}
	}
}

// WaitForReceiverWithTimeout waits until every proxy has answered under
// actionZkPath (R/ActionResponse/<seq>), watching its children. After
// timeoutInMs, the proxies that did not answer are set to mark_offline and
// ErrReceiverTimeout is returned.
func WaitForReceiverWithTimeout(ctx context.Context, store coord.Store, productName string, actionZkPath string, proxies []ProxyInfo, timeoutInMs int) error {
	if err := ValidateProductName(productName); err != nil {
		return errorf("WaitForReceiverWithTimeout", "", err)
	}
	return waitForReceivers(ctx, store, productName, actionZkPath, proxies, time.Duration(timeoutInMs)*time.Millisecond)
}

func waitForReceivers(ctx context.Context, store coord.Store, productName, respPath string, proxies []ProxyInfo, timeout time.Duration) error {
	if len(proxies) == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return waitAnswered(ctx, wctx, store, productName, respPath, proxies, nil)
}

// waitAnswered is waitForReceivers with its bound wctx (within ctx) made
// and, if armed is not nil, the answers' watch being armed within wctx.
func waitAnswered(ctx, wctx context.Context, store coord.Store, productName, respPath string, proxies []ProxyInfo, armed *armedWatch) error {
	const op = "WaitForReceiverWithTimeout"
	ids, err := awaitAnswers(wctx, store, respPath, proxies, armed)
	if err != nil {
		return errorf(op, respPath, err)
	}
	if len(ids) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		// The caller's context ended first: the action stands, and the
		// proxies that had not answered are left as they are. Say so.
		return errorf(op, respPath, fmt.Errorf("%w: the action was announced and %s had not answered when the wait was cut short; they were not marked offline and may still route by the old state (check with proxy list; mark them offline if they stay silent)", err, strings.Join(ids, ", ")))
	}
	// Timed out: the proxies that did not answer are taken out of service.
	for _, id := range ids {
		err := SetProxyStatus(ctx, store, productName, id, PROXY_STATE_MARK_OFFLINE)
		if err != nil && !errors.Is(err, coord.ErrNoNode) {
			return errorf(op, respPath, fmt.Errorf("%w (%s did not answer); marking it offline: %v", ErrReceiverTimeout, id, err))
		}
	}
	return errorf(op, respPath, fmt.Errorf("%w: no answer from %s", ErrReceiverTimeout, strings.Join(ids, ", ")))
}

// ActionGCFloor is how many of the newest actions GC_TYPE_N keeps beyond
// the number asked for, as Codis 2 does: proxies still reading recent
// actions must find them (a Codis 2 proxy panics on an action that vanishes
// as it reads it).
const ActionGCFloor = 500

// gcBatch is how many actions ActionGC deletes per round: their answers,
// response directories and nodes in as few transactions as the store's
// limits allow (one delete at a time cost 6 or more round trips an action,
// 21 s for 10,000 on etcd).
const gcBatch = 128

// gcListInFlight is how many response directories ActionGC lists at once.
const gcListInFlight = 8

// listAnswers lists the response directories of the actions seqs, a few at
// once: answers[i] holds the answers in seqs[i]'s directory, and found[i]
// says whether there is one.
func listAnswers(ctx context.Context, store coord.Store, respPrefix string, seqs []int) (answers [][]string, found []bool, err error) {
	answers, found = make([][]string, len(seqs)), make([]bool, len(seqs))
	err = fanout.Each(ctx, len(seqs), gcListInFlight, func(ctx context.Context, i int) error {
		kids, err := store.Children(ctx, coord.Join(respPrefix, seqName(int64(seqs[i]))))
		switch {
		case errors.Is(err, coord.ErrNoNode):
			return nil
		case err != nil:
			return err
		}
		answers[i], found[i] = kids, true
		return nil
	})
	return answers, found, err
}

// deleteActions deletes the actions seqs, their response directories and
// the answers in them: the response directories listed a few at once, then
// transactions of deletes, children before parents. When a transaction is
// refused because the nodes changed meanwhile (an answer came, a node went),
// the batch is deleted node by node instead.
func deleteActions(ctx context.Context, store coord.Store, prefix, respPrefix string, seqs []int) error {
	answers, found, err := listAnswers(ctx, store, respPrefix, seqs)
	if err != nil {
		return err
	}
	var ops []coord.Op
	for i, seq := range seqs {
		name := seqName(int64(seq))
		if found[i] {
			resp := coord.Join(respPrefix, name)
			for _, a := range answers[i] {
				ops = append(ops, coord.DeleteOp(coord.Join(resp, a), coord.AnyVersion))
			}
			ops = append(ops, coord.DeleteOp(resp, coord.AnyVersion))
		}
		ops = append(ops, coord.DeleteOp(coord.Join(prefix, name), coord.AnyVersion))
	}
	batches, err := coord.Batches(ops, store.Limits())
	if err != nil {
		return err
	}
	changed := false
	for _, b := range batches {
		_, err := store.Txn(ctx, b...)
		if errors.Is(err, coord.ErrNoNode) || errors.Is(err, coord.ErrNotEmpty) {
			changed = true // changed meanwhile: one by one below
			break
		}
		if err != nil {
			return err
		}
	}
	if !changed {
		return nil
	}
	for _, seq := range seqs {
		name := seqName(int64(seq))
		for _, p := range []string{coord.Join(prefix, name), coord.Join(respPrefix, name)} {
			if err := coord.DeleteAll(ctx, store, p); err != nil {
				return coord.Errorf("delete", p, err)
			}
		}
	}
	return nil
}

// gcInFlight is how many batches of actions ActionGC deletes at once.
const gcInFlight = 4

// deleteDoomed deletes the actions doomed, in batches of gcBatch, up to
// gcInFlight of them at once, and reports the progress after each batch
// (on the calling goroutine, as WithProgress promises).
func deleteDoomed(ctx context.Context, store coord.Store, prefix, respPrefix string, doomed []int) error {
	if len(doomed) == 0 {
		return nil
	}
	report, start := reporter(ctx), time.Now()
	progress := func(done int) {
		if report != nil {
			report(Progress{Op: "ActionGC", Done: done, Total: len(doomed), Elapsed: time.Since(start)})
		}
	}
	progress(0)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		n   int
		err error
	}
	results := make(chan result)
	var first error
	next, pending, deleted := 0, 0, 0
	for (next < len(doomed) && first == nil) || pending > 0 {
		if next < len(doomed) && first == nil && pending < gcInFlight {
			batch := doomed[next:min(next+gcBatch, len(doomed))]
			next += len(batch)
			pending++
			go func() {
				results <- result{len(batch), deleteActions(ctx, store, prefix, respPrefix, batch)}
			}()
			continue
		}
		r := <-results
		pending--
		switch {
		case r.err != nil && first == nil:
			first = r.err
			cancel()
		case r.err == nil:
			deleted += r.n
			progress(deleted)
		}
	}
	return first
}

// ActionGC deletes old actions with their response directories: with
// GC_TYPE_N all but the newest keep+ActionGCFloor; with GC_TYPE_SEC those
// older than keep seconds. Response directories whose action is gone are deleted with them.
func ActionGC(ctx context.Context, store coord.Store, productName string, gcType int, keep int) error {
	const op = "ActionGC"
	if err := ValidateProductName(productName); err != nil {
		return errorf(op, "", err)
	}
	if keep < 0 || (gcType != GC_TYPE_N && gcType != GC_TYPE_SEC) {
		return errorf(op, productName, fmt.Errorf("%w: gc type %d, keep %d", ErrInvalidArgument, gcType, keep))
	}
	return locked(ctx, store, productName, op, func(ctx context.Context, store coord.Store) error {
		prefix, respPrefix := GetWatchActionPath(productName), GetActionResponsePath(productName)
		// The names are scanned a page at a time (etcd reads pages) and
		// only their numbers kept.
		var seqs []int
		err := coord.ScanChildren(ctx, store, prefix, func(names []string) error {
			page, err := ExtraSeqList(names)
			seqs = append(seqs, page...)
			return err
		})
		if errors.Is(err, coord.ErrNoNode) {
			return nil
		}
		if err != nil {
			return errorf(op, prefix, err)
		}
		sort.Ints(seqs)
		var doomed []int
		switch gcType {
		case GC_TYPE_N:
			if len(seqs) > keep+ActionGCFloor {
				doomed = seqs[:len(seqs)-keep-ActionGCFloor]
			}
		case GC_TYPE_SEC:
			now := time.Now().Unix()
			for i := 0; i < len(seqs); i += gcBatch {
				chunk := seqs[i:min(i+gcBatch, len(seqs))]
				paths := make([]string, len(chunk))
				for j, seq := range chunk {
					paths[j] = coord.Join(prefix, seqName(int64(seq)))
				}
				res, err := store.GetMany(ctx, paths...)
				if err != nil {
					return errorf(op, prefix, err)
				}
				for j, r := range res {
					if r.Err != nil {
						continue // gone meanwhile (GetMany fails a result only so)
					}
					var act Action
					if err := decode(paths[j], r.Data, &act); err != nil {
						return err
					}
					ts, err := strconv.ParseInt(act.Ts, 10, 64)
					if err != nil {
						return errorf(op, paths[j], fmt.Errorf("%w: ts %q", ErrMalformed, act.Ts))
					}
					if now-ts > int64(keep) {
						doomed = append(doomed, chunk[j])
					}
				}
			}
		}
		if err := deleteDoomed(ctx, store, prefix, respPrefix, doomed); err != nil {
			return errorf(op, prefix, err)
		}
		// Response directories left without an action older than the oldest
		// kept action (an action whose creation failed half-way, or an earlier
		// GC interrupted) go too.
		if len(seqs) > len(doomed) {
			oldestKept := seqs[len(doomed)]
			var orphans []string
			err := coord.ScanChildren(ctx, store, respPrefix, func(names []string) error {
				for _, r := range names {
					if n, err := strconv.Atoi(r); err == nil && n < oldestKept {
						orphans = append(orphans, r)
					}
				}
				return nil
			})
			if err != nil && !errors.Is(err, coord.ErrNoNode) {
				return errorf(op, respPrefix, err)
			}
			for _, r := range orphans {
				if err := coord.DeleteAll(ctx, store, coord.Join(respPrefix, r)); err != nil {
					return errorf(op, coord.Join(respPrefix, r), err)
				}
			}
		}
		return nil
	})
}

// GetActionWithSeq reads action seq of the product. provider is accepted
// for compatibility and not used.
func GetActionWithSeq(ctx context.Context, store coord.Store, productName string, seq int64, provider string) (*Action, error) {
	var act Action
	if err := GetActionObject(ctx, store, productName, seq, &act, provider); err != nil {
		return nil, err
	}
	return &act, nil
}
