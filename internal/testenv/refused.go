package testenv

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
)

// WritesRefused checks that every kind of write s makes (a create, an
// ephemeral create, a set and a delete of node, a Txn) fails with
// coord.ErrPermission, promptly (not after retries), and that s still reads
// node: a store whose credentials allow reads only. check, another store
// with every right, then sees node unchanged and nothing created.
func WritesRefused(t *testing.T, ctx context.Context, s, check coord.Store, node string) {
	t.Helper()
	before, _, err := check.Get(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	if data, _, err := s.Get(ctx, node); err != nil || string(data) != string(before) {
		t.Fatalf("the read-only store reads %q, %v", data, err)
	}
	for name, write := range map[string]func() error{
		"create":    func() error { _, err := s.Create(ctx, node+"-created", nil, coord.Persistent); return err },
		"ephemeral": func() error { _, err := s.Create(ctx, node+"-ephemeral", nil, coord.Ephemeral); return err },
		"set":       func() error { _, err := s.Set(ctx, node, []byte("written"), coord.AnyVersion); return err },
		"delete":    func() error { return s.Delete(ctx, node, coord.AnyVersion) },
		"txn": func() error {
			_, err := s.Txn(ctx, coord.SetOp(node, []byte("written"), coord.AnyVersion))
			return err
		},
	} {
		start := time.Now()
		if err := write(); !errors.Is(err, coord.ErrPermission) {
			t.Errorf("the read-only store's %s: %v, want ErrPermission", name, err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("the read-only store's %s was refused only after %v (retried?)", name, d)
		}
	}
	if data, _, err := check.Get(ctx, node); err != nil || string(data) != string(before) {
		t.Fatalf("after the refused writes: %q, %v", data, err)
	}
	for _, p := range []string{node + "-created", node + "-ephemeral"} {
		if _, ok, err := check.Exists(ctx, p); err != nil || ok {
			t.Fatalf("%s after the refused create: %v, %v", p, ok, err)
		}
	}
}
