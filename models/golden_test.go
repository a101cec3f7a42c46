package models_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/models/proxysim"
)

// The bytes Codis 2 writes for each node kind (docs/LAYOUT.md).
func TestGoldenBytes(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		R := "/zk/codis/db_" + product
		must(t, models.InitSlotSet(ctx, s, product, models.DEFAULT_SLOT_NUM))
		slot7 := `{"product_name":"test","id":7,"group_id":-1,"state":{"status":"offline","migrate_status":{"from":-1,"to":-1},"last_op_ts":"0"}}`
		if got := raw(t, s, R+"/slots/slot_7"); got != slot7 {
			t.Fatalf("slot_7:\n got %s\nwant %s", got, slot7)
		}
		if got := raw(t, s, R+"/slots/slot_1023"); !strings.Contains(got, `"id":1023,`) {
			t.Fatalf("slot_1023 (ids are not zero-padded): %s", got)
		}
		kids, err := s.Children(ctx, R+"/slots")
		must(t, err)
		if len(kids) != 1024 {
			t.Fatalf("%d slot nodes", len(kids))
		}
		g := models.NewServerGroup(product, 1)
		must(t, g.Create(ctx, s))
		if got := raw(t, s, R+"/servers/group_1"); got != "" {
			t.Fatalf("group node holds %q", got)
		}
		// Its group_changed action names a group whose servers are null
		// (Codis 2's new group has a nil list).
		seqs, err := models.GetActionSeqList(ctx, s, product)
		must(t, err)
		if got, want := raw(t, s, fmt.Sprintf("%s/actions/%010d", R, seqs[len(seqs)-1])), `"target":{"id":1,"product_name":"test","servers":null}`; !strings.Contains(got, want) {
			t.Fatalf("group_changed of a new group:\n got %s\nwant it to hold %s", got, want)
		}
		must(t, g.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_SLAVE, "127.0.0.1:6379"), ""))
		if got, want := raw(t, s, R+"/servers/group_1/127.0.0.1:6379"), `{"type":"master","group_id":1,"addr":"127.0.0.1:6379"}`; got != want {
			t.Fatalf("server node (first server becomes master):\n got %s\nwant %s", got, want)
		}
		must(t, models.SetSlotRange(ctx, s, product, 0, 1023, 1, models.SLOT_STATUS_ONLINE))
		if got, want := raw(t, s, R+"/slots/slot_5"), `{"product_name":"test","id":5,"group_id":1,"state":{"status":"online","migrate_status":{"from":-1,"to":-1},"last_op_ts":"0"}}`; got != want {
			t.Fatalf("assigned slot:\n got %s\nwant %s", got, want)
		}
		p := startProxy(t, open, "proxy_1", proxysim.Options{}, true)
		info := p.Info()
		info.State = models.PROXY_STATE_ONLINE
		wantProxy := fmt.Sprintf(`{"id":"proxy_1","addr":"%s","last_event":"","last_event_ts":0,"state":"online","description":"","debug_var_addr":"127.0.0.1:11000","pid":%d,"start_at":"2026-11-25 06:00:00"}`, info.Addr, os.Getpid())
		if got := raw(t, s, R+"/proxy/proxy_1"); got != wantProxy {
			t.Fatalf("proxy node:\n got %s\nwant %s", got, wantProxy)
		}
		_, st, err := s.Get(ctx, R+"/proxy/proxy_1")
		must(t, err)
		if !st.Ephemeral {
			t.Fatal("proxy node is not ephemeral")
		}
		if got := raw(t, s, R+"/fence/"+info.Addr); got != "" {
			t.Fatalf("fence holds %q", got)
		}
		// A confirmed action, answered by the proxy.
		slot, err := models.GetSlot(ctx, s, product, 5)
		must(t, err)
		must(t, models.NewAction(ctx, s, product, models.ACTION_TYPE_SLOT_CHANGED, slot, "", true))
		seqs, err = models.GetActionSeqList(ctx, s, product)
		must(t, err)
		name := fmt.Sprintf("%010d", seqs[len(seqs)-1])
		act := raw(t, s, R+"/actions/"+name)
		var parsed models.Action
		must(t, json.Unmarshal([]byte(act), &parsed))
		quoted, _ := json.Marshal(wantProxy)
		wantAct := fmt.Sprintf(`{"type":"slot_changed","desc":"","target":%s,"ts":"%s","receivers":[%s]}`,
			raw(t, s, R+"/slots/slot_5"), parsed.Ts, quoted)
		if act != wantAct {
			t.Fatalf("action:\n got %s\nwant %s", act, wantAct)
		}
		if !regexp.MustCompile(`^\d{10}$`).MatchString(name) || !regexp.MustCompile(`^\d+$`).MatchString(parsed.Ts) {
			t.Fatalf("action name %q, ts %q", name, parsed.Ts)
		}
		if got := raw(t, s, R+"/ActionResponse/"+name); got != act {
			t.Fatalf("response directory holds\n%s\nnot the action\n%s", got, act)
		}
		if got := raw(t, s, R+"/ActionResponse/"+name+"/proxy_1"); got != wantProxy {
			t.Fatalf("answer:\n got %s\nwant %s", got, wantProxy)
		}
		// The product lock.
		lock, err := models.NewProductLock(s, product, "migrate")
		must(t, err)
		must(t, lock.Lock(ctx))
		host, _ := os.Hostname()
		wantLock := fmt.Sprintf(`{"desc":"migrate","hostname":%q,"pid":%d}`, host, os.Getpid())
		if got := raw(t, s, lock.Node()); got != wantLock || !regexp.MustCompile(`/LOCK/lock-\d{10}$`).MatchString(lock.Node()) {
			t.Fatalf("lock %s holds %s, want %s", lock.Node(), got, wantLock)
		}
		must(t, lock.Unlock(ctx))
	})
}

