package models_test

import (
	"context"
	"fmt"
	"os"

	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/coord/etcdstore"
	"github.com/coordkit/coord/models"
)

// Set up a product: slots, a group with a master, all slots assigned.
func Example() {
	dir, _ := os.MkdirTemp("", "example-models-")
	defer os.RemoveAll(dir)
	srv, err := etcdembed.Start(dir, etcdembed.Options{})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := context.Background()
	store, err := etcdstore.New(ctx, srv.Config("coord"))
	if err != nil {
		panic(err)
	}
	defer store.Close()

	if err := models.InitSlotSet(ctx, store, "demo", models.DEFAULT_SLOT_NUM); err != nil {
		panic(err)
	}
	g := models.NewServerGroup("demo", 1)
	if err := g.Create(ctx, store); err != nil {
		panic(err)
	}
	if err := g.AddServer(ctx, store, models.NewServer(models.SERVER_TYPE_MASTER, "127.0.0.1:6379"), ""); err != nil {
		panic(err)
	}
	if err := models.SetSlotRange(ctx, store, "demo", 0, 1023, 1, models.SLOT_STATUS_ONLINE); err != nil {
		panic(err)
	}
	slot, _ := models.GetSlot(ctx, store, "demo", 1023)
	fmt.Println(slot.Id, slot.GroupId, slot.State.Status)
	// Output:
	// 1023 1 online
}
