package coord

import (
	"context"
	"errors"
	"fmt"

	"github.com/coordkit/coord/internal/fanout"
)

// CreateAll creates the missing ancestors of path as empty persistent nodes,
// then the node itself as Store.Create does, and returns its path. Ancestors
// that already exist are left as they are.
func CreateAll(ctx context.Context, s Store, path string, data []byte, mode Mode) (string, error) {
	// The same checks as Create's, so that what Create takes ("/q/" with an
	// empty sequential prefix) CreateAll takes too.
	if err := CheckCall(ctx, "create", path, nil, mode, 0, Limits{}); err != nil {
		return "", err
	}
	for attempt := 0; ; attempt++ {
		p, err := s.Create(ctx, path, data, mode)
		if !errors.Is(err, ErrNoNode) || attempt == 3 {
			return p, err
		}
		if err := MkdirAll(ctx, s, Parent(path)); err != nil {
			return "", err
		}
	}
}

// MkdirAll makes path and its missing ancestors as empty persistent nodes.
// Nodes that exist already are fine.
func MkdirAll(ctx context.Context, s Store, path string) error {
	if err := ValidatePath(path); err != nil {
		return Errorf("create", path, err)
	}
	if path == "/" {
		return nil
	}
	if _, ok, err := s.Exists(ctx, path); err != nil || ok {
		return err
	}
	if err := MkdirAll(ctx, s, Parent(path)); err != nil {
		return err
	}
	if _, err := s.Create(ctx, path, nil, Persistent); err != nil && !errors.Is(err, ErrNodeExists) {
		return err
	}
	return nil
}

// DeleteAll deletes the node at path and everything below it. A node that
// vanishes meanwhile is fine; children created meanwhile are deleted too (a
// few times at most, then ErrNotEmpty is returned). Deleting a missing node
// is not an error. The root cannot be deleted, only emptied: DeleteAll("/")
// deletes every node.
//
// Leaves are deleted in transactions of as many as the store's Limits
// allow, a few at once, and a node's children are listed in pages (see
// ScanChildren): 100,000 leaves take about 200 transactions on the embedded
// etcd, 50 on ZooKeeper and 3,125 on Consul, not 200,000 requests. DeleteAll
// is not atomic: when it fails, part of the subtree may be gone.
func DeleteAll(ctx context.Context, s Store, path string) error {
	if err := ValidatePath(path); err != nil {
		return Errorf("delete", path, err)
	}
	return deleteAll(ctx, s, path, deleteInFlight)
}

// deleteAll is DeleteAll with up to inFlight transactions at once for the
// children of path; the subtrees below them go one transaction at a time,
// so that a deep tree does not multiply the requests in flight.
func deleteAll(ctx context.Context, s Store, path string, inFlight int) error {
	lim := s.Limits()
	for attempt := 0; ; attempt++ {
		found, err := scanFound(ctx, s, path, func(names []string) error {
			return deleteChildren(ctx, s, lim, path, names, inFlight)
		})
		if !found || err != nil {
			return err
		}
		if path == "/" {
			return nil
		}
		err = s.Delete(ctx, path, AnyVersion)
		switch {
		case err == nil, errors.Is(err, ErrNoNode):
			return nil
		case errors.Is(err, ErrNotEmpty) && attempt < 5:
			continue
		}
		return err
	}
}

// scanFound is ScanChildren of a node that may be gone: found is false,
// with no error, when it is (or goes during the scan); fn's errors come
// back as they are, told apart from the scan's own.
func scanFound(ctx context.Context, s Store, path string, fn func(names []string) error) (found bool, err error) {
	err = ScanChildren(ctx, s, path, func(names []string) error {
		if err := fn(names); err != nil {
			return fnError{err}
		}
		return nil
	})
	var fe fnError
	switch {
	case errors.As(err, &fe):
		return true, fe.err
	case errors.Is(err, ErrNoNode):
		return false, nil
	}
	return err == nil, err
}

// fnError carries an error of a ScanChildren callback out of the scan, so
// that it is told from the scan's own (ErrNoNode: the node is gone).
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// deleteInFlight is how many of DeleteAll's transactions are in flight at
// once: the servers commit concurrent ones together.
const deleteInFlight = 4

// deleteChildren deletes the children names of parent and their subtrees,
// in transactions as large as lim allows, up to inFlight at once.
func deleteChildren(ctx context.Context, s Store, lim Limits, parent string, names []string, inFlight int) error {
	ops := make([]Op, len(names))
	for i, n := range names {
		ops[i] = DeleteOp(Join(parent, n), AnyVersion)
	}
	batches, err := Batches(ops, lim)
	if err != nil {
		return err
	}
	return fanout.Each(ctx, len(batches), inFlight, func(ctx context.Context, i int) error {
		return deleteBatch(ctx, s, lim, batches[i])
	})
}

