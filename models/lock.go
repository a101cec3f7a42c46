package models

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/coordkit/coord/coord"
)

// DefaultLockWait is how long a models function waits for the product lock
// that another writer holds, when its context has no deadline. It then
// fails with an error wrapping coord.ErrLocked that names the holder.
const DefaultLockWait = 30 * time.Second

// ProductLock is the product's cluster lock, R/LOCK: the lock Codis 2's
// codis-config and dashboard take around every change they make. Every
// models function that changes the product (and so may announce an action)
// takes it for the call, so that no two writers, in this process or in
// others, Codis 2 dashboards included, announce at once: a Codis 2 proxy
// answers only the newest action it finds, and an older one left unanswered
// would get a healthy proxy marked offline.
//
// To make several changes under one hold, lock it and pass WithLock(ctx,
// lock) to the functions; they then use it instead of taking it again.
type ProductLock struct {
	*coord.Mutex
	product string
}

// NewProductLock returns the product's lock: an ephemeral sequential node
// R/LOCK/lock-<seq> holding {"desc","hostname","pid"} (Codis 2 made it
// persistent, so a crashed holder kept the lock until ForceRemoveLock). The
// lowest node holds the lock, whoever made it, so it excludes Codis 2 tools
// taking the same lock and is excluded by them.
func NewProductLock(store coord.Store, productName, desc string) (*ProductLock, error) {
	if err := ValidateProductName(productName); err != nil {
		return nil, errorf("NewProductLock", "", err)
	}
	host, _ := os.Hostname()
	data := mustEncode(LockInfo{Desc: desc, Hostname: host, Pid: os.Getpid()})
	return &ProductLock{Mutex: coord.NewMutex(store, GetLockPath(productName), "lock-", data), product: productName}, nil
}

// Product is the name of the product the lock belongs to.
func (l *ProductLock) Product() string { return l.product }

type lockKey struct{ product string }

// WithLock returns ctx telling the models functions called with it that
// the caller holds lock: they make their changes under it instead of taking
// the product lock themselves, and fail with coord.ErrLockLost if it was
// lost. Without it, a function called while the same process holds the lock
// would wait for it like any other writer.
func WithLock(ctx context.Context, lock *ProductLock) context.Context {
	return context.WithValue(ctx, lockKey{lock.product}, lock)
}

type noLockKey struct{}

// WithoutLock returns ctx telling the models functions called with it to
// make their changes without the product lock: for emergencies only (a
// holder that is alive but stuck, when even ForceRemoveLock is not wanted).
// Changes made so are not serialized with other writers, so a Codis 2 proxy
// may miss an action announced at the same time as another.
func WithoutLock(ctx context.Context) context.Context {
	return context.WithValue(ctx, noLockKey{}, true)
}

// heldLock returns the product lock ctx says the caller holds, if any.
func heldLock(ctx context.Context, product string) *ProductLock {
	l, _ := ctx.Value(lockKey{product}).(*ProductLock)
	return l
}

// locked runs fn holding the product lock: the one ctx carries (WithLock),
// or one taken for the call (described as op) and released after it. fn's
// context carries the lock, so the models functions it calls do not take
// it again, and its store is fenced by it (see fencedStore): once the lock
// is lost, fn's writes fail with coord.ErrLockLost and change nothing.
func locked(ctx context.Context, store coord.Store, product, op string, fn func(ctx context.Context, store coord.Store) error) error {
	if err := ValidateProductName(product); err != nil {
		return errorf(op, "", err)
	}
	if ctx.Value(noLockKey{}) != nil {
		return fn(ctx, store)
	}
	if l := heldLock(ctx, product); l != nil {
		if l.Node() == "" {
			return errorf(op, product, fmt.Errorf("%w: the product lock passed with WithLock is not held", coord.ErrLockLost))
		}
		select {
		case <-l.Lost():
			return errorf(op, product, fmt.Errorf("%w: the product lock passed with WithLock was lost", coord.ErrLockLost))
		default:
		}
		return fn(ctx, fenced(store, l))
	}
	desc := op
	if d, _ := ctx.Value(lockDescKey{}).(string); d != "" {
		desc = d + ": " + op
	}
	l, err := NewProductLock(store, product, desc)
	if err != nil {
		return err
	}
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		wctx, cancel = context.WithTimeout(ctx, DefaultLockWait)
	}
	start := time.Now()
	err = lockReporting(ctx, wctx, store, product, l)
	ownBound := ctx.Err() == nil && errors.Is(wctx.Err(), context.DeadlineExceeded)
	cancel()
	if err != nil {
		if ownBound {
			// Our own bound ran out, not the caller's context.
			return errorf(op, product, fmt.Errorf("%w: waited %v for the product lock, %s", coord.ErrLocked, DefaultLockWait, holderText(ctx, store, product)))
		}
		if ctx.Err() != nil {
			return errorf(op, product, fmt.Errorf("%w: %w after waiting %v for the product lock, %s", coord.ErrLocked, ctx.Err(), time.Since(start).Round(100*time.Millisecond), holderText(context.WithoutCancel(ctx), store, product)))
		}
		return errorf(op, product, err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = l.Unlock(uctx)
	}()
	return fn(WithLock(ctx, l), fenced(store, l))
}

