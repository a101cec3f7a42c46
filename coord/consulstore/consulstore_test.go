package consulstore_test

import (
	"context"
	"testing"

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
