package coord

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzValidatePath: any string is accepted or refused without a panic; an
// accepted path splits into parent and base that join back to it, and its
// parent is accepted too.
func FuzzValidatePath(f *testing.F) {
	for _, s := range []string{"/", "/a", "/a/b", "", "a", "/a/", "//a", "/a/./b", "/a/../b", "/\x00", "/é", "/\xff", "/" + strings.Repeat("x", 1100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidatePath(p) != nil {
			return
		}
		if p == "/" {
			return
		}
		par, base := Parent(p), Base(p)
		if ValidatePath(par) != nil {
			t.Fatalf("%q accepted, its parent %q refused", p, par)
		}
		if Join(par, base) != p {
			t.Fatalf("Join(Parent, Base) of %q = %q", p, Join(par, base))
		}
		if Depth(p) != Depth(par)+1 {
			t.Fatalf("Depth(%q) = %d, parent's %d", p, Depth(p), Depth(par))
		}
	})
}

// FuzzSortBySequence: only prefix+digits names come out, ordered by their
// number, and every such name in range does come out.
func FuzzSortBySequence(f *testing.F) {
	f.Add("lock-0000000002,lock-0000000001,x,lock-abc", "lock-")
	f.Add("0000000010,cfg,-1,00000000009", "")
	f.Add("lock-99999999999999999999", "lock-")
	f.Fuzz(func(t *testing.T, joined, prefix string) {
		names := strings.Split(joined, ",")
		out := SortBySequence(names, prefix)
		last := int64(-1)
		for _, name := range out {
			digits, ok := strings.CutPrefix(name, prefix)
			if !ok {
				t.Fatalf("%q lacks the prefix %q", name, prefix)
			}
			n, err := strconv.ParseInt(digits, 10, 64)
			if err != nil || len(digits) < 10 || n < last {
				t.Fatalf("%q out of order or not a sequence name (after %d)", name, last)
			}
			last = n
		}
		want := 0
		for _, name := range names {
			if d, ok := strings.CutPrefix(name, prefix); ok && len(d) >= 10 && strings.Trim(d, "0123456789") == "" {
				if _, err := strconv.ParseInt(d, 10, 64); err == nil {
					want++
				}
			}
		}
		if len(out) != want {
			t.Fatalf("%d names out, want %d", len(out), want)
		}
	})
}
