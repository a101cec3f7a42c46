package models

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/coordkit/coord/coord"
)

// FuzzNames: the product-name and address rules never panic, and whatever
// they accept makes valid store paths.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"shop", "a/b", "", "..", "产品", strings.Repeat("p", 129), "127.0.0.1:6379", "[::1]:1", "h:", ":1", "h:99999", "h:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateProductName(s) == nil {
			for _, p := range []string{ProductPath(s), GetSlotPath(s, 1023), GetProxyFencePath(s), GetLockPath(s)} {
				if err := coord.ValidatePath(p); err != nil {
					t.Fatalf("product %q accepted, path %q refused: %v", s, p, err)
				}
			}
		}
		if ValidateAddr(s) == nil {
			if err := coord.ValidatePath(coord.Join(GetProxyFencePath("p"), s)); err != nil {
				t.Fatalf("address %q accepted, its fence path refused: %v", s, err)
			}
		}
		_ = IsLeafNode(s)
	})
}

// FuzzDecodeSlot: data found at a slot's path decodes to that slot of that
// product, or fails with ErrMalformed; never a panic, never another slot.
func FuzzDecodeSlot(f *testing.F) {
	f.Add([]byte(`{"product_name":"p","id":7,"group_id":-1,"state":{"status":"offline","migrate_status":{"from":-1,"to":-1},"last_op_ts":"0"}}`))
	f.Add([]byte(`{"product_name":"q","id":7}`))
	f.Add([]byte(`{"id":7,"state":{"status":"up"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := GetSlotPath("p", 7)
		s, err := decodeSlot(p, data, 0)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if s.Id != 7 || s.ProductName != "p" || !s.State.Status.valid() {
			t.Fatalf("accepted %+v at %s", s, p)
		}
	})
}

// FuzzSnapshot: a dump file of any content is checked without a panic; what
// the check accepts has every slot naming the target product.
func FuzzSnapshot(f *testing.F) {
	f.Add([]byte(`{"product":"p","nodes":[{"path":""},{"path":"servers/group_1"},{"path":"servers/group_1/h:1","data":"{\"type\":\"master\",\"group_id\":1,\"addr\":\"h:1\"}"}]}`))
	f.Add([]byte(`{"product":"p","nodes":[{"path":"slots/slot_0","data":"{\"id\":0}"}]}`))
	f.Add([]byte(`{"product":"p","nodes":[{"path":"x","data_b64":"!!"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var snap Snapshot
		if json.Unmarshal(data, &snap) != nil {
			return
		}
		nodes, err := checkSnapshot(&snap, "target")
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		for _, n := range nodes {
			if strings.HasPrefix(n.Path, "slots/") && strings.Count(n.Path, "/") == 1 {
				var s Slot
				if err := json.Unmarshal(n.data, &s); err != nil || s.ProductName != "target" {
					t.Fatalf("accepted slot %s: %s (%v)", n.Path, n.data, err)
				}
			}
			if strings.HasPrefix(n.Path, "LOCK") || n.Path == "dashboard" {
				t.Fatalf("a %s node would be loaded", n.Path)
			}
		}
	})
}

// FuzzExtraSeqList: names are numbers or the whole list is ErrMalformed.
func FuzzExtraSeqList(f *testing.F) {
	f.Add("0000000001,0000000000")
	f.Add("abc,1")
	f.Add("-1")
	f.Fuzz(func(t *testing.T, joined string) {
		seqs, err := ExtraSeqList(strings.Split(joined, ","))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
			return
		}
		for i := 1; i < len(seqs); i++ {
			if seqs[i] < seqs[i-1] || seqs[i] < 0 {
				t.Fatalf("not sorted or negative: %v", seqs)
			}
		}
	})
}
