package models_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/models/proxysim"
)

// TestProductNameRule: one rule on every backend, checked before anything is
// written; the longest name allowed works all the way through a confirmed
// action (the longest paths a product has).
func TestProductNameRule(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		long := strings.Repeat("p", models.MaxProductNameLen)
		for _, name := range []string{
			long + "q",               // one byte over
			strings.Repeat("x", 997), // accepted once, then failed half-way
			"prodé", "产品", "a b", "a:b", "a\u00a0b", "a\u200bb", "emoji😀",
		} {
			is(t, models.ValidateProductName(name), models.ErrInvalidProductName)
			is(t, models.InitSlotSet(ctx, s, name, 1024), models.ErrInvalidProductName)
			is(t, models.NewServerGroup(name, 1).Create(ctx, s), models.ErrInvalidProductName)
			is(t, models.NewAction(ctx, s, name, models.ACTION_TYPE_SLOT_CHANGED, 1, "", false), models.ErrInvalidProductName)
			_, err := models.NewProductLock(s, name, "test")
			is(t, err, models.ErrInvalidProductName)
		}
		if kids, err := s.Children(ctx, "/zk/codis"); err == nil {
			for _, k := range kids {
				if k != "db_"+product && !strings.HasPrefix(k, "db_"+long) && k != "db_"+long {
					t.Fatalf("a refused product name left /zk/codis/%s behind", k)
				}
			}
		} else if !errors.Is(err, coord.ErrNoNode) {
			t.Fatal(err)
		}

		// The longest name, with a proxy of the longest id, through a
		// confirmed action.
		must(t, models.InitSlotSet(ctx, s, long, models.DEFAULT_SLOT_NUM))
		g := models.NewServerGroup(long, 1)
		must(t, g.Create(ctx, s))
		must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, "127.0.0.1:6379"), ""))
		must(t, models.SetSlotRange(ctx, s, long, 0, models.DEFAULT_SLOT_NUM-1, 1, models.SLOT_STATUS_ONLINE))
		id := strings.Repeat("i", models.MaxProxyIdLen)
		p, err := proxysim.Start(ctx, open(), long, models.ProxyInfo{Id: id, Addr: "127.0.0.1:19000", Pid: os.Getpid(), StartAt: "now"}, proxysim.Options{})
		must(t, err)
		defer p.Stop()
		must(t, models.SetProxyStatus(ctx, s, long, id, models.PROXY_STATE_ONLINE))
		<-p.Ready()
		sl, err := models.GetSlot(ctx, s, long, 9)
		must(t, err)
		sl.State.LastOpTs = "1"
		must(t, sl.Update(ctx, s)) // confirmed: the proxy answered under its long id
		_, err = proxysim.Start(ctx, open(), long, models.ProxyInfo{Id: id + "i", Addr: "127.0.0.1:19001"}, proxysim.Options{})
		is(t, err, models.ErrInvalidArgument)
	})
}

// TestAddressRule: addresses are host:port with a real host and a port
// 1..65535, refused before anything is written.
func TestAddressRule(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:6379", "redis-1.example_x:1", "h:65535", "[::1]:6379", "[fe80::1]:7000"} {
		if err := models.ValidateAddr(ok); err != nil {
			t.Errorf("ValidateAddr(%q): %v", ok, err)
		}
	}
	bad := []string{"host:", ":6379", "h:abc", "h:99999", "h:0", "h:-1", "h:06379", "h", "h:1:2", "a b:1", "[zz]:1", "h/x:1", "hé:1", "h:+1", strings.Repeat("h", 254) + ":1"}
	for _, addr := range bad {
		if err := models.ValidateAddr(addr); err == nil {
			t.Errorf("ValidateAddr(%q) accepted it", addr)
		}
	}
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		g := models.NewServerGroup(product, 1)
		must(t, g.Create(ctx, s))
		for _, addr := range bad {
			is(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, addr), ""), models.ErrInvalidServer)
			_, err := models.CreateProxyInfo(ctx, s, product, &models.ProxyInfo{Id: "p1", Addr: addr})
			is(t, err, models.ErrInvalidArgument)
			_, err = models.CreateProxyFenceNode(ctx, s, product, &models.ProxyInfo{Id: "p1", Addr: addr})
			is(t, err, models.ErrInvalidArgument)
		}
		servers, err := g.GetServers(ctx, s)
		must(t, err)
		proxies, err := models.ProxyList(ctx, s, product, nil)
		must(t, err)
		fences, err := models.GetFenceProxyMap(ctx, s, product)
		must(t, err)
		if len(servers)+len(proxies)+len(fences) != 0 {
			t.Fatalf("refused addresses left servers %v, proxies %v, fences %v", servers, proxies, fences)
		}
		must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, "[::1]:6379"), ""))
	})
}

