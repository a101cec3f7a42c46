package conformance

import (
	"context"
	"strings"
	"testing"

	"github.com/coordkit/coord/coord"
)

// CheckIsolation opens a store on each of prefixes with open (a backend's
// namespaces: key prefixes, chroots), writes the same paths through each —
// nodes named like the backend's own layout words included ("001", "seq",
// "nodes") — and checks that every store lists and reads only what it
// wrote. A backend whose namespaces may extend one another ("p" and "p/a")
// passes such prefixes to show that they never meet.
func CheckIsolation(t *testing.T, open func(prefix string) coord.Store, prefixes []string) {
	t.Helper()
	ctx := context.Background()
	paths := []string{"/001", "/a", "/nodes", "/seq"}
	stores := map[string]coord.Store{}
	for _, p := range prefixes {
		st := open(p)
		stores[p] = st
		for _, path := range paths {
			if _, err := st.Create(ctx, path, []byte(p), coord.Persistent); err != nil {
				t.Fatalf("%s: create %s: %v", p, path, err)
			}
			if _, err := st.Create(ctx, path+"/", nil, coord.Sequential); err != nil {
				t.Fatalf("%s: create %s/: %v", p, path, err)
			}
		}
	}
	want := "001,a,nodes,seq"
	for _, p := range prefixes {
		st := stores[p]
		kids, err := st.Children(ctx, "/")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(kids, ",") != want {
			t.Errorf("store on %q lists %q, want its own %s", p, kids, want)
		}
		for _, path := range paths {
			data, _, err := st.Get(ctx, path)
			if err != nil || string(data) != p {
				t.Errorf("store on %q: get %s = %q, %v; want its own data", p, path, data, err)
			}
			kids, err := st.Children(ctx, path)
			if err != nil || strings.Join(kids, ",") != "0000000000" {
				t.Errorf("store on %q: children of %s = %q, %v; want its one sequential node", p, path, kids, err)
			}
		}
	}
}
