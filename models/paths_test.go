package models_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/models"
)

func TestPaths(t *testing.T) {
	for got, want := range map[string]string{
		models.GetSlotBasePath("p"):       "/zk/codis/db_p/slots",
		models.GetSlotPath("p", 7):        "/zk/codis/db_p/slots/slot_7",
		models.GetSlotPath("p", 1023):     "/zk/codis/db_p/slots/slot_1023",
		models.GetProxyPath("p"):          "/zk/codis/db_p/proxy",
		models.GetProxyFencePath("p"):     "/zk/codis/db_p/fence",
		models.GetWatchActionPath("p"):    "/zk/codis/db_p/actions",
		models.GetActionResponsePath("p"): "/zk/codis/db_p/ActionResponse",
		models.GetGroupPath("p", 3):       "/zk/codis/db_p/servers/group_3",
		models.GetLockPath("p"):           "/zk/codis/db_p/LOCK",
		models.GetDashboardPath("p"):      "/zk/codis/db_p/dashboard",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	g := models.NewServerGroup("p", 2)
	g.Servers = []*models.Server{{Type: models.SERVER_TYPE_MASTER, GroupId: 2, Addr: "h:1"}}
	var back models.ServerGroup
	if err := json.Unmarshal([]byte(g.String()), &back); err != nil || back.Id != 2 || back.Servers[0].Addr != "h:1" {
		t.Fatalf("String() is not the group's JSON: %q", g.String())
	}
	if compact, _ := json.Marshal(g); string(compact) != `{"id":2,"product_name":"p","servers":[{"type":"master","group_id":2,"addr":"h:1"}]}` {
		t.Fatalf("ServerGroup JSON inside actions: %s", compact)
	}
	if s := models.NewServer(models.SERVER_TYPE_SLAVE, "h:2").String(); s != "{\n  \"type\": \"slave\",\n  \"group_id\": -1,\n  \"addr\": \"h:2\"\n}" {
		t.Fatalf("Server.String (Codis 2 indents it): %s", s)
	}
	if s := models.NewSlot("p", 7).String(); !strings.HasPrefix(s, "{\n  \"product_name\": \"p\",\n  \"id\": 7,") {
		t.Fatalf("Slot.String (Codis 2 indents it): %s", s)
	}
}

// WaitForReceiverWithTimeout on its own, with the test playing the proxies
// (their answers are R/ActionResponse/<seq>/<proxy id>).
func TestWaitForReceiver(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		dir := models.GetActionResponsePath(product) + "/0000000009"
		must(t, models.CreateActionRootPath(ctx, s, dir))
		must(t, models.CreateActionRootPath(ctx, s, dir)) // exists: fine
		proxies := []models.ProxyInfo{{Id: "p1"}, {Id: "p2"}}
		done := make(chan error, 1)
		go func() { done <- models.WaitForReceiverWithTimeout(ctx, s, product, dir, proxies, 10000) }()
		for _, id := range []string{"p1", "p2"} {
			select {
			case err := <-done:
				t.Fatalf("returned %v before %s answered", err, id)
			case <-time.After(100 * time.Millisecond):
			}
			_, err := s.Create(ctx, dir+"/"+id, []byte(`{}`), coord.Persistent)
			must(t, err)
		}
		select {
		case err := <-done:
			must(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("did not return after every receiver answered")
		}
		must(t, models.WaitForReceiverWithTimeout(ctx, s, product, dir, nil, 1)) // no receivers: nothing to wait for
		// Silent receivers without a proxy node: timeout, named.
		err := models.WaitForReceiverWithTimeout(ctx, s, product, dir, []models.ProxyInfo{{Id: "p1"}, {Id: "ghost"}}, 200)
		is(t, err, models.ErrReceiverTimeout)
		if !strings.Contains(err.Error(), "ghost") || strings.Contains(err.Error(), "p1") {
			t.Fatalf("timeout error: %v", err)
		}
		is(t, models.WaitForReceiverWithTimeout(ctx, s, product, dir+"/missing", proxies, 200), coord.ErrNoNode)
	})
}
