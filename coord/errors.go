package coord

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Backends wrap them in *PathError (or *TxnError); test them
// with errors.Is.
var (
	// ErrNoNode: the node, or the parent a create needs, does not exist.
	ErrNoNode = errors.New("node does not exist")
	// ErrNodeExists: a create found a node at the path.
	ErrNodeExists = errors.New("node already exists")
	// ErrBadVersion: the node's version is not the expected one.
	ErrBadVersion = errors.New("version conflict")
	// ErrNotEmpty: a delete found children under the node.
	ErrNotEmpty = errors.New("node has children")
	// ErrEphemeralParent: ephemeral nodes cannot have children.
	ErrEphemeralParent = errors.New("ephemeral nodes cannot have children")
	// ErrSessionExpired: the session was lost (expired, revoked or
	// invalidated by the server); its ephemeral nodes are gone.
	ErrSessionExpired = errors.New("session expired")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store closed")
	// ErrInvalidPath: the path is not valid (see the package documentation),
	// or the operation is not allowed on it (writing the root).
	ErrInvalidPath = errors.New("invalid path")
	// ErrTooLarge: a value or a transaction exceeds the store's Limits. It is
	// returned before anything is sent.
	ErrTooLarge = errors.New("request too large")
	// ErrUnavailable: the backend could not be reached or did not answer
	// (before the call's deadline, too: see InFlightErr).
	ErrUnavailable = errors.New("backend unavailable")
	// ErrOutcomeUnknown: a write was sent and its answer never came (the
	// connection died with it in flight); the server may or may not have
	// applied it. It always comes with ErrUnavailable. Create resolves this
	// itself (it finds the node it made, if it made one) and never returns
	// it; Set, Delete and Txn return it, and the caller reads to find out.
	ErrOutcomeUnknown = errors.New("outcome unknown: the write may have been applied")
	// ErrPermission: the backend refused the credentials or the ACL.
	ErrPermission = errors.New("permission denied")
	// ErrInvalidArgument: an argument other than the path is not valid (an
	// empty transaction, an unknown mode, a negative version).
	ErrInvalidArgument = errors.New("invalid argument")
)

// PathError records a failed operation on a path.
type PathError struct {
	Op   string // the operation: "create", "get", "set", "delete", ...
	Path string // the path it was applied to
	Err  error  // a sentinel error of this package, or a context error
}

func (e *PathError) Error() string {
	return fmt.Sprintf("coord: %s %s: %s", e.Op, e.Path, inner(e.Err))
}

// inner is err's message without the "coord: " that an error of this
// package nested in another starts with, so that a chain of them reads
// "coord: op path: op path: why", naming the package once.
func inner(err error) string {
	if err == nil {
		return "<nil>"
	}
	return strings.TrimPrefix(err.Error(), "coord: ")
}

// Unwrap returns the underlying error.
func (e *PathError) Unwrap() error { return e.Err }

// Errorf wraps err in a *PathError for op and path; it returns nil for a nil
// err and leaves an error that is already a *PathError for the same path
// alone. Backends use it to report failures uniformly.
func Errorf(op, path string, err error) error {
	if err == nil {
		return nil
	}
	var pe *PathError
	if errors.As(err, &pe) && pe.Path == path && pe.Op == op {
		return err
	}
	return &PathError{Op: op, Path: path, Err: err}
}

// TxnError reports the operation that made a transaction fail. Nothing of the
// transaction was applied.
type TxnError struct {
	Index int   // index of the failing op in the request
	Op    Op    // the failing op
	Err   error // why it failed: a sentinel error of this package
}

func (e *TxnError) Error() string {
	return fmt.Sprintf("coord: txn op %d (%s %s): %s", e.Index, e.Op.Kind, e.Op.Path, inner(e.Err))
}

// Unwrap returns the underlying error.
func (e *TxnError) Unwrap() error { return e.Err }

// InFlightErr is the error of a call whose context ended after it started
// and before the backend answered: ctx.Err() and, for a deadline, also
// ErrUnavailable (the backend did not answer in time, whether it was down,
// without a quorum, or slow), so that errors.Is finds both. A cancellation
// is the caller's doing and says nothing of the backend: context.Canceled
// alone. A call whose context was done before it started returns ctx.Err().
// Backends return it.
func InFlightErr(ctx context.Context) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: no answer before the deadline: %w", ErrUnavailable, err)
	}
	return err
}
