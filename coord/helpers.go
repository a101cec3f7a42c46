package coord

import (
	"context"
	"errors"
	"fmt"
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
func DeleteAll(ctx context.Context, s Store, path string) error {
	if err := ValidatePath(path); err != nil {
		return Errorf("delete", path, err)
	}
	for attempt := 0; ; attempt++ {
		kids, err := s.Children(ctx, path)
		if errors.Is(err, ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, k := range kids {
			if err := DeleteAll(ctx, s, Join(path, k)); err != nil {
				return err
			}
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

// ErrSkipChildren, returned by Walk's fn for a node, makes Walk go on without
// reading the node's children (Walk itself does not return it).
var ErrSkipChildren = errors.New("skip the children of this node")

// Walk calls fn for path and every node below it, parents before children,
// children in sorted order. Nodes that vanish during the walk are skipped.
// When fn returns ErrSkipChildren for a node, its subtree is not read.
func Walk(ctx context.Context, s Store, path string, fn func(path string, data []byte, st Stat) error) error {
	var data []byte
	var st Stat
	if path != "/" {
		var err error
		data, st, err = s.Get(ctx, path)
		if errors.Is(err, ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	if err := fn(path, data, st); errors.Is(err, ErrSkipChildren) {
		return nil
	} else if err != nil {
		return err
	}
	kids, err := s.Children(ctx, path)
	if errors.Is(err, ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, k := range kids {
		if err := Walk(ctx, s, Join(path, k), fn); err != nil {
			return err
		}
	}
	return nil
}

// Batches splits ops into transactions that each fit lim, keeping their order.
// Each batch is atomic; the batches together are not. A run of sets and
// checks goes in batches of up to lim.MaxTxnSetOps.
func Batches(ops []Op, lim Limits) ([][]Op, error) {
	var out [][]Op
	var cur []Op
	size := 0
	setsOnly := true // cur holds only sets and checks
	for _, op := range ops {
		if lim.MaxValueSize > 0 && len(op.Data) > lim.MaxValueSize {
			return nil, Errorf(string(op.Kind), op.Path, fmt.Errorf("%w: %d bytes of data, the limit is %d", ErrTooLarge, len(op.Data), lim.MaxValueSize))
		}
		set := op.Kind == OpSet || op.Kind == OpCheck
		max := lim.MaxTxnOps
		if setsOnly && set && lim.MaxTxnSetOps > max && max > 0 {
			max = lim.MaxTxnSetOps
		}
		if len(cur) > 0 && ((max > 0 && len(cur) >= max) ||
			(lim.MaxTxnBytes > 0 && size+len(op.Data)+lim.TxnOpBytes > lim.MaxTxnBytes)) {
			out = append(out, cur)
			cur, size, setsOnly = nil, 0, true
		}
		cur = append(cur, op)
		size += len(op.Data) + lim.TxnOpBytes
		setsOnly = setsOnly && set
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out, nil
}
