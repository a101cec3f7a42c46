package coord

import (
	"errors"
	"fmt"
	"testing"
)

// TestErrorsNamePackageOnce: a chain of this package's errors says "coord: "
// once, keeps every layer's op and path, and still matches its sentinel.
func TestErrorsNamePackageOnce(t *testing.T) {
	deep := &PathError{Op: "get", Path: "/a/b", Err: ErrNoNode}
	mid := fmt.Errorf("walking: %w", deep)
	for _, c := range []struct {
		err  error
		want string
	}{
		{&PathError{Op: "delete", Path: "/a", Err: deep}, "coord: delete /a: get /a/b: node does not exist"},
		{&TxnError{Index: 2, Op: Op{Kind: OpSet, Path: "/a"}, Err: deep}, "coord: txn op 2 (set /a): get /a/b: node does not exist"},
		{&PathError{Op: "delete", Path: "/a", Err: mid}, "coord: delete /a: walking: coord: get /a/b: node does not exist"},
		{&PathError{Op: "get", Path: "/a", Err: nil}, "coord: get /a: <nil>"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
		if c.want != "coord: get /a: <nil>" && !errors.Is(c.err, ErrNoNode) {
			t.Errorf("%q does not match ErrNoNode", c.err)
		}
	}
}