// TestSlotGroupsMustExist: a slot is never written pointing at a group that
// is not there (a proxy exits on such a slot), nor in a state no proxy can
// serve; the refusal leaves the slot as it was.
func TestSlotGroupsMustExist(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		before := raw(t, s, models.GetSlotPath(product, 5))
		sl, err := models.GetSlot(ctx, s, product, 5)
		must(t, err)
		sl.GroupId = 7
		is(t, sl.Update(ctx, s), models.ErrGroupNotFound)

		sl, _ = models.GetSlot(ctx, s, product, 5)
		sl.GroupId = models.INVALID_ID
		is(t, sl.Update(ctx, s), models.ErrInvalidGroupId) // online in no group

		sl, _ = models.GetSlot(ctx, s, product, 5)
		sl.State.Status = models.SLOT_STATUS_MIGRATE
		sl.State.MigrateStatus = models.SlotMigrateStatus{From: 1, To: 1}
		is(t, sl.Update(ctx, s), models.ErrInvalidGroupId)
		sl.State.MigrateStatus = models.SlotMigrateStatus{From: 1, To: 4}
		is(t, sl.Update(ctx, s), models.ErrGroupNotFound)
		sl.State.MigrateStatus = models.SlotMigrateStatus{From: 4, To: 1}
		is(t, sl.Update(ctx, s), models.ErrGroupNotFound)

		fresh := models.NewSlot(product, 6)
		fresh.GroupId, fresh.State.Status = 9, models.SLOT_STATUS_ONLINE
		is(t, fresh.Update(ctx, s), models.ErrGroupNotFound)
		sl, _ = models.GetSlot(ctx, s, product, 6)
		is(t, sl.SetMigrateStatus(ctx, s, 1, 3), models.ErrGroupNotFound)

		if after := raw(t, s, models.GetSlotPath(product, 5)); after != before {
			t.Fatalf("a refused update changed slot 5:\n%s\n%s", before, after)
		}
		if sl, _ := models.GetSlot(ctx, s, product, 6); sl.GroupId != 1 || sl.State.Status != models.SLOT_STATUS_ONLINE {
			t.Fatalf("a refused update changed slot 6: %+v", sl)
		}
		// A group that exists is fine, for a new slot node too.
		must(t, models.NewServerGroup(product, 2).Create(ctx, s))
		sl, _ = models.GetSlot(ctx, s, product, 5)
		must(t, sl.SetMigrateStatus(ctx, s, 1, 2))
		must(t, s.Delete(ctx, models.GetSlotPath(product, 7), coord.AnyVersion))
		fresh = models.NewSlot(product, 7)
		fresh.GroupId, fresh.State.Status = 2, models.SLOT_STATUS_ONLINE
		must(t, fresh.Update(ctx, s))
		if got, _ := models.GetSlot(ctx, s, product, 7); got.GroupId != 2 {
			t.Fatalf("slot 7 after its Update: %+v", got)
		}
	})
}

// deleteAfterList deletes a node just after a Children call lists its
// parent, as a concurrent writer may.
type deleteAfterList struct {
	coord.Store
	parent, victim string
	done           bool
}

func (d *deleteAfterList) Children(ctx context.Context, path string) ([]string, error) {
	kids, err := d.Store.Children(ctx, path)
	if err == nil && path == d.parent && !d.done {
		d.done = true
		if err := d.Store.Delete(ctx, d.victim, coord.AnyVersion); err != nil {
			return nil, err
		}
	}
	return kids, err
}

// getCounter counts the Get and GetMany calls made through it.
type getCounter struct {
	coord.Store
	gets, getManys atomic.Int32
}

func (g *getCounter) Get(ctx context.Context, path string) ([]byte, coord.Stat, error) {
	g.gets.Add(1)
	return g.Store.Get(ctx, path)
}

func (g *getCounter) GetMany(ctx context.Context, paths ...string) ([]coord.GetResult, error) {
	g.getManys.Add(1)
	return g.Store.GetMany(ctx, paths...)
}

