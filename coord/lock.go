package coord

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Mutex is a distributed lock on a directory node, the ZooKeeper recipe:
// each contender creates an ephemeral sequential child "<prefix><seq>"; the
// lowest sequence number holds the lock; the others each wait on the node just
// before theirs (no herd). The holder's node carries data (Codis keeps a JSON
// description of the holder there). Because the node is ephemeral, a holder
// whose session ends loses the lock: watch Lost.
type Mutex struct {
	s      Store
	dir    string
	prefix string
	data   []byte

	node string
	sess Session
}

// NewMutex returns a mutex on dir whose nodes are named prefix+sequence
// ("lock-" makes "lock-0000000007"). dir is created when missing.
func NewMutex(s Store, dir, prefix string, data []byte) *Mutex {
	return &Mutex{s: s, dir: dir, prefix: prefix, data: data}
}

// Lock blocks until the lock is held or ctx ends. On error nothing is held
// and the contender node is removed.
func (m *Mutex) Lock(ctx context.Context) error {
	if m.node != "" {
		return Errorf("lock", m.dir, fmt.Errorf("%w: already held", ErrInvalidArgument))
	}
	sess, err := m.s.Session(ctx)
	if err != nil {
		return err
	}
	node, err := CreateAll(ctx, m.s, Join(m.dir, m.prefix), m.data, EphemeralSequential)
	if err != nil {
		return err
	}
	if err := m.wait(ctx, node); err != nil {
		// Best effort: ctx may be done, so use a fresh one for the cleanup.
		_ = m.s.Delete(context.WithoutCancel(ctx), node, AnyVersion)
		return err
	}
	m.node, m.sess = node, sess
	return nil
}

// wait returns when node is the lowest contender.
func (m *Mutex) wait(ctx context.Context, node string) error {
	me := Base(node)
	for {
		kids, err := m.s.Children(ctx, m.dir)
		if err != nil {
			return err
		}
		contenders := SortBySequence(kids, m.prefix)
		idx := -1
		for j, c := range contenders {
			if c == me {
				idx = j
				break
			}
		}
		switch {
		case idx < 0:
			return Errorf("lock", node, fmt.Errorf("%w: contender node vanished", ErrSessionExpired))
		case idx == 0:
			return nil
		}
		prev := Join(m.dir, contenders[idx-1])
		wctx, cancel := context.WithCancel(ctx)
		events, err := m.s.WatchData(wctx, prev)
		if err != nil {
			cancel()
			return err
		}
		for ev := range events {
			if ev.Err != nil || !ev.Exists {
				break
			}
		}
		cancel()
		if err := ctx.Err(); err != nil {
			return Errorf("lock", node, err)
		}
	}
}

// Unlock releases the lock.
func (m *Mutex) Unlock(ctx context.Context) error {
	if m.node == "" {
		return Errorf("unlock", m.dir, fmt.Errorf("%w: not held", ErrInvalidArgument))
	}
	err := m.s.Delete(ctx, m.node, AnyVersion)
	if errors.Is(err, ErrNoNode) {
		err = nil // the session ended and took the node with it
	}
	if err == nil {
		m.node, m.sess = "", nil
	}
	return err
}

// Node is the path of the held lock node ("" when not held).
func (m *Mutex) Node() string { return m.node }

// Lost is closed when the session that holds the lock ends; nil when not held.
func (m *Mutex) Lost() <-chan struct{} {
	if m.sess == nil {
		return nil
	}
	return m.sess.Done()
}

// SortBySequence returns the names that are prefix followed by a sequence
// number, ordered by that number. Other names are left out.
func SortBySequence(names []string, prefix string) []string {
	type seqName struct {
		n    int64
		name string
	}
	var out []seqName
	for _, name := range names {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		n, err := strconv.ParseInt(name[len(prefix):], 10, 64)
		if err != nil || n < 0 {
			continue
		}
		out = append(out, seqName{n, name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n < out[j].n })
	res := make([]string, len(out))
	for i, s := range out {
		res[i] = s.name
	}
	return res
}
