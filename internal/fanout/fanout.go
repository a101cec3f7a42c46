// Package fanout runs independent calls a few at once, stopping at the
// first failure: the batches of a DeleteAll, the listings of an ActionGC
// batch, a test's creates.
package fanout

import (
	"context"
	"sync"
)

// Each calls fn(ctx, i) for every i from 0 to n-1, at most limit at a time
// (limit below 1 counts as 1), and returns once every call it started has
// returned. After the first error no new call starts and the ctx the calls
// were given is cancelled; Each returns that error, or else the error of
// ctx if it ended before every call started.
func Each(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	limit = max(limit, 1)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, limit)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
