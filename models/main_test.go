package models_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/models/proxysim"
)

func TestMain(m *testing.M) { backends.Main(m) }

const product = "test"

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func is(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want an error wrapping %v", err, want)
	}
}

func raw(t *testing.T, s coord.Store, path string) string {
	t.Helper()
	data, _, err := s.Get(ctxT(t), path)
	must(t, err)
	return string(data)
}

// startProxy runs a simulated proxy on its own store and sets it online.
func startProxy(t *testing.T, open func() coord.Store, id string, opt proxysim.Options, online bool) *proxysim.Proxy {
	t.Helper()
	ctx := ctxT(t)
	info := models.ProxyInfo{Id: id, Addr: "127.0.0.1:" + fmt.Sprint(19000+len(id)*7+int(id[len(id)-1])), DebugVarAddr: "127.0.0.1:11000", Pid: os.Getpid(), StartAt: "2026-11-25 06:00:00"}
	p, err := proxysim.Start(ctx, open(), product, info, opt)
	must(t, err)
	t.Cleanup(p.Stop)
	if online {
		must(t, models.SetProxyStatus(ctx, open(), product, id, models.PROXY_STATE_ONLINE))
		select { // as an operator waits for a proxy to come up
		case <-p.Ready():
		case <-p.Done():
			t.Fatalf("proxy %s stopped going online: %v", id, p.Err())
		case <-ctx.Done():
			t.Fatalf("proxy %s not ready: %v", id, ctx.Err())
		}
	}
	return p
}

// setupProduct makes 1024 slots, group 1 with a master, slots 0..1023 online in it.
// addGroup creates group id with master as its master (no Redis checked).
func addGroup(t *testing.T, ctx context.Context, s coord.Store, id int, master string) {
	t.Helper()
	g := models.NewServerGroup(product, id)
	must(t, g.Create(ctx, s))
	must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, master), ""))
}

func setupProduct(t *testing.T, s coord.Store) {
	t.Helper()
	ctx := ctxT(t)
	must(t, models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM))
	addGroup(t, ctx, s, 1, "127.0.0.1:6379")
	must(t, models.SetSlotRange(ctx, s, product, 0, models.DEFAULT_SLOT_NUM-1, 1, models.SLOT_STATUS_ONLINE))
}
