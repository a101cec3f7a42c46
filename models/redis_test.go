package models_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/internal/redisc"
	"github.com/coordkit/coord/internal/testenv"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/models/proxysim"
)

const redisPass = "s3cret-pw-42"

func role(t *testing.T, addr string) map[string]string {
	t.Helper()
	info, err := redisc.Info(addr, redisPass, "replication", 5*time.Second)
	must(t, err)
	return info
}

// waitRole waits until the server reports the role (and master port).
func waitRole(t *testing.T, addr, want, masterPort string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info := role(t, addr)
		if info["role"] == want && (masterPort == "" || info["master_port"] == masterPort) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: role %q master_port %q, want %q %q", addr, info["role"], info["master_port"], want, masterPort)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

func TestGroupsWithRedis(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		a, b, c := testenv.RedisServer(t, redisPass), testenv.RedisServer(t, redisPass), testenv.RedisServer(t, redisPass)
		s := open()
		ctx := ctxT(t)
		must(t, models.InitSlotSet(ctx, s, product, 1024))
		g := models.NewServerGroup(product, 1)
		must(t, g.Create(ctx, s))
		// The first server of an empty group is its master whatever its type.
		must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_SLAVE, a), redisPass))
		// A slave is pointed at the master (SLAVEOF, authenticated).
		must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_SLAVE, b), redisPass))
		must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_SLAVE, c), redisPass))
		waitRole(t, b, "slave", port(a))
		waitRole(t, c, "slave", port(a))
		is(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, b), redisPass), models.ErrNodeExists)
		is(t, g.RemoveServer(ctx, s, a), models.ErrRemoveMaster)
		// A wrong password fails, and is never shown.
		d := testenv.RedisServer(t, redisPass)
		err := g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_SLAVE, d), "wrong-pw-77")
		is(t, err, models.ErrRedis)
		if strings.Contains(err.Error(), "wrong-pw-77") || strings.Contains(err.Error(), redisPass) {
			t.Fatalf("the error shows a password: %v", err)
		}
		if servers, _ := g.GetServers(ctx, s); len(servers) != 3 {
			t.Fatalf("a server refused by Redis was recorded: %v", servers)
		}
		must(t, models.SetSlotRange(ctx, s, product, 0, 1023, 1, models.SLOT_STATUS_ONLINE))
		proxy := startProxy(t, open, "proxy_1", proxysim.Options{}, true)
		// Promote b: SLAVEOF NO ONE, a offline, b master, confirmed.
		g, err = models.GetGroup(ctx, s, product, 1)
		must(t, err)
		handled := len(proxy.Handled())
		must(t, g.Promote(ctx, s, b, redisPass))
		waitRole(t, b, "master", "")
		if len(proxy.Handled()) != handled+1 {
			t.Fatal("the proxy did not confirm the promotion")
		}
		m, err := g.Master(ctx, s)
		must(t, err)
		if m == nil || m.Addr != b {
			t.Fatalf("master after promote: %v", m)
		}
		servers, err := g.GetServers(ctx, s)
		must(t, err)
		types := map[string]string{}
		for _, sv := range servers {
			types[sv.Addr] = sv.Type
		}
		if types[a] != models.SERVER_TYPE_OFFLINE || types[c] != models.SERVER_TYPE_SLAVE {
			t.Fatalf("after promote: %v", types)
		}
		// c still follows a, as in Codis 2, until RepointSlaves.
		waitRole(t, c, "slave", port(a))
		must(t, g.RepointSlaves(ctx, s, redisPass))
		waitRole(t, c, "slave", port(b))
		must(t, g.RemoveServer(ctx, s, a))
		is(t, g.Promote(ctx, s, "127.0.0.1:1", redisPass), models.ErrServerNotFound)
		// A group nothing uses can go.
		g2 := models.NewServerGroup(product, 2)
		must(t, g2.Create(ctx, s))
		must(t, g2.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, d), redisPass))
		must(t, g2.Remove(ctx, s))
		if ok, _ := g2.Exists(ctx, s); ok {
			t.Fatal("group 2 still exists")
		}
		groups, err := models.ServerGroups(ctx, s, product)
		must(t, err)
		if len(groups) != 1 || groups[0].Id != 1 || len(groups[0].Servers) != 2 {
			t.Fatalf("groups %v", groups)
		}
	})
}

