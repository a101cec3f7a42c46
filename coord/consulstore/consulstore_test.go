package consulstore_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coordkit/coord/conformance"
	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/consulstore"
	"github.com/coordkit/coord/internal/testenv"
)

func backend(addr string) conformance.Backend {
	return conformance.Backend{
		Open: func(t testing.TB, ns string) coord.Store {
			s, err := consulstore.New(context.Background(), consulstore.Config{Address: addr, Prefix: "coordtest/" + ns, SessionTTL: 10e9})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Expire: func(t testing.TB, st coord.Store) {
			s := st.(*consulstore.Store)
			sess, err := s.Session(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			// What the server does when the TTL runs out: invalidate the
			// session, which deletes the keys it holds.
			if _, err := s.Client().Session().Destroy(sess.ID(), nil); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestConformance(t *testing.T) {
	conformance.Run(t, backend(testenv.Addr(t, "consul")))
}

// TestACLToken runs against a second, ACL-enabled agent started by
// scripts/consul.sh: a wrong token is ErrPermission, the right one works.
func TestACLToken(t *testing.T) {
	testenv.Addr(t, "consul") // the binary is there when an agent is
	dir := t.TempDir()
	const token = "6f1d2a8e-1c2b-4b7a-9a55-acl0000test1"
	out, err := exec.Command("../../scripts/consul.sh", "start", dir, token).Output()
	if err != nil {
		t.Fatalf("starting an ACL agent: %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("../../scripts/consul.sh", "stop", dir).Run() })
	addr := strings.TrimSpace(string(out))
	ctx := context.Background()
	_, err = consulstore.New(ctx, consulstore.Config{Address: addr, Token: "not-the-token"})
	if !errors.Is(err, coord.ErrPermission) {
		t.Fatalf("wrong token: %v, want ErrPermission", err)
	}
	var s *consulstore.Store
	for deadline := time.Now().Add(20 * time.Second); ; {
		s, err = consulstore.New(ctx, consulstore.Config{Address: addr, Token: token})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // ACL bootstrap takes a moment after the leader
	}
	if err != nil {
		t.Fatalf("management token: %v", err)
	}
	defer s.Close()
	if _, err := s.Create(ctx, "/acl", []byte("ok"), coord.Ephemeral); err != nil {
		t.Fatal(err)
	}
	if data, _, err := s.Get(ctx, "/acl"); err != nil || string(data) != "ok" {
		t.Fatalf("%q %v", data, err)
	}
}
