package consulstore_test

import (
	"context"
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/coordkit/coord/coord/consulstore"
)

// Connect to a Consul agent with an ACL token over TLS.
func Example() {
	ctx := context.Background()
	store, err := consulstore.New(ctx, consulstore.Config{
		Address: "consul.internal:8501",
		Scheme:  "https",
		Token:   "00000000-0000-0000-0000-000000000000",
		TLS:     api.TLSConfig{CAFile: "/etc/consul/ca.pem", CertFile: "/etc/consul/client.pem", KeyFile: "/etc/consul/client-key.pem"},
		Prefix:  "coord",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	kids, err := store.Children(ctx, "/")
	fmt.Println(kids, err)
}
