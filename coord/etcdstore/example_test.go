package etcdstore_test

import (
	"context"
	"fmt"
	"os"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/coord/etcdstore"
)

// Start an etcd server inside the process and use it as a coord.Store.
func Example() {
	dir, _ := os.MkdirTemp("", "example-etcd-")
	defer os.RemoveAll(dir)
	srv, err := etcdembed.Start(dir, etcdembed.Options{})
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	ctx := context.Background()
	// For an external cluster: etcdstore.Config{Endpoints: []string{"http://10.0.0.1:2379"}}.
	var store coord.Store
	store, err = etcdstore.New(ctx, srv.Config("coord"))
	if err != nil {
		panic(err)
	}
	defer store.Close()

	if _, err := coord.CreateAll(ctx, store, "/zk/codis/db_demo/slots/slot_0", []byte(`{"id":0}`), coord.Persistent); err != nil {
		panic(err)
	}
	seq, _ := store.Create(ctx, "/zk/codis/db_demo/", nil, coord.Sequential)
	data, stat, _ := store.Get(ctx, "/zk/codis/db_demo/slots/slot_0")
	fmt.Println(string(data), stat.Version)
	fmt.Println(seq)
	// Output:
	// {"id":0} 0
	// /zk/codis/db_demo/0000000000
}
