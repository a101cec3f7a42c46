package models_test

import (
	"strings"
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