// TestProxyListVanished: a proxy whose node goes between the listing and
// the read (a proxy that exited) is left out, not an error; the proxies
// are read with one GetMany, not a Get each.
func TestProxyListVanished(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		for i, id := range []string{"p1", "p2", "p3"} {
			_, err := models.CreateProxyInfo(ctx, s, product, &models.ProxyInfo{Id: id, Addr: fmt.Sprintf("127.0.0.1:%d", 19000+i), State: models.PROXY_STATE_OFFLINE})
			must(t, err)
		}
		c := &getCounter{Store: &deleteAfterList{Store: s, parent: models.GetProxyPath(product), victim: models.GetProxyPath(product) + "/p2"}}
		ps, err := models.ProxyList(ctx, c, product, nil)
		must(t, err)
		var ids []string
		for _, p := range ps {
			ids = append(ids, p.Id)
		}
		if strings.Join(ids, ",") != "p1,p3" {
			t.Fatalf("proxies listed with p2 gone after the listing: %v, want p1,p3", ids)
		}
		if g, m := c.gets.Load(), c.getManys.Load(); g != 0 || m != 1 {
			t.Fatalf("ProxyList of 3 proxies made %d Gets and %d GetManys, want 0 and 1", g, m)
		}
	})
}

// TestSlotTableWithHole: a slot that vanishes during a scan, a foreign slot
// node, or a slot node holding another slot, fail the scan with a typed
// error naming it; no proxy goes online on such a table.
func TestSlotTableWithHole(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		victim := models.GetSlotPath(product, 5)
		_, err := models.Slots(ctx, &deleteAfterList{Store: s, parent: models.GetSlotBasePath(product), victim: victim}, product)
		is(t, err, coord.ErrNoNode)
		if err == nil || !strings.Contains(err.Error(), victim) {
			t.Fatalf("the error does not name the slot: %v", err)
		}
		// An ephemeral slot node of another session, gone with it.
		other := open()
		_, err = other.Create(ctx, victim, []byte(raw(t, s, models.GetSlotPath(product, 4))), coord.Ephemeral)
		must(t, err)
		_, err = models.Slots(ctx, s, product)
		is(t, err, models.ErrMalformed) // slot_5 holding slot 4
		must(t, other.Close())
		p, err := proxysim.Start(ctx, open(), product, models.ProxyInfo{Id: "p1", Addr: "127.0.0.1:19000", Pid: os.Getpid(), StartAt: "now"}, proxysim.Options{})
		must(t, err)
		defer p.Stop()
		is(t, models.SetProxyStatus(ctx, s, product, "p1", models.PROXY_STATE_ONLINE), models.ErrSlotsNotReady)
		// The last slot missing, the others all there.
		four := raw(t, s, models.GetSlotPath(product, 4))
		_, err = s.Create(ctx, victim, []byte(strings.Replace(four, `"id":4,`, `"id":5,`, 1)), coord.Persistent)
		must(t, err)
		last := models.GetSlotPath(product, models.DEFAULT_SLOT_NUM-1)
		lastData := raw(t, s, last)
		must(t, s.Delete(ctx, last, coord.AnyVersion))
		is(t, models.SetProxyStatus(ctx, s, product, "p1", models.PROXY_STATE_ONLINE), models.ErrSlotsNotReady)
		_, err = s.Create(ctx, last, []byte(lastData), coord.Persistent)
		must(t, err)
		must(t, models.SetProxyStatus(ctx, s, product, "p1", models.PROXY_STATE_ONLINE)) // whole again
		// Foreign product in the slot JSON.
		bad := strings.Replace(raw(t, s, models.GetSlotPath(product, 3)), `"product_name":"`+product+`"`, `"product_name":"other"`, 1)
		_, err = s.Set(ctx, models.GetSlotPath(product, 3), []byte(bad), coord.AnyVersion)
		must(t, err)
		_, err = models.GetSlot(ctx, s, product, 3)
		is(t, err, models.ErrMalformed)
	})
}

