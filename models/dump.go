package models

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
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

// DumpFilter chooses nodes by path relative to the product root. A node it
// leaves out is left out with its subtree, which Dump does not read (so a
// dump without the action history costs nothing per action).
type DumpFilter func(rel string, ephemeral bool) bool

// ConfigOnly keeps what defines a product: slots, groups, servers, fences
// and other persistent nodes; not the nodes of sessions (proxies, locks,
// dashboard, also when a Codis 2 tool left them persistent) nor the action
// history, whose sequence numbers belong to the store that made them.
func ConfigOnly(rel string, ephemeral bool) bool {
	if ephemeral {
		return false
	}
	for _, skip := range []string{"actions", "ActionResponse", "LOCK", "dashboard"} {
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
			return coord.ErrSkipChildren
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
// the sessions that made them; so are lock nodes and R/dashboard, which
// a Codis 2 tool may have left persistent. progress, if not nil, is called
// after each transaction with the nodes written so far.
//
// The snapshot is checked before anything is written (ErrMalformed naming
// the node): a slot must hold the slot its path names, with a known status
// and groups the snapshot has; a server must hold the address and group its
// path names; slots come all 1024 or none. Slots loaded under another
// product name get that name in their data, as the product's own slots do.
// A load that fails part-way removes what it wrote.
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
	nodes, err := checkSnapshot(snap, productName)
	if err != nil {
		return errorf("Load", "", err)
	}
	var ops []coord.Op
	hasRoot := false
	for _, n := range nodes {
		data := n.data
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
	for i, b := range batches {
		if _, err := store.Txn(ctx, b...); err != nil {
			if i > 0 {
				// The product did not exist and the first batch made its
				// root: what is there now is ours to take back.
				uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				if derr := coord.DeleteAll(uctx, store, root); derr != nil {
					err = fmt.Errorf("%w (and removing the %d nodes written failed: %v; coordctl product remove %s removes them)", err, done, derr, productName)
				}
				cancel()
			}
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

// loadNode is a node of a snapshot, checked, with the data to write.
type loadNode struct {
	Path string
	data []byte
}

// checkSnapshot returns the nodes of snap that Load writes for productName,
// with slot data naming productName, or ErrMalformed naming the first node
// that is not what its path says.
func checkSnapshot(snap *Snapshot, productName string) ([]loadNode, error) {
	bad := func(rel, f string, args ...interface{}) error {
		return fmt.Errorf("%w: node %q of the snapshot: %s", ErrMalformed, rel, fmt.Sprintf(f, args...))
	}
	groups := map[int]bool{}
	for _, n := range snap.Nodes {
		parts := strings.Split(n.Path, "/")
		if !n.Ephemeral && len(parts) == 2 && parts[0] == "servers" && strings.HasPrefix(parts[1], "group_") {
			id, err := strconv.Atoi(strings.TrimPrefix(parts[1], "group_"))
			if err != nil || id < 0 || "group_"+strconv.Itoa(id) != parts[1] {
				return nil, bad(n.Path, "not a group")
			}
			groups[id] = true
		}
	}
	var out []loadNode
	slots := map[int]bool{}
	for _, n := range snap.Nodes {
		parts := strings.Split(n.Path, "/")
		if n.Ephemeral || parts[0] == "LOCK" || parts[0] == "dashboard" {
			continue
		}
		data, err := n.Bytes()
		if err != nil {
			return nil, bad(n.Path, "%v", err)
		}
		switch {
		case len(parts) == 2 && parts[0] == "slots":
			var sl Slot
			if err := json.Unmarshal(data, &sl); err != nil {
				return nil, bad(n.Path, "not a slot: %v", err)
			}
			if parts[1] != "slot_"+strconv.Itoa(sl.Id) || sl.Id < 0 || sl.Id >= DEFAULT_SLOT_NUM || slots[sl.Id] {
				return nil, bad(n.Path, "holds slot %d", sl.Id)
			}
			if !sl.State.Status.valid() {
				return nil, bad(n.Path, "%v: %q", ErrUnknownSlotStatus, sl.State.Status)
			}
			for _, g := range []int{sl.GroupId, sl.State.MigrateStatus.From, sl.State.MigrateStatus.To} {
				if g != INVALID_ID && !groups[g] {
					return nil, bad(n.Path, "slot %d names group %d, which the snapshot does not have", sl.Id, g)
				}
			}
			slots[sl.Id] = true
			if sl.ProductName != productName {
				sl.ProductName = productName
				data = mustEncode(&sl)
			}
		case len(parts) == 3 && parts[0] == "servers":
			var sv Server
			if err := json.Unmarshal(data, &sv); err != nil {
				return nil, bad(n.Path, "not a server: %v", err)
			}
			switch {
			case sv.Addr != parts[2]:
				return nil, bad(n.Path, "holds server %q", sv.Addr)
			case "group_"+strconv.Itoa(sv.GroupId) != parts[1]:
				return nil, bad(n.Path, "holds a server of group %d", sv.GroupId)
			case ValidateAddr(sv.Addr) != nil:
				return nil, bad(n.Path, "%v", ValidateAddr(sv.Addr))
			case sv.Type != SERVER_TYPE_MASTER && sv.Type != SERVER_TYPE_SLAVE && sv.Type != SERVER_TYPE_OFFLINE:
				return nil, bad(n.Path, "server type %q", sv.Type)
			}
		}
		out = append(out, loadNode{Path: n.Path, data: data})
	}
	if len(slots) != 0 && len(slots) != DEFAULT_SLOT_NUM {
		return nil, fmt.Errorf("%w: the snapshot has %d of the %d slots", ErrMalformed, len(slots), DEFAULT_SLOT_NUM)
	}
	return out, nil
}
