package models_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/zkstore"
	"github.com/coordkit/coord/internal/testenv"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/models/proxysim"
)

func TestIsLeafNode(t *testing.T) {
	r := models.ProductPath("p")
	for path, want := range map[string]bool{
		r: false, r + "/slots": false, r + "/slots/slot_7": true, r + "/servers": false,
		r + "/servers/group_1": false, r + "/servers/group_1/127.0.0.1:6379": true,
		r + "/proxy": false, r + "/proxy/proxy_1": true, r + "/fence": false, r + "/fence/[::1]:19000": true,
		r + "/actions": false, r + "/actions/0000000004": true, r + "/ActionResponse": false,
		r + "/ActionResponse/0000000004": false, r + "/ActionResponse/0000000004/proxy_1": true,
		r + "/LOCK": false, r + "/LOCK/lock-0000000001": true, r + "/dashboard": true,
		r + "/migrate_tasks": false, r + "/migrate_tasks/0000000001": true,
		"/zk": false, "/zk/codis": false, "/zk/codis/db_": false, "/other/db_p/slots/slot_1": false,
		r + "/slots/slot_7/x": false, r + "/unknown/x": false,
	} {
		if got := models.IsLeafNode(path); got != want {
			t.Errorf("IsLeafNode(%q) = %v, want %v", path, got, want)
		}
	}
}

// TestZooKeeperACLs: through zkstore.LeafACL(models.IsLeafNode), every node a
// product has carries the ACL Codis 2 gives it: leaves world:anyone rwa,
// directories world:anyone cdrwa.
func TestZooKeeperACLs(t *testing.T) {
	addr := testenv.Addr(t, "zk")
	ctx := ctxT(t)
	chroot := fmt.Sprintf("/coordtest/acl-%d", time.Now().UnixNano())
	open := func() coord.Store {
		s, err := zkstore.New(ctx, zkstore.Config{Servers: []string{addr}, Chroot: chroot, SessionTimeout: 4 * time.Second,
			ACLFor: zkstore.LeafACL(models.IsLeafNode)})
		must(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}
	s := open()
	setupProduct(t, s)
	must(t, models.NewServerGroup(product, 2).Create(ctx, s))
	must(t, models.NewServerGroup(product, 2).AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, "127.0.0.1:6380"), ""))
	p, err := proxysim.Start(ctx, open(), product, models.ProxyInfo{Id: "proxy_1", Addr: "127.0.0.1:19000", Pid: os.Getpid(), StartAt: "now"}, proxysim.Options{})
	must(t, err)
	defer p.Stop()
	must(t, models.SetProxyStatus(ctx, s, product, "proxy_1", models.PROXY_STATE_ONLINE))
	<-p.Ready()
	sl, err := models.GetSlot(ctx, s, product, 1)
	must(t, err)
	must(t, sl.SetMigrateStatus(ctx, s, 1, 2)) // actions, answered
	lock, err := models.NewProductLock(s, product, "acl test")
	must(t, err)
	must(t, lock.Lock(ctx))
	defer lock.Unlock(context.Background())
	d, err := models.RegisterDashboard(ctx, s, product, "127.0.0.1:18087")
	must(t, err)
	defer d.Close(context.Background())

	conn, _, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithLogger(nopLog{}))
	must(t, err)
	defer conn.Close()
	kinds := map[string]bool{}
	var walk func(rel string)
	walk = func(rel string) {
		abs := chroot + rel
		acl, _, err := conn.GetACL(abs)
		must(t, err)
		want := int32(zk.PermAll)
		if models.IsLeafNode(rel) {
			want = zk.PermRead | zk.PermWrite | zk.PermAdmin
			parts := strings.Split(strings.TrimPrefix(rel, models.ProductPath(product)+"/"), "/")
			kinds[parts[0]] = true
		}
		if len(acl) != 1 || acl[0].Scheme != "world" || acl[0].ID != "anyone" || acl[0].Perms != want {
			t.Errorf("%s: ACL %+v, want world:anyone perms %d", rel, acl, want)
		}
		kids, _, err := conn.Children(abs)
		must(t, err)
		for _, k := range kids {
			walk(strings.TrimSuffix(rel, "/") + "/" + k)
		}
	}
	walk(models.ProductPath(product))
	var got []string
	for k := range kinds {
		got = append(got, k)
	}
	sort.Strings(got)
	if want := "ActionResponse LOCK actions dashboard fence proxy servers slots"; strings.Join(got, " ") != want {
		t.Fatalf("leaf kinds seen: %v, want %s", got, want)
	}
}

type nopLog struct{}

func (nopLog) Printf(string, ...interface{}) {}