// Data in Codis 2's format written by another program (another field order,
// spaces, extra fields) reads back through the models.
func TestReadForeignData(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		s := open()
		ctx := ctxT(t)
		R := "/zk/codis/db_" + product
		put := func(p, data string) {
			_, err := coord.CreateAll(ctx, s, p, []byte(data), coord.Persistent)
			must(t, err)
		}
		put(R+"/slots/slot_3", `{"id": 3, "product_name": "test", "state": {"last_op_ts": "1700000000", "migrate_status": {"to": 2, "from": 1}, "status": "migrate"}, "group_id": 2}`)
		put(R+"/servers/group_2/10.0.0.1:6380", `{"addr": "10.0.0.1:6380", "group_id": 2, "type": "master"}`)
		put(R+"/proxy/proxy_9", `{"id":"proxy_9","addr":"h:19000","last_event":"","last_event_ts":0,"state":"online","description":"","debug_var_addr":"h:11000","pid":42,"start_at":"2015-01-01","extra":true}`)
		put(R+"/fence/h:19000", ``)
		put(R+"/actions/0000000042", `{"type":"slot_changed","desc":"","target":{"id":3},"ts":"1","receivers":["proxy_9"]}`)
		slot, err := models.GetSlot(ctx, s, product, 3)
		must(t, err)
		if slot.GroupId != 2 || slot.State.Status != models.SLOT_STATUS_MIGRATE || slot.State.MigrateStatus != (models.SlotMigrateStatus{From: 1, To: 2}) || slot.State.LastOpTs != "1700000000" {
			t.Fatalf("slot %+v", slot)
		}
		mig, err := models.GetMigratingSlots(ctx, s, product)
		must(t, err)
		if len(mig) != 1 || mig[0].Id != 3 {
			t.Fatalf("migrating %v", mig)
		}
		g, err := models.GetGroup(ctx, s, product, 2)
		must(t, err)
		m, err := g.Master(ctx, s)
		must(t, err)
		if m == nil || m.Addr != "10.0.0.1:6380" || len(g.Servers) != 1 {
			t.Fatalf("group %v master %v", g, m)
		}
		proxies, err := models.ProxyList(ctx, s, product, nil)
		must(t, err)
		if len(proxies) != 1 || proxies[0].Pid != 42 || proxies[0].State != "online" {
			t.Fatalf("proxies %+v", proxies)
		}
		fences, err := models.GetFenceProxyMap(ctx, s, product)
		must(t, err)
		if !fences["h:19000"] || len(fences) != 1 {
			t.Fatalf("fences %v", fences)
		}
		var act models.Action
		must(t, models.GetActionObject(ctx, s, product, 42, &act, "zookeeper"))
		if act.Type != models.ACTION_TYPE_SLOT_CHANGED || len(act.Receivers) != 1 || act.Receivers[0] != "proxy_9" {
			t.Fatalf("action %+v", act)
		}
		// Malformed data: a typed error that names the path.
		put(R+"/slots/slot_4", `{"id": 4, "state": {"status": "on fire"}}`)
		_, err = models.GetSlot(ctx, s, product, 4)
		is(t, err, models.ErrMalformed)
		if !strings.Contains(err.Error(), R+"/slots/slot_4") {
			t.Fatalf("error does not name the path: %v", err)
		}
		must(t, s.Delete(ctx, R+"/slots/slot_4", coord.AnyVersion))
		put(R+"/slots/slot_5", `{not json`)
		_, err = models.Slots(ctx, s, product)
		is(t, err, models.ErrMalformed)
		if !strings.Contains(err.Error(), R+"/slots/slot_5") {
			t.Fatalf("error does not name the path: %v", err)
		}
		put(R+"/proxy/broken", `[]`)
		_, err = models.ProxyList(ctx, s, product, nil)
		is(t, err, models.ErrMalformed)
		put(R+"/actions/not-a-number", `{}`)
		_, err = models.GetActionSeqList(ctx, s, product)
		is(t, err, models.ErrMalformed)
	})
}
