package zkstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/zkstore"
)

// Connect to ZooKeeper. Without a chroot the nodes are at the paths Codis 2
// uses, so Codis 2.x proxies read what this writes.
func Example() {
	ctx := context.Background()
	store, err := zkstore.New(ctx, zkstore.Config{
		Servers:        []string{"127.0.0.1:2181", "127.0.0.2:2181"},
		SessionTimeout: 10 * time.Second,
		// Chroot: "/apps",
		// Auth: []zkstore.Auth{{Scheme: "digest", Secret: "user:password"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	kids, err := store.Children(ctx, "/zk/codis")
	fmt.Println(kids, err)
	_ = coord.Persistent
}