// deleteBatch deletes the nodes of ops, one transaction's worth, and their
// subtrees. A transaction refused because one of its nodes has children
// (ErrNotEmpty) or is gone already (ErrNoNode) applied nothing: that node's
// subtree is deleted on its own (or it is dropped) and the rest is sent
// again.
func deleteBatch(ctx context.Context, s Store, lim Limits, ops []Op) error {
	for len(ops) > 0 {
		_, err := s.Txn(ctx, ops...)
		if err == nil {
			return nil
		}
		var te *TxnError
		if !errors.As(err, &te) || te.Index < 0 || te.Index >= len(ops) {
			return err
		}
		switch {
		case errors.Is(te.Err, ErrNotEmpty):
			if err := deleteAll(ctx, s, ops[te.Index].Path, 1); err != nil {
				return err
			}
		case errors.Is(te.Err, ErrNoNode):
		default:
			return err
		}
		ops = append(ops[:te.Index:te.Index], ops[te.Index+1:]...)
	}
	return nil
}

// ScanChildren calls fn with the sorted names of the children of the node
// at path, in batches of at most ScanBatch, as ChildScanner.ScanChildren
// says: through s's own ScanChildren if s is a ChildScanner (etcd's store
// reads pages), else from one Children call (ZooKeeper and Consul have no
// paged listing).
func ScanChildren(ctx context.Context, s Store, path string, fn func(names []string) error) error {
	if cs, ok := s.(ChildScanner); ok {
		return cs.ScanChildren(ctx, path, fn)
	}
	kids, err := s.Children(ctx, path)
	if err != nil {
		return err
	}
	for len(kids) > 0 {
		n := min(len(kids), ScanBatch)
		if err := fn(kids[:n:n]); err != nil {
			return err
		}
		kids = kids[n:]
	}
	return nil
}

// ErrSkipChildren, returned by Walk's fn for a node, makes Walk go on without
// reading the node's children (Walk itself does not return it).
var ErrSkipChildren = errors.New("skip the children of this node")

// walkRead is how many children Walk reads in one GetMany: few enough that
// their data, up to MaxValueSize each, stays small.
const walkRead = 64

// Walk calls fn for path and every node below it, parents before children,
// children in sorted order. Nodes that vanish during the walk are skipped.
// When fn returns ErrSkipChildren for a node, its subtree is not read.
// Children are listed with ScanChildren and read with GetMany, a few dozen
// at a time.
func Walk(ctx context.Context, s Store, path string, fn func(path string, data []byte, st Stat) error) error {
	if path == "/" {
		return walk(ctx, s, path, nil, Stat{}, fn)
	}
	data, st, err := s.Get(ctx, path)
	if errors.Is(err, ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	return walk(ctx, s, path, data, st, fn)
}

// walk calls fn for the node at path, read as data and st, then walks its
// children.
func walk(ctx context.Context, s Store, path string, data []byte, st Stat, fn func(path string, data []byte, st Stat) error) error {
	if err := fn(path, data, st); errors.Is(err, ErrSkipChildren) {
		return nil
	} else if err != nil {
		return err
	}
	_, err := scanFound(ctx, s, path, func(names []string) error {
		for len(names) > 0 {
			n := min(len(names), walkRead)
			paths := make([]string, n)
			for i, k := range names[:n] {
				paths[i] = Join(path, k)
			}
			res, err := s.GetMany(ctx, paths...)
			if err != nil {
				return err
			}
			for i, r := range res {
				if r.Err != nil {
					continue // gone meanwhile: GetMany fails a result only for that
				}
				if err := walk(ctx, s, paths[i], r.Data, r.Stat, fn); err != nil {
					return err
				}
			}
			names = names[n:]
		}
		return nil
	})
	return err
}

// Batches splits ops into transactions that each fit lim, keeping their order.
// Each batch is atomic; the batches together are not. A run of sets and
// checks goes in batches of up to lim.MaxTxnSetOps, a run of deletes and
// checks in batches of up to lim.MaxTxnDeleteOps (see Limits.TxnOps).
func Batches(ops []Op, lim Limits) ([][]Op, error) {
	var out [][]Op
	var cur []Op
	size := 0
	sets, dels := true, true // cur holds only sets and checks, only deletes and checks
	for _, op := range ops {
		if lim.MaxValueSize > 0 && len(op.Data) > lim.MaxValueSize {
			return nil, Errorf(string(op.Kind), op.Path, fmt.Errorf("%w: %d bytes of data, the limit is %d", ErrTooLarge, len(op.Data), lim.MaxValueSize))
		}
		max := lim.txnOps(txnKinds(sets, dels, op))
		if len(cur) > 0 && ((max > 0 && len(cur) >= max) ||
			(lim.MaxTxnBytes > 0 && size+len(op.Data)+lim.TxnOpBytes > lim.MaxTxnBytes)) {
			out = append(out, cur)
			cur, size, sets, dels = nil, 0, true, true
		}
		cur = append(cur, op)
		size += len(op.Data) + lim.TxnOpBytes
		sets, dels = txnKinds(sets, dels, op)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out, nil
}
