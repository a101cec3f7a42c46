package models

import (
	"context"
	"time"
)

// Progress reports how far a long models call has come, to the function
// that WithProgress put in its context.
type Progress struct {
	// Op is the call reporting: "WaitForReceiverWithTimeout" while a
	// confirmed action waits for the proxies' answers (every models
	// function that announces a confirmed action reports so), "ActionGC"
	// while old actions are deleted, "Lock" while a change waits for the
	// product lock that another writer holds.
	Op string
	// Done of Total: proxies that have answered of those that must, or
	// actions deleted of those to delete.
	Done, Total int
	// Waiting names the proxies that have not answered yet, sorted
	// (WaitForReceiverWithTimeout), or the lock's holder (Lock: one entry,
	// as the error naming it would say).
	Waiting []string
	// Elapsed is how long the call has been at it.
	Elapsed time.Duration
}

// ProgressInterval is how often a wait for answers reports while nothing
// changes, so that a silent proxy shows.
const ProgressInterval = time.Second

type progressKey struct{}

// WithProgress returns ctx telling the models functions called with it to
// report their progress to fn: at the start, on every change and, while a
// wait for answers sees none or a wait for the product lock goes on, every
// ProgressInterval. fn is called on the
// goroutine of the call and must return quickly; it must not call models
// functions.
func WithProgress(ctx context.Context, fn func(Progress)) context.Context {
	return context.WithValue(ctx, progressKey{}, fn)
}

// reporter returns the progress function ctx carries (nil when none).
func reporter(ctx context.Context) func(Progress) {
	fn, _ := ctx.Value(progressKey{}).(func(Progress))
	return fn
}