type lockDescKey struct{}

// WithLockDesc returns ctx telling the models functions called with it to
// describe the product lock they take as desc followed by the function's
// name (desc: "Slot.SetMigrateStatus"), instead of the name alone: what
// the people and tools that find the lock held see of its holder (lock
// show, codis-config, an error naming the holder). The lock node's data
// keeps Codis 2's format; desc is its free-text "desc" field.
func WithLockDesc(ctx context.Context, desc string) context.Context {
	return context.WithValue(ctx, lockDescKey{}, desc)
}

// lockReporting takes l within wctx; with a progress function in ctx, it
// reports every ProgressInterval who holds the lock meanwhile (Op "Lock"),
// from the caller's goroutine as WithProgress promises.
func lockReporting(ctx, wctx context.Context, store coord.Store, product string, l *ProductLock) error {
	report := reporter(ctx)
	if report == nil {
		return l.Lock(wctx)
	}
	done := make(chan error, 1)
	go func() { done <- l.Lock(wctx) }()
	start := time.Now()
	tick := time.NewTicker(ProgressInterval)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			report(Progress{Op: "Lock", Waiting: []string{holderText(wctx, store, product)}, Elapsed: time.Since(start)})
		}
	}
}

// WithProductLock runs fn holding the product lock, as every changing models
// function does: the lock ctx carries (WithLock), or one taken for the call
// with desc as its description and released after it; none with
// WithoutLock. fn's store is fenced by the lock: once the lock is lost its
// writes fail with coord.ErrLockLost and change nothing. A lock held by
// another writer past ctx's deadline (DefaultLockWait without one) fails
// with coord.ErrLocked naming the holder. For changes the models functions
// do not make, such as a repair of a single node.
func WithProductLock(ctx context.Context, store coord.Store, productName, desc string, fn func(ctx context.Context, store coord.Store) error) error {
	return locked(ctx, store, productName, desc, fn)
}

// LockHolder returns what the holder of the product lock wrote in its node
// (nil when nobody holds it) and the node's path.
func LockHolder(ctx context.Context, store coord.Store, productName string) (*LockInfo, string, error) {
	const op = "LockHolder"
	if err := ValidateProductName(productName); err != nil {
		return nil, "", errorf(op, "", err)
	}
	dir := GetLockPath(productName)
	for {
		kids, err := store.Children(ctx, dir)
		if errors.Is(err, coord.ErrNoNode) {
			return nil, "", nil
		}
		if err != nil {
			return nil, "", errorf(op, dir, err)
		}
		order := coord.SortBySequence(kids, "lock-")
		if len(order) == 0 {
			return nil, "", nil
		}
		p := coord.Join(dir, order[0])
		data, _, err := store.Get(ctx, p)
		if errors.Is(err, coord.ErrNoNode) {
			continue // released meanwhile: read again
		}
		if err != nil {
			return nil, "", errorf(op, p, err)
		}
		var info LockInfo
		if err := decode(p, data, &info); err != nil {
			return nil, p, err
		}
		return &info, p, nil
	}
}

// holderText says who holds the product lock, for an error message.
func holderText(ctx context.Context, store coord.Store, product string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, node, err := LockHolder(ctx, store, product)
	switch {
	case err != nil:
		return fmt.Sprintf("holder unknown (%v)", err)
	case info == nil:
		return "now free"
	}
	return fmt.Sprintf("held by %v (%s; codis-config action remove-lock or coordctl lock force-remove frees it)", info, node)
}

// ForceRemoveLock deletes every node of the product lock.
func ForceRemoveLock(ctx context.Context, store coord.Store, productName string) error {
	const op = "ForceRemoveLock"
	if err := ValidateProductName(productName); err != nil {
		return errorf(op, "", err)
	}
	dir := GetLockPath(productName)
	kids, err := store.Children(ctx, dir)
	if errors.Is(err, coord.ErrNoNode) {
		return nil
	}
	if err != nil {
		return errorf(op, dir, err)
	}
	for _, k := range kids {
		if err := coord.DeleteAll(ctx, store, coord.Join(dir, k)); err != nil {
			return errorf(op, coord.Join(dir, k), err)
		}
	}
	return nil
}