// interfereOnTxn runs fn once, just before the first transaction that
// touches a node under prefix: a concurrent writer at the worst moment.
type interfereOnTxn struct {
	coord.Store
	prefix string
	fn     func()
	once   sync.Once
}

func (w *interfereOnTxn) Txn(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	for _, op := range ops {
		if strings.HasPrefix(op.Path, w.prefix) {
			w.once.Do(w.fn)
			break
		}
	}
	return w.Store.Txn(ctx, ops...)
}

// TestRedisOnlyAfterStore: Promote and AddServer touch Redis only once their
// store change has won; a change that loses sends nothing, and a Redis that
// refuses sets the store back and announces nothing.
func TestRedisOnlyAfterStore(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		a, b := testenv.RedisServer(t, redisPass), testenv.RedisServer(t, redisPass)
		s := open()
		ctx := ctxT(t)
		must(t, models.InitSlotSet(ctx, s, product, 1024))
		g := models.NewServerGroup(product, 1)
		must(t, g.Create(ctx, s))
		must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, a), redisPass))
		must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_SLAVE, b), redisPass))
		waitRole(t, b, "slave", port(a))
		must(t, models.SetSlotRange(ctx, s, product, 0, 1023, 1, models.SLOT_STATUS_ONLINE))
		proxy := startProxy(t, open, "proxy_1", proxysim.Options{}, true)

		// Another writer removes b just before Promote's transaction: the
		// transaction loses, Promote looks again and finds b gone, and b
		// was never told SLAVEOF NO ONE.
		other := open()
		w := &interfereOnTxn{Store: s, prefix: models.GetGroupPath(product, 1) + "/", fn: func() {
			must(t, other.Delete(ctx, coord.Join(models.GetGroupPath(product, 1), b), coord.AnyVersion))
		}}
		is(t, g.Promote(ctx, w, b, redisPass), models.ErrServerNotFound)
		if r := role(t, b); r["role"] != "slave" {
			t.Fatalf("a promotion that lost in the store still made %s a %s", b, r["role"])
		}

		// A server Redis cannot reach: recorded as a slave by hand, then
		// promoted. Redis fails, the store is set back, nothing announced.
		dead := testenv.ClosedPort(t)
		_, err := s.Create(ctx, coord.Join(models.GetGroupPath(product, 1), dead), []byte(`{"type":"slave","group_id":1,"addr":"`+dead+`"}`), coord.Persistent)
		must(t, err)
		before, err := s.Children(ctx, models.GetGroupPath(product, 1))
		must(t, err)
		beforeData := map[string]string{}
		for _, k := range before {
			beforeData[k] = raw(t, s, coord.Join(models.GetGroupPath(product, 1), k))
		}
		handled := len(proxy.Handled())
		is(t, g.Promote(ctx, s, dead, redisPass), models.ErrRedis)
		if m, _ := g.Master(ctx, s); m == nil || m.Addr != a {
			t.Fatalf("master after a promotion Redis refused: %v", m)
		}
		if len(proxy.Handled()) != handled {
			t.Fatal("a promotion Redis refused was announced")
		}
		for k, v := range beforeData {
			if now := raw(t, s, coord.Join(models.GetGroupPath(product, 1), k)); now != v {
				t.Fatalf("%s changed from %s to %s", k, v, now)
			}
		}
		if r := role(t, a); r["role"] != "master" {
			t.Fatalf("%s is now %s", a, r["role"])
		}
		// AddServer of a slave Redis cannot reach: not recorded.
		dead2 := testenv.ClosedPort(t)
		is(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_SLAVE, dead2), redisPass), models.ErrRedis)
		if _, ok, _ := s.Exists(ctx, coord.Join(models.GetGroupPath(product, 1), dead2)); ok {
			t.Fatal("a slave Redis refused stays recorded")
		}
	})
}