// TestPlantedActionNames: nodes planted by name under R/ActionResponse where
// the next sequence names go do not stop actions; a stray child under
// R/actions is reported, typed and named, not skipped.
func TestPlantedActionNames(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		setupProduct(t, s)
		p := startProxy(t, open, "p1", proxysim.Options{}, true)
		resp := models.GetActionResponsePath(product)
		must(t, coord.MkdirAll(ctx, s, resp))
		kids, err := s.Children(ctx, resp)
		must(t, err)
		next := len(kids) // a lower bound of the next number on every backend
		for _, n := range []int{0, 1, next, next + 1, next + 3} {
			name := fmt.Sprintf("%010d", n)
			if _, err := s.Create(ctx, coord.Join(resp, name), nil, coord.Persistent); err != nil && !errors.Is(err, coord.ErrNodeExists) {
				t.Fatal(err)
			}
		}
		for i := 0; i < 4; i++ {
			sl, err := models.GetSlot(ctx, s, product, i)
			must(t, err)
			sl.State.LastOpTs = "2"
			must(t, sl.Update(ctx, s)) // confirmed by the proxy each time
		}
		_, err = s.Create(ctx, coord.Join(models.GetWatchActionPath(product), "abc"), []byte("{}"), coord.Persistent)
		must(t, err)
		select { // as a real proxy does
		case <-p.Done():
			is(t, p.Err(), proxysim.ErrPanicked)
		case <-ctx.Done():
			t.Fatal("the proxy did not stop on the stray action")
		}
		err = models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, 9, "", false)
		is(t, err, models.ErrMalformed)
		if !strings.Contains(err.Error(), "abc") {
			t.Fatalf("the error does not name the stray node: %v", err)
		}
	})
}

// TestLockFence: every write a models function makes under the product lock
// is fenced by it. The lock is removed (as `codis-config action remove-lock`
// does, or as an expiry during a stall would) just before the first write:
// the call fails with coord.ErrLockLost and writes nothing, whether it took
// the lock itself or was given it with WithLock.
func TestLockFence(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s, other := open(), open()
		ctx := ctxT(t)
		must(t, models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM))
		must(t, models.NewServerGroup(product, 1).Create(ctx, s))
		snapshot := func() string {
			var b strings.Builder
			for _, dir := range []string{models.GetSlotBasePath(product), models.GetServerGroupsPath(product), models.GetWatchActionPath(product)} {
				kids, err := s.Children(ctx, dir)
				must(t, err)
				for _, k := range kids {
					b.WriteString(k + "=" + raw(t, s, coord.Join(dir, k)) + "\n")
				}
			}
			return b.String()
		}
		before := snapshot()
		removeLock := func() {
			if err := models.ForceRemoveLock(ctx, other, product); err != nil {
				t.Error(err)
			}
		}
		calls := map[string]func(ctx context.Context, st coord.Store) error{
			"SetSlotRange": func(ctx context.Context, st coord.Store) error {
				return models.SetSlotRange(ctx, st, product, 0, 1023, 1, models.SLOT_STATUS_ONLINE)
			},
			"Create": func(ctx context.Context, st coord.Store) error {
				return models.NewServerGroup(product, 2).Create(ctx, st)
			},
			"AddServer": func(ctx context.Context, st coord.Store) error {
				return models.NewServerGroup(product, 1).AddServer(ctx, st, models.NewServer(models.SERVER_TYPE_MASTER, "127.0.0.1:6379"), "")
			},
			"Slot.Update": func(ctx context.Context, st coord.Store) error {
				sl := models.NewSlot(product, 3)
				sl.State.LastOpTs = "9"
				return sl.Update(ctx, st)
			},
			"NewAction": func(ctx context.Context, st coord.Store) error {
				return models.NewAction(ctx, st, product, models.ACTION_TYPE_SLOT_CHANGED, 1, "", false)
			},
		}
		for name, call := range calls {
			// The call takes the lock itself.
			w := &interfereOnTxn{Store: s, prefix: models.ProductPath(product) + "/", fn: removeLock}
			if err := call(ctx, w); !errors.Is(err, coord.ErrLockLost) {
				t.Fatalf("%s with its lock removed before its first write: %v, want ErrLockLost", name, err)
			}
			// The caller holds the lock and passes it.
			l, err := models.NewProductLock(s, product, "test")
			must(t, err)
			must(t, l.Lock(ctx))
			w = &interfereOnTxn{Store: s, prefix: models.ProductPath(product) + "/", fn: removeLock}
			if err := call(models.WithLock(ctx, l), w); !errors.Is(err, coord.ErrLockLost) {
				t.Fatalf("%s under WithLock with the lock removed before its first write: %v, want ErrLockLost", name, err)
			}
			_ = l.Unlock(ctx)
		}
		if after := snapshot(); after != before {
			t.Fatalf("writes made after the lock was lost:\n%s\n---\n%s", before, after)
		}
		// And with the lock in place they all work.
		for name, call := range calls {
			if err := call(ctx, s); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	})
}
