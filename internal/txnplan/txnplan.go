// Package txnplan applies a coord transaction, in order, to the state a
// backend read, as ZooKeeper applies a multi-op: it decides which op fails
// and with which error, names sequential nodes and gives each op's result.
// Backends without native multi-ops (etcd, Consul) plan with it, then turn
// the steps into their own guarded transaction, so that they all agree on
// what a transaction means.
package txnplan

import (
	"fmt"

	"github.com/coordkit/coord/coord"
)

// Node is the state of a node as the transaction sees it.
type Node struct {
	Exists    bool
	Ephemeral bool
	Owner     string // the owning session's ID, for an ephemeral node
	Version   int64
	Kids      int64 // children count; needed only for nodes deleted
}

// Step is one op as planned.
type Step struct {
	Op   coord.Op
	Path string // the node the op applies to (the name made, for a sequential create)
	Seq  int64  // the sequence number of a sequential create, else -1
	// Written is true when an earlier step of the transaction wrote Path.
	Written bool
	// After is the node's state after the op.
	After Node
}

// Plan applies ops in order to the state that read gives (ok false: the path
// was not read) and to the next sequence number of each parent (next);
// ephemeral nodes it creates belong to the session owner. It
// returns one step and one result per op; or a *coord.TxnError naming the
// first op that fails; or, when the plan needs paths that were not read (the
// names of sequential nodes), those paths, to read before planning again.
func Plan(ops []coord.Op, owner string, read func(path string) (Node, bool), next func(parent string) int64) ([]Step, []coord.OpResult, []string, error) {
	state := map[string]*Node{"/": {Exists: true}}
	written := map[string]bool{}
	var missing []string
	// Children deleted under parents not read (yet): a delete needs no read
	// of its parent, unless a later op looks at the parent.
	gone := map[string]int64{}
	get := func(path string) *Node {
		if n, ok := state[path]; ok {
			return n
		}
		n, ok := read(path)
		if !ok {
			missing = append(missing, path)
		}
		n.Kids -= gone[path]
		state[path] = &n
		return &n
	}
	seq := map[string]int64{}
	var firstErr error
	fail := func(i int, err error) {
		if firstErr == nil {
			firstErr = &coord.TxnError{Index: i, Op: ops[i], Err: err}
		}
	}
	steps := make([]Step, len(ops))
	res := make([]coord.OpResult, len(ops))
	for i, op := range ops {
		if firstErr != nil {
			break
		}
		path := op.Path
		st := Step{Op: op, Path: path, Seq: -1}
		switch op.Kind {
		case coord.OpCreate:
			par := coord.Parent(path)
			pn := get(par)
			if !pn.Exists {
				fail(i, fmt.Errorf("%w: parent %s", coord.ErrNoNode, par))
				continue
			}
			if pn.Ephemeral {
				fail(i, fmt.Errorf("%w: parent %s", coord.ErrEphemeralParent, par))
				continue
			}
			if op.Mode&coord.Sequential != 0 {
				n, ok := seq[par]
				if !ok {
					n = next(par)
				}
				// A name already taken (a plain node someone created with
				// that name) is skipped, as ZooKeeper's counter would have
				// moved past it: sequential names never collide.
				for get(coord.SequenceName(op.Path, n)).Exists {
					n++
				}
				seq[par] = n + 1
				st.Seq, path = n, coord.SequenceName(op.Path, n)
				st.Path = path
			}
			n := get(path)
			if n.Exists {
				fail(i, coord.ErrNodeExists)
				continue
			}
			*n = Node{Exists: true, Ephemeral: op.Mode&coord.Ephemeral != 0}
			if n.Ephemeral {
				n.Owner = owner
			}
			pn.Kids++
			res[i] = coord.OpResult{Path: path, Stat: n.stat()}
		case coord.OpSet, coord.OpCheck, coord.OpDelete:
			n := get(path)
			if !n.Exists {
				fail(i, coord.ErrNoNode)
				continue
			}
			if op.Version != coord.AnyVersion && op.Version != n.Version {
				fail(i, fmt.Errorf("%w: expected %d, is %d", coord.ErrBadVersion, op.Version, n.Version))
				continue
			}
			switch op.Kind {
			case coord.OpSet:
				n.Version++
			case coord.OpDelete:
				if n.Kids > 0 {
					fail(i, coord.ErrNotEmpty)
					continue
				}
				*n = Node{}
				if pn, ok := state[coord.Parent(path)]; ok {
					pn.Kids--
				} else {
					gone[coord.Parent(path)]++
				}
			}
			res[i] = coord.OpResult{Path: path, Stat: n.stat()}
		}
		st.Written = written[path]
		st.After = *state[path]
		if op.Kind != coord.OpCheck {
			written[path] = true
		}
		steps[i] = st
	}
	if len(missing) > 0 {
		// Decisions taken on paths not read are not decisions: read them.
		return nil, nil, missing, nil
	}
	if firstErr != nil {
		return nil, nil, nil, firstErr
	}
	return steps, res, nil, nil
}

func (n *Node) stat() coord.Stat {
	return coord.Stat{Version: n.Version, Ephemeral: n.Ephemeral, Owner: n.Owner}
}

// Counters returns, for each parent under which the steps made sequential
// nodes, the next sequence number after them.
func Counters(steps []Step) map[string]int64 {
	out := map[string]int64{}
	for _, st := range steps {
		if st.Seq >= 0 {
			par := coord.Parent(st.Op.Path)
			if st.Seq+1 > out[par] {
				out[par] = st.Seq + 1
			}
		}
	}
	return out
}
