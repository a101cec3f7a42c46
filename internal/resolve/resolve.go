// Package resolve finds out what a create whose outcome is unknown made.
//
// A create is sent, the connection dies before its answer: the server may
// have applied it or not. Guessing is wrong both ways: taking it as failed
// leaves a node nobody knows of (an ephemeral lock node that blocks every
// other contender), sending it again makes a second one (a sequential node)
// or fails with ErrNodeExists on the node the first attempt made. Instead,
// once the server answers again, Created looks for the node: one whose
// creation is later than a stamp the client saw before sending (Stat.Created
// orders creations), with the data sent, never changed (version 0) and, for
// an ephemeral node, owned by the session that sent it. A node that matches
// is taken as made by this create; none means the create was not applied
// and may be sent again.
//
// What the match cannot tell apart is a persistent node with the same data
// made at the same moment by another client under the same name (or, for a
// sequential create, under the same parent and prefix). Ephemeral nodes are
// told apart by their owner. Claims keeps two creates of one store that were
// both left unknown from taking the same node.
package resolve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coordkit/coord/coord"
)

// Stamp is the largest creation stamp (Stat.Created order: a ZooKeeper
// zxid, an etcd revision, a Consul index) a store has seen in replies.
// Every node made later has a larger one. The zero value is 0.
type Stamp struct{ v atomic.Int64 }

// See records a stamp a reply carried.
func (s *Stamp) See(v int64) {
	for {
		old := s.v.Load()
		if v <= old || s.v.CompareAndSwap(old, v) {
			return
		}
	}
}

// Load returns the largest stamp seen.
func (s *Stamp) Load() int64 { return s.v.Load() }

// Claims records the nodes that resolutions of one store took, so that no
// two take the same node. The zero value is ready.
type Claims struct {
	mu sync.Mutex
	m  map[string]int64 // path -> Created
}

// claim takes path (made at created) unless it is already taken.
func (c *Claims) claim(path string, created int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int64{}
	}
	if got, ok := c.m[path]; ok && got == created {
		return false
	}
	c.m[path] = created
	return true
}

// Created looks for the node a create of path, data and mode made, if it
// made one. after is a Stat.Created stamp of the backend that the store saw
// before it sent the create (every node the create could have made has a
// larger one); owner is the ID of the session the create was sent under
// (ephemeral modes). It returns the node's path and true, or false when the
// create was not applied. Reads go through s and are retried by it.
func Created(ctx context.Context, s coord.Store, c *Claims, path string, data []byte, mode coord.Mode, after int64, owner string) (string, bool, error) {
	match := func(p string, st coord.Stat, got []byte) bool {
		if st.Created <= after || st.Version != 0 || !bytes.Equal(got, data) {
			return false
		}
		if mode&coord.Ephemeral != 0 {
			if st.Owner != owner {
				return false
			}
		} else if st.Ephemeral {
			return false
		}
		return c.claim(p, st.Created)
	}
	if mode&coord.Sequential == 0 {
		got, st, err := s.Get(ctx, path)
		if errors.Is(err, coord.ErrNoNode) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		if match(path, st, got) {
			return path, true, nil
		}
		return "", false, nil
	}
	// "/q/n-" and "/q/" (the empty prefix) both name the parent "/q".
	parent, prefix := coord.Parent(path), coord.Base(path)
	kids, err := s.Children(ctx, parent)
	if errors.Is(err, coord.ErrNoNode) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	// Newest first: the node looked for is among the last made.
	order := coord.SortBySequence(kids, prefix)
	for i := len(order) - 1; i >= 0; i-- {
		p := coord.Join(parent, order[i])
		got, st, err := s.Get(ctx, p)
		if errors.Is(err, coord.ErrNoNode) {
			continue
		}
		if err != nil {
			return "", false, err
		}
		if st.Created <= after {
			break // made before the create was sent, as are all older ones
		}
		if match(p, st, got) {
			return p, true, nil
		}
	}
	return "", false, nil
}

// Create runs a store's create with send, and resolves an unknown outcome:
// when send fails with an error wrapping coord.ErrOutcomeUnknown, it looks
// for the node (Created) and returns it, or sends the create again if it
// was not applied. Before each send it reads stamp, the largest
// Stat.Created the store has seen, and for an ephemeral mode the ID of the
// store's session, which the create goes under. Without a deadline on ctx
// it gives up after reqTO.
func Create(ctx context.Context, s coord.Store, c *Claims, reqTO time.Duration, path string, data []byte, mode coord.Mode,
	stamp func() int64, send func() (string, error)) (string, error) {
	start := time.Now()
	for {
		after, own := stamp(), ""
		if mode&coord.Ephemeral != 0 {
			if sess, err := s.Session(ctx); err == nil {
				own = sess.ID()
			}
		}
		p, err := send()
		if err == nil || !errors.Is(err, coord.ErrOutcomeUnknown) {
			return p, err
		}
		p, ok, rerr := Created(ctx, s, c, path, data, mode, after, own)
		if rerr != nil {
			why := fmt.Sprintf("the create's answer was lost (%v), and finding out whether it was applied failed: %v", err, rerr)
			if ctx.Err() != nil {
				// The caller's deadline or cancellation, as for any call.
				return "", coord.Errorf("create", path, fmt.Errorf("%w (%s)", coord.InFlightErr(ctx), why))
			}
			return "", coord.Errorf("create", path, fmt.Errorf("%w: %s", coord.ErrUnavailable, why))
		}
		if ok {
			return p, nil
		}
		// Not applied: send it again, within reqTO when ctx has no deadline.
		if ctx.Err() != nil {
			return "", coord.Errorf("create", path, fmt.Errorf("%w (the create's answer was lost (%v) and it was not applied)", coord.InFlightErr(ctx), err))
		}
		if _, has := ctx.Deadline(); !has && time.Since(start) > reqTO {
			return "", coord.Errorf("create", path, fmt.Errorf("%w: the create's answer was lost (%v) and it was not applied; tried until the request timeout, %v", coord.ErrUnavailable, err, reqTO))
		}
	}
}
