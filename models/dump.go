package models

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/coordkit/coord/coord"
)

// Snapshot is a product's nodes, for dumping, loading and copying between
// stores.
type Snapshot struct {
	Product string         `json:"product"`
	Nodes   []SnapshotNode `json:"nodes"`
}

// SnapshotNode is one node of a Snapshot.
type SnapshotNode struct {
	Path      string `json:"path"`               // relative to the product root ("" is the root)
	Data      string `json:"data"`               // the node's data when it is UTF-8 text
	DataB64   string `json:"data_b64,omitempty"` // otherwise, base64
	Ephemeral bool   `json:"ephemeral,omitempty"`
}

// Bytes returns the node's data.
func (n SnapshotNode) Bytes() ([]byte, error) {
	if n.DataB64 != "" {
		return base64.StdEncoding.DecodeString(n.DataB64)
	}
	return []byte(n.Data), nil
}

// DumpFilter chooses nodes by path relative to the product root.
type DumpFilter func(rel string, ephemeral bool) bool

// ConfigOnly keeps what defines a product: slots, groups, servers, fences
// and other persistent nodes; not the nodes of sessions (proxies, locks,
// dashboard) nor the action history, whose sequence numbers belong to the
// store that made them.
func ConfigOnly(rel string, ephemeral bool) bool {
	if ephemeral {
		return false
	}
	for _, skip := range []string{"actions", "ActionResponse"} {
		if rel == skip || strings.HasPrefix(rel, skip+"/") {
			return false
		}
	}
	return true
}

// Dump reads the product's nodes (those keep accepts; all when nil),
// parents before children. A node that vanishes during the walk is left out.
func Dump(ctx context.Context, store coord.Store, productName string, keep DumpFilter) (*Snapshot, error) {
	if err := ValidateProductName(productName); err != nil {
		return nil, errorf("Dump", "", err)
	}
	root := ProductPath(productName)
	snap := &Snapshot{Product: productName, Nodes: []SnapshotNode{}}
	err := coord.Walk(ctx, store, root, func(p string, data []byte, st coord.Stat) error {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		if keep != nil && !keep(rel, st.Ephemeral) {
			return nil
		}
		n := SnapshotNode{Path: rel, Ephemeral: st.Ephemeral}
		if utf8.Valid(data) {
			n.Data = string(data)
		} else {
			n.DataB64 = base64.StdEncoding.EncodeToString(data)
		}
		snap.Nodes = append(snap.Nodes, n)
		return nil
	})
	if err != nil {
		return nil, errorf("Dump", root, err)
	}
	return snap, nil
}

// Load creates the snapshot's persistent nodes under the product root of
// productName (the snapshot's own product when empty), in as few
// transactions as the store allows, parents first. The product must not
// exist yet (ErrNodeExists). Ephemeral nodes are skipped: they belong to
// the sessions that made them. progress, if not nil, is called after each
// transaction with the nodes written so far.
func Load(ctx context.Context, store coord.Store, snap *Snapshot, productName string, progress func(done, total int)) error {
	if productName == "" {
		productName = snap.Product
	}
	if err := ValidateProductName(productName); err != nil {
		return errorf("Load", "", err)
	}
	root := ProductPath(productName)
	if _, ok, err := store.Exists(ctx, root); err != nil {
		return errorf("Load", root, err)
	} else if ok {
		return errorf("Load", root, fmt.Errorf("%w: the product exists; remove it first", ErrNodeExists))
	}
	if err := coord.MkdirAll(ctx, store, coord.Parent(root)); err != nil {
		return errorf("Load", root, err)
	}
	var ops []coord.Op
	hasRoot := false
	for _, n := range snap.Nodes {
		if n.Ephemeral {
			continue
		}
		data, err := n.Bytes()
		if err != nil {
			return errorf("Load", n.Path, fmt.Errorf("%w: %v", ErrMalformed, err))
		}
		p := root
		if n.Path != "" {
			p = root + "/" + n.Path
		} else {
			hasRoot = true
		}
		if err := coord.ValidatePath(p); err != nil {
			return errorf("Load", n.Path, fmt.Errorf("%w: %v", ErrMalformed, err))
		}
		ops = append(ops, coord.CreateOp(p, data, coord.Persistent))
	}
	if !hasRoot {
		ops = append([]coord.Op{coord.CreateOp(root, nil, coord.Persistent)}, ops...)
	}
	batches, err := coord.Batches(ops, store.Limits())
	if err != nil {
		return errorf("Load", root, err)
	}
	done := 0
	for _, b := range batches {
		if _, err := store.Txn(ctx, b...); err != nil {
			var te *coord.TxnError
			if errors.As(err, &te) {
				return errorf("Load", te.Op.Path, err)
			}
			return errorf("Load", root, err)
		}
		done += len(b)
		if progress != nil {
			progress(done, len(ops))
		}
	}
	return nil
}
