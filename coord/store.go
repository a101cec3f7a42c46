package coord

import (
	"context"
	"fmt"
)

// Mode says how a node is created.
type Mode int

// Creation modes. Ephemeral and Sequential combine.
const (
	// Persistent nodes stay until deleted.
	Persistent Mode = 0
	// Ephemeral nodes belong to the store's current Session and are removed
	// when it ends (Close, expiry). They cannot have children.
	Ephemeral Mode = 1 << 0
	// Sequential nodes get the given path plus a 10-digit, zero-padded number
	// that is unique and strictly increasing among the children of the parent,
	// as ZooKeeper names them ("/q/item-0000000042"). The prefix may be
	// empty: "/q/" makes "/q/0000000042". A name already taken by a node
	// created by name is skipped, never reported as ErrNodeExists.
	Sequential Mode = 1 << 1
	// EphemeralSequential is Ephemeral|Sequential.
	EphemeralSequential = Ephemeral | Sequential
)

// Valid reports whether m is one of the four defined modes.
func (m Mode) Valid() bool { return m >= 0 && m <= EphemeralSequential }

func (m Mode) String() string {
	switch m {
	case Persistent:
		return "persistent"
	case Ephemeral:
		return "ephemeral"
	case Sequential:
		return "sequential"
	case EphemeralSequential:
		return "ephemeral-sequential"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// AnyVersion, given as the expected version, matches every version.
const AnyVersion int64 = -1

// Stat is the metadata of a node.
type Stat struct {
	// Version counts the changes to the node's data since it was created:
	// 0 at creation, one more after each Set.
	Version int64
	// Ephemeral is true for a node owned by a session.
	Ephemeral bool
	// Owner is the ID of the session that owns an ephemeral node (as its
	// Session.ID() says), "" for a persistent node. Where a backend cannot
	// tell (ZooKeeper's results of CheckOp and DeleteOp) it is "".
	Owner string
	// Created orders creations within one backend: a node made after
	// another was made (and after any change this client has seen) has a
	// larger Created, and a node deleted and made again gets a new one
	// (ZooKeeper's czxid, etcd's create revision, Consul's CreateIndex).
	// Get, Exists and WatchData events set it; Set and Txn results leave it
	// 0.
	Created int64
}

// Limits are the largest requests a store accepts. Larger ones fail with
// ErrTooLarge before anything is sent.
type Limits struct {
	MaxValueSize int // bytes of data in one node
	MaxTxnOps    int // operations of any kind in one Txn
	// MaxTxnSetOps is the operations in one Txn that only sets and checks
	// (SetOp and CheckOp, the bulk updates of existing nodes): each of those
	// costs the server one op, where a create or delete can cost several, so
	// this may be above MaxTxnOps. Below it (0 included), MaxTxnOps holds.
	MaxTxnSetOps int
	// MaxTxnDeleteOps is the operations in one Txn that only deletes and
	// checks (DeleteOp and CheckOp, the bulk removal of nodes), where a
	// delete costs the server fewer ops than a create: this may be above
	// MaxTxnOps. Below it (0 included), MaxTxnOps holds.
	MaxTxnDeleteOps int
	// MaxTxnBytes bounds a Txn's data plus TxnOpBytes for each of its ops.
	MaxTxnBytes int
	// TxnOpBytes is the room each op of a Txn takes in the request beside
	// its data (its encoding and a path of ordinary length), so that a Txn
	// within MaxTxnBytes fits the server's request limit however many ops it
	// has. Paths near MaxPathLen in a large Txn can still exceed it: such a
	// Txn fails with ErrTooLarge before it is sent.
	TxnOpBytes int
}

// TxnBytes is what a Txn of ops counts against MaxTxnBytes.
func (l Limits) TxnBytes(ops []Op) int {
	n := 0
	for _, op := range ops {
		n += len(op.Data) + l.TxnOpBytes
	}
	return n
}

// TxnOps is the most ops a Txn of ops' kinds may hold: MaxTxnSetOps when
// every op is a SetOp or CheckOp, MaxTxnDeleteOps when every op is a
// DeleteOp or CheckOp (the larger of the two for checks only), where that
// is larger than MaxTxnOps; else MaxTxnOps (0: no limit).
func (l Limits) TxnOps(ops []Op) int {
	sets, dels := true, true
	for _, op := range ops {
		sets, dels = txnKinds(sets, dels, op)
	}
	return l.txnOps(sets, dels)
}

// txnKinds folds op into whether a Txn holds only sets and checks, and only
// deletes and checks.
func txnKinds(sets, dels bool, op Op) (bool, bool) {
	switch op.Kind {
	case OpCheck:
		return sets, dels
	case OpSet:
		return sets, false
	case OpDelete:
		return false, dels
	}
	return false, false
}

// txnOps is TxnOps for a Txn of only sets and checks (sets), of only
// deletes and checks (dels), or neither.
func (l Limits) txnOps(sets, dels bool) int {
	n := l.MaxTxnOps
	if n <= 0 {
		return n
	}
	if sets {
		n = max(n, l.MaxTxnSetOps)
	}
	if dels {
		n = max(n, l.MaxTxnDeleteOps)
	}
	return n
}

// Store is a hierarchical coordination store. Implementations are safe for
// concurrent use. Every method honours its context: a call whose context is
// already done returns its error (wrapped) without sending anything; one
// whose context ends before the backend answers returns InFlightErr (for a
// deadline, context.DeadlineExceeded and ErrUnavailable); a write whose
// context ends while it is in flight may or may not have been applied.
type Store interface {
	// Create makes a node at path holding data, and returns its path (with
	// the sequence number appended for Sequential modes). The parent must
	// exist (ErrNoNode) and not be ephemeral (ErrEphemeralParent); a node at
	// the path is ErrNodeExists. See CreateAll to make missing parents.
	Create(ctx context.Context, path string, data []byte, mode Mode) (string, error)
	// Get returns the data and Stat of the node at path.
	Get(ctx context.Context, path string) ([]byte, Stat, error)
	// GetMany reads the nodes at paths as Get reads each one, in as few
	// requests as the backend allows, and returns one result per path, in
	// order (a path given twice is read twice). A missing node fails only
	// its own result (Err wraps ErrNoNode); any other failure (an invalid
	// path, a closed or unavailable store, ctx) fails the call and returns
	// no results. Every result reflects at least the writes acknowledged
	// before GetMany was called, as Get does; the results need not be one
	// snapshot (etcd's are: one revision), so to act on several nodes at
	// once, check their versions in a Txn.
	GetMany(ctx context.Context, paths ...string) ([]GetResult, error)
	// Set replaces the node's data if its version is version (or version is
	// AnyVersion), and returns the new Stat.
	Set(ctx context.Context, path string, data []byte, version int64) (Stat, error)
	// Delete removes the node if its version is version (or AnyVersion) and
	// it has no children (ErrNotEmpty). See DeleteAll.
	Delete(ctx context.Context, path string, version int64) error
	// Exists reports whether the node exists, with its Stat if it does.
	Exists(ctx context.Context, path string) (Stat, bool, error)
	// Children returns the names (not paths) of the node's children, sorted.
	Children(ctx context.Context, path string) ([]string, error)

	// WatchData watches the node at path, which need not exist. The first
	// event is the state when the watch was armed, read atomically with the
	// arming; then an event follows every change, intermediate states may be
	// coalesced but the last state is always delivered. The channel is closed
	// when ctx ends, or after an event with Err set (ErrClosed, ...).
	WatchData(ctx context.Context, path string) (<-chan Event, error)
	// WatchChildren watches the children of the node at path, which must
	// exist (ErrNoNode). Events carry the sorted children, with the same
	// delivery rules as WatchData. If the node is deleted, a last event has
	// Exists false and Err wrapping ErrNoNode.
	WatchChildren(ctx context.Context, path string) (<-chan Event, error)

	// Txn applies ops atomically and in order: all of them or none. On
	// failure the error is a *TxnError naming the first op that failed. The
	// results hold one entry per op. A path may be written (created, set or
	// deleted) once per transaction, and checked any number of times.
	Txn(ctx context.Context, ops ...Op) ([]OpResult, error)

	// Session returns the session that owns the ephemeral nodes created now,
	// establishing one if there is none (or the last one was lost).
	Session(ctx context.Context) (Session, error)
	// Limits returns the largest requests this store accepts.
	Limits() Limits
	// Close ends the session (removing its ephemeral nodes), stops every
	// watch and releases the connection. Later calls fail with ErrClosed.
	Close() error
}

// ChildScanner is a Store that lists a node's children in pages, so that a
// node with very many children is read without all of their names in one
// reply. etcd's store is one; ZooKeeper's and Consul's are not (their
// servers have no paged listing). Use ScanChildren, which falls back to
// Children for a Store that is not.
type ChildScanner interface {
	// ScanChildren calls fn with the names of the node's children, sorted
	// and in batches of at most ScanBatch, each name once. A missing node is
	// ErrNoNode (fn is not called); a node without children calls fn never.
	// Children that exist all through the scan are each passed once; those
	// created or deleted during it may or may not be (etcd's pages are read
	// at one revision, so they are one snapshot unless it is compacted
	// meanwhile). fn's error ends the scan and is returned as it is. fn must
	// not modify names; it may keep them.
	ScanChildren(ctx context.Context, path string, fn func(names []string) error) error
}

// ScanBatch is the most names ScanChildren passes to fn at once.
const ScanBatch = 1000

// GetResult is the outcome of reading one node in GetMany: its data and
// Stat, or Err (wrapping ErrNoNode, in a *PathError naming the path) when
// the node does not exist.
type GetResult struct {
	Data []byte
	Stat Stat
	Err  error
}

// Session owns ephemeral nodes. It ends when the store is closed or the
// server expires it; a new session is then made for later ephemeral nodes.
type Session interface {
	// ID identifies the session on its backend (ZooKeeper session id, etcd
	// lease id, Consul session id).
	ID() string
	// Done is closed when the session has ended.
	Done() <-chan struct{}
	// Err is nil while the session lives, then ErrSessionExpired or ErrClosed.
	Err() error
	// Suspended reports whether the session is in danger now, and returns a
	// channel closed at the next change of that answer. It is in danger when
	// the client has not been able to confirm it with the server for half of
	// its timeout (the connection is down or stalled): unless contact comes
	// back, Done closes soon, before the server can expire the session. An
	// owner may stop starting work that needs what the session holds while
	// it is suspended. Once Done is closed the answer no longer matters.
	Suspended() (bool, <-chan struct{})
}

// Event is one state of a watched node.
type Event struct {
	Path     string
	Exists   bool     // whether the node exists
	Data     []byte   // WatchData: the node's data
	Stat     Stat     // the node's Stat (WatchData, and WatchChildren where known)
	Children []string // WatchChildren: sorted child names
	// Err, when set, ends the watch: this is the last event.
	Err error
}

// OpKind names a transaction operation.
type OpKind string

// Transaction operation kinds.
const (
	OpCreate OpKind = "create"
	OpSet    OpKind = "set"
	OpDelete OpKind = "delete"
	OpCheck  OpKind = "check"
)

// Op is one operation of a transaction; build it with CreateOp, SetOp,
// DeleteOp or CheckOp.
type Op struct {
	Kind    OpKind
	Path    string
	Data    []byte
	Mode    Mode
	Version int64
}

// CreateOp creates a node, as Store.Create.
func CreateOp(path string, data []byte, mode Mode) Op {
	return Op{Kind: OpCreate, Path: path, Data: data, Mode: mode}
}

// SetOp sets a node's data, as Store.Set.
func SetOp(path string, data []byte, version int64) Op {
	return Op{Kind: OpSet, Path: path, Data: data, Version: version}
}

// DeleteOp deletes a node, as Store.Delete.
func DeleteOp(path string, version int64) Op {
	return Op{Kind: OpDelete, Path: path, Version: version}
}

// CheckOp requires the node to exist with the version (or AnyVersion).
func CheckOp(path string, version int64) Op {
	return Op{Kind: OpCheck, Path: path, Version: version}
}

// OpResult is the outcome of one applied op.
type OpResult struct {
	Path string // the node's path (for a sequential create, the name made)
	Stat Stat   // the node's Stat after the op (zero for delete)
}
