package coord

import (
	"bytes"
	"context"
	"errors"
	"strconv"
)

// ErrNoLeader: the election has no leader.
var ErrNoLeader = errors.New("no leader")

// Election elects one leader among candidates on a directory node. Each
// candidate is a contender of a Mutex on it, its node holding the value it
// campaigns with; the leader is the lowest contender. Leadership has the
// Mutex's guarantees: it ends with the session (Lost closes before the
// server can have let another candidate lead), a leader has a fencing Token
// and a Fence op, and a candidate whose session ends stops campaigning.
//
// Anyone can follow the election with Leader and Observe, without
// campaigning.
type Election struct {
	s      Store
	dir    string
	prefix string
	m      *Mutex
}

// Leader is the current leader of an election.
type Leader struct {
	Node  string // its node
	Value []byte // the value it campaigned with
	Token int64  // its fencing token (its node's sequence number)
}

// NewElection returns an election on dir whose candidate nodes are named
// prefix+sequence. dir is created when missing.
func NewElection(s Store, dir, prefix string) *Election {
	return &Election{s: s, dir: dir, prefix: prefix}
}

// Campaign blocks until this candidate leads, or ctx ends, or its session
// ends (ErrLockLost). value is what observers see of this leader.
func (e *Election) Campaign(ctx context.Context, value []byte) error {
	m := NewMutex(e.s, e.dir, e.prefix, value)
	if err := m.Lock(ctx); err != nil {
		return err
	}
	e.m = m
	return nil
}

// Resign gives up leadership (a leadership already lost resigns without
// error).
func (e *Election) Resign(ctx context.Context) error {
	if e.m == nil {
		return Errorf("resign", e.dir, ErrNoLeader)
	}
	if err := e.m.Unlock(ctx); err != nil {
		return err
	}
	e.m = nil
	return nil
}

// Lost is closed when this candidate's leadership ends (its session ended
// or its node was deleted); nil when it does not lead.
func (e *Election) Lost() <-chan struct{} {
	if e.m == nil {
		return nil
	}
	return e.m.Lost()
}

// Token is the fencing token of this leader (0 when it does not lead).
func (e *Election) Token() int64 {
	if e.m == nil {
		return 0
	}
	return e.m.Token()
}

// Fence is an op that holds only while this candidate leads (see
// Mutex.Fence).
func (e *Election) Fence() Op {
	if e.m == nil {
		return CheckOp(e.dir+"/", AnyVersion)
	}
	return e.m.Fence()
}

// Leader returns the current leader, or an error wrapping ErrNoLeader.
func (e *Election) Leader(ctx context.Context) (Leader, error) {
	for {
		kids, err := e.s.Children(ctx, e.dir)
		if errors.Is(err, ErrNoNode) {
			return Leader{}, Errorf("leader", e.dir, ErrNoLeader)
		}
		if err != nil {
			return Leader{}, err
		}
		l, ok, err := e.lowest(ctx, kids)
		if err != nil {
			return Leader{}, err
		}
		if ok {
			return l, nil
		}
		if len(SortBySequence(kids, e.prefix)) == 0 {
			return Leader{}, Errorf("leader", e.dir, ErrNoLeader)
		}
		// The lowest went between the listing and the read: list again.
	}
}

// lowest reads the lowest candidate of kids; ok is false when there is
// none or it went before it was read.
func (e *Election) lowest(ctx context.Context, kids []string) (Leader, bool, error) {
	order := SortBySequence(kids, e.prefix)
	if len(order) == 0 {
		return Leader{}, false, nil
	}
	node := Join(e.dir, order[0])
	data, _, err := e.s.Get(ctx, node)
	if errors.Is(err, ErrNoNode) {
		return Leader{}, false, nil
	}
	if err != nil {
		return Leader{}, false, err
	}
	seq, _ := strconv.ParseInt(order[0][len(e.prefix):], 10, 64)
	return Leader{Node: node, Value: data, Token: seq}, true, nil
}

// Observe sends the leader each time it changes, starting with the current
// one; a Leader with an empty Node means there is none. The channel is
// closed when ctx ends or the watch fails (the store closed).
func (e *Election) Observe(ctx context.Context) (<-chan Leader, error) {
	if err := MkdirAll(ctx, e.s, e.dir); err != nil {
		return nil, err
	}
	events, err := e.s.WatchChildren(ctx, e.dir)
	if err != nil {
		return nil, err
	}
	out := make(chan Leader)
	go func() {
		defer close(out)
		var last Leader
		first := true
		for ev := range events {
			if ev.Err != nil {
				return
			}
			l, ok, err := e.lowest(ctx, ev.Children)
			if err != nil {
				return
			}
			if !ok && len(SortBySequence(ev.Children, e.prefix)) > 0 {
				continue // the lowest just went: the next event tells
			}
			if !first && l.Node == last.Node && bytes.Equal(l.Value, last.Value) {
				continue
			}
			first, last = false, l
			select {
			case out <- l:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
