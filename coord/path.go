package coord

import (
	"context"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxPathLen is the longest valid path, in bytes.
const MaxPathLen = 1024

// PathRune reports whether r may appear in a path: a printable character
// (unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the
// ASCII space) of the Basic Multilingual Plane, below U+FFF0. It is the set
// every backend stores and reads back: ZooKeeper refuses characters beyond
// the BMP and U+D800..U+F8FF, Consul's HTTP API refuses keys with
// non-printable characters (other spaces, format and private-use
// characters, unassigned code points), and etcd takes any bytes.
func PathRune(r rune) bool {
	return r < 0xfff0 && unicode.IsPrint(r)
}

// ValidatePath returns nil for a valid path and an error wrapping
// ErrInvalidPath that says what is wrong otherwise: the same rule on every
// backend (see PathRune), checked before anything is sent.
func ValidatePath(path string) error {
	bad := func(why string) error { return fmt.Errorf("%w: %s", ErrInvalidPath, why) }
	switch {
	case path == "":
		return bad("empty path")
	case path[0] != '/':
		return bad("must start with /")
	case path == "/":
		return nil
	case len(path) > MaxPathLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxPathLen))
	case path[len(path)-1] == '/':
		return bad("trailing /")
	case !utf8.ValidString(path):
		return bad("not valid UTF-8")
	}
	for _, r := range path {
		if !PathRune(r) {
			return bad(fmt.Sprintf("character %U: paths hold printable characters of Unicode's Basic Multilingual Plane only, which every backend stores", r))
		}
	}
	for _, c := range strings.Split(path[1:], "/") {
		switch c {
		case "":
			return bad("empty component")
		case ".", "..":
			return bad("relative component " + c)
		}
	}
	return nil
}

// Parent returns the parent of a valid path ("/" for "/a" and for "/").
func Parent(path string) string {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return "/"
	}
	return path[:i]
}

// Base returns the last component of a valid path ("" for "/").
func Base(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}

// Join joins a path and child names.
func Join(path string, names ...string) string {
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(path, "/"))
	for _, n := range names {
		b.WriteByte('/')
		b.WriteString(n)
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// Depth is the number of components of a valid path (0 for "/").
func Depth(path string) int {
	if path == "/" {
		return 0
	}
	return strings.Count(path, "/")
}

// SequenceName returns path with n appended as ZooKeeper formats sequence
// numbers: 10 digits, zero-padded.
func SequenceName(path string, n int64) string {
	return fmt.Sprintf("%s%010d", path, n)
}

// CheckCall is the validation every backend does before sending a call: the
// context is not done, the path is valid, the root is not written, the mode
// and version are known and the data fits limits. The error is wrapped with op
// and path.
func CheckCall(ctx context.Context, op, path string, data []byte, mode Mode, version int64, lim Limits) error {
	if err := ctx.Err(); err != nil {
		return Errorf(op, path, err)
	}
	check := path
	if op == "create" && mode&Sequential != 0 && len(path) > 1 && strings.HasSuffix(path, "/") {
		// A sequential name may have an empty prefix: "/q/" makes "/q/0000000007".
		check = path[:len(path)-1]
	}
	if err := ValidatePath(check); err != nil {
		return Errorf(op, path, err)
	}
	switch op {
	case "create", "set", "delete":
		if check == "/" {
			return Errorf(op, path, fmt.Errorf("%w: the root is not writable", ErrInvalidPath))
		}
	}
	if !mode.Valid() {
		return Errorf(op, path, fmt.Errorf("%w: mode %v", ErrInvalidArgument, mode))
	}
	if version < AnyVersion {
		return Errorf(op, path, fmt.Errorf("%w: version %d", ErrInvalidArgument, version))
	}
	if lim.MaxValueSize > 0 && len(data) > lim.MaxValueSize {
		return Errorf(op, path, fmt.Errorf("%w: %d bytes of data, the limit is %d", ErrTooLarge, len(data), lim.MaxValueSize))
	}
	return nil
}

// CheckTxn validates a transaction as CheckCall validates a call, and checks
// it against the store's limits.
func CheckTxn(ctx context.Context, ops []Op, lim Limits) error {
	if err := ctx.Err(); err != nil {
		return Errorf("txn", "", err)
	}
	if len(ops) == 0 {
		return Errorf("txn", "", fmt.Errorf("%w: no ops", ErrInvalidArgument))
	}
	if max := lim.TxnOps(ops); max > 0 && len(ops) > max {
		return Errorf("txn", "", fmt.Errorf("%w: %d ops, the limit is %d", ErrTooLarge, len(ops), max))
	}
	written := map[string]bool{}
	for i, op := range ops {
		var err error
		switch op.Kind {
		case OpCreate, OpSet, OpDelete, OpCheck:
			err = CheckCall(ctx, string(op.Kind), op.Path, op.Data, op.Mode, op.Version, lim)
			if err == nil && op.Kind == OpCheck && op.Path == "/" {
				err = fmt.Errorf("%w: the root has no version to check", ErrInvalidPath)
			}
		default:
			err = fmt.Errorf("%w: op kind %q", ErrInvalidArgument, op.Kind)
		}
		if err == nil && op.Kind != OpCheck && !(op.Kind == OpCreate && op.Mode&Sequential != 0) {
			if written[op.Path] {
				err = fmt.Errorf("%w: %s is written twice in one transaction", ErrInvalidArgument, op.Path)
			}
			written[op.Path] = true
		}
		if err != nil {
			return &TxnError{Index: i, Op: op, Err: err}
		}
	}
	if total := lim.TxnBytes(ops); lim.MaxTxnBytes > 0 && total > lim.MaxTxnBytes {
		return Errorf("txn", "", fmt.Errorf("%w: %d bytes of data and %d ops of %d bytes each, the limit is %d", ErrTooLarge, total-len(ops)*lim.TxnOpBytes, len(ops), lim.TxnOpBytes, lim.MaxTxnBytes))
	}
	return nil
}

// CheckGetMany validates the paths of a GetMany as CheckCall validates a
// Get: a done ctx or any invalid path fails the whole call.
func CheckGetMany(ctx context.Context, paths []string) error {
	first := ""
	if len(paths) > 0 {
		first = paths[0]
	}
	if err := ctx.Err(); err != nil {
		return Errorf("getmany", first, err)
	}
	for _, p := range paths {
		if err := ValidatePath(p); err != nil {
			return Errorf("getmany", p, err)
		}
	}
	return nil
}
