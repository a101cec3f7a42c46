package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/internal/redisc"
	"github.com/coordkit/coord/internal/testenv"
	"github.com/coordkit/coord/models"
	"github.com/coordkit/coord/models/proxysim"
)

// initShop opens a store of b on a fresh namespace with product shop's
// 1024 slots, and returns the namespace, the store and coordctl's flags for it.
func initShop(t *testing.T, b backends.Backend) (string, coord.Store, []string) {
	t.Helper()
	ns := backends.Namespace(t)
	s := b.Open(t, ns)
	must(t, models.InitSlotSet(context.Background(), s, "shop", models.DEFAULT_SLOT_NUM))
	return ns, s, []string{"--store", b.URL(ns), "--product", "shop"}
}

// shopOnZooKeeper is initShop on ZooKeeper, with group 1 and its master.
func shopOnZooKeeper(t *testing.T) (backends.Backend, string, coord.Store) {
	t.Helper()
	testenv.Addr(t, "zk")
	b := backends.Servers()[1]
	ns, s, _ := initShop(t, b)
	g := models.NewServerGroup("shop", 1)
	must(t, g.Create(context.Background(), s))
	must(t, g.AddServer(context.Background(), s, models.NewServer(models.SERVER_TYPE_MASTER, "127.0.0.1:6379"), ""))
	return b, ns, s
}

// TestReadsNeverCreate: a read on a directory with no store, or of a
// product that does not exist, fails (naming what there is) and creates
// nothing; bad input fails with exit 2 before connecting.
func TestReadsNeverCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo")
	for _, args := range [][]string{{"slot", "list"}, {"group", "list"}, {"proxy", "list"}, {"action", "list"}, {"dump"}, {"lock", "show"}, {"product", "list"}} {
		fails(t, 1, "holds no embedded store", append([]string{"--data-dir", dir}, args...)...)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a read created %s (%v)", dir, err)
	}
	good := t.TempDir()
	ok(t, "--data-dir", good, "--product", "shop", "slot", "init")
	fails(t, 1, `product "shpo" not found in embedded:`+good+` (products there: shop)`, "--data-dir", good, "--product", "shpo", "slot", "list")
	// Refused before connecting: exit 2, and nothing started (no store made).
	none := filepath.Join(t.TempDir(), "none")
	for _, c := range []struct {
		want string
		args []string
	}{
		{"invalid product name", []string{"--product", "a/b", "slot", "init"}},
		{"invalid product name", []string{"--product", strings.Repeat("x", 997), "group", "create", "1"}},
		{`unknown parameter "prefx"`, []string{"--store", "etcd://" + testenv.ClosedPort(t) + "?prefx=a", "slot", "list"}},
		{"a token is for Consul", []string{"--store", "zk://" + testenv.ClosedPort(t), "--token", "t", "slot", "list"}},
		{"CA file", []string{"--store", "zk://" + testenv.ClosedPort(t), "--tls-ca", "none.pem", "slot", "list"}},
		{"the embedded store takes none", []string{"--token", "t", "slot", "init"}},
		{"must be positive", []string{"--timeout", "0s", "slot", "init"}},
	} {
		fails(t, 2, c.want, append([]string{"--data-dir", none}, c.args...)...)
	}
	// The environment stands in for flags, and is checked as they are.
	for _, c := range []struct {
		env, want string
	}{
		{"COORD_TIMEOUT=soon", `COORD_TIMEOUT "soon": not a duration`},
		{"COORD_TIMEOUT=-1s", "must be positive"},
		{"COORD_TLS_CA=ca.pem", "the embedded store takes none"},
	} {
		if _, errs, code := ctlEnv(t, []string{c.env}, "--data-dir", none, "slot", "init"); code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%s: exit %d, %q; want 2 and %q", c.env, code, errs, c.want)
		}
	}
	if _, _, code := ctlEnv(t, []string{"COORD_TIMEOUT=soon"}, "--timeout", "1m", "--data-dir", good, "--product", "shop", "slot", "list"); code != 0 {
		t.Errorf("--timeout does not win over COORD_TIMEOUT: exit %d", code)
	}
	if _, err := os.Stat(none); !os.IsNotExist(err) {
		t.Fatalf("a refused command created %s", none)
	}
	// --json failures are JSON too.
	out, _, code := ctl(t, "--data-dir", good, "--product", "nope", "--json", "slot", "list")
	if code != 1 || !strings.Contains(out, `"ok":false`) || !strings.Contains(out, `not found`) {
		t.Fatalf("--json failure: exit %d, %q", code, out)
	}
	if out := ok(t, "--version"); !strings.Contains(out, "coordctl version") {
		t.Fatalf("--version: %q", out)
	}
	help := ok(t, "--help")
	for _, env := range []string{"COORD_STORE", "COORD_PRODUCT", "COORD_DATA_DIR", "CONSUL_HTTP_TOKEN", "REDIS_PASSWORD", "COORD_TIMEOUT", "COORD_TLS_CA", "COORD_PROGRESS", "--yes", "--no-lock", "--timeout", "--progress"} {
		if !strings.Contains(help, env) {
			t.Errorf("--help does not mention %s", env)
		}
	}
}

// TestDestructiveNeedsYes: destructive commands say what they will do and,
// off a terminal, do nothing without --yes.
func TestDestructiveNeedsYes(t *testing.T) {
	dir := t.TempDir()
	g := []string{"--data-dir", dir, "--product", "shop"}
	ok(t, append(g, "slot", "init")...)
	ok(t, append(g, "group", "create", "1")...)
	ok(t, append(g, "group", "add-server", "1", "127.0.0.1:6379", "--type", "master", "--force")...)
	ok(t, append(g, "slot", "range-set", "0", "1023", "1")...)
	fails(t, 2, "sets all 1024 slots of shop offline and unassigned (1024 are not offline now", append(g, "slot", "init", "--force")...)
	if list := ok(t, append(g, "slot", "list")...); strings.Join(strings.Fields(strings.Split(list, "\n")[1]), " ") != "0-1023 1 online -1 -1" {
		t.Fatalf("a refused slot init changed the slots:\n%s", list)
	}
	fails(t, 2, "product remove deletes product shop", append(g, "product", "remove")...)
	ok(t, append(g, "slot", "list")...)
	ok(t, append(g, "slot", "init", "--force", "--yes")...)
	if list := ok(t, append(g, "slot", "list")...); strings.Join(strings.Fields(strings.Split(list, "\n")[1]), " ") != "0-1023 -1 offline -1 -1" {
		t.Fatalf("slot init --force --yes:\n%s", list)
	}
	ok(t, append(g, "product", "remove", "--yes")...)
	fails(t, 1, `product "shop" not found`, append(g, "slot", "list")...)
}

// TestDemoLeavesOtherProductsAlone: the demo runs on the embedded store's
// own demo product; COORD_STORE and COORD_PRODUCT do not steer it, and it
// replaces another existing product only with --force.
func TestDemoLeavesOtherProductsAlone(t *testing.T) {
	testenv.Addr(t, "zk")
	b := backends.Servers()[1]
	ns := backends.Namespace(t)
	s := b.Open(t, ns)
	ctx := context.Background()
	must(t, models.InitSlotSet(ctx, s, "prod", models.DEFAULT_SLOT_NUM))
	dir := t.TempDir()
	out, errs, code := ctlEnv(t, []string{"COORD_STORE=" + b.URL(ns), "COORD_PRODUCT=prod"}, "--data-dir", dir, "demo", "--proxies", "1")
	if code != 0 || !strings.Contains(out, "store embedded:"+dir+", product demo") {
		t.Fatalf("demo with COORD_STORE set: exit %d\n%s%s", code, out, errs)
	}
	if sl, err := models.GetSlot(ctx, s, "prod", 0); err != nil || sl.GroupId != models.INVALID_ID {
		t.Fatalf("the demo touched the product named by COORD_*: %v %v", sl, err)
	}
	fails(t, 1, "the demo would delete it", "--store", b.URL(ns), "--product", "prod", "demo")
	if _, err := models.GetSlot(ctx, s, "prod", 0); err != nil {
		t.Fatalf("a refused demo deleted the product: %v", err)
	}
	// Its own product on the embedded store it replaces without asking.
	ok(t, "--data-dir", dir, "demo", "--proxies", "1")
}

// TestEmbeddedDirInUse: a second process on a data directory in use fails
// at once naming the holder; copy to the same store is refused.
func TestEmbeddedDirInUse(t *testing.T) {
	dir := t.TempDir()
	ok(t, "--data-dir", dir, "slot", "init")
	srv, err := etcdembed.Start(filepath.Join(dir, "etcd"), etcdembed.Options{})
	must(t, err)
	defer srv.Close()
	start := time.Now()
	fails(t, 1, "in use by pid "+strconv.Itoa(os.Getpid()), "--data-dir", dir, "--timeout", "5m", "slot", "list")
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("the refusal took %v", d)
	}
	fails(t, 2, "name the same store", "--data-dir", dir, "copy", "--from", "embedded", "--to", "embedded:"+dir)
}

// TestInterruptedAndCutShort: Ctrl-C exits 130 saying so; a confirmation
// cut short by --timeout says that the silent proxy was not marked offline.
func TestInterruptedAndCutShort(t *testing.T) {
	b, ns, s := shopOnZooKeeper(t)
	ctx := context.Background()
	args := []string{"--store", b.URL(ns), "--product", "shop"}

	// Interrupted while waiting for the lock.
	lock, err := models.NewProductLock(s, "shop", "held by the test")
	must(t, err)
	must(t, lock.Lock(ctx))
	r := startCtl(t, append(args, "--progress", "always", "group", "create", "2")...)
	r.waitFor(t, func(l string) bool {
		return strings.Contains(l, "for the product lock, held by") && strings.Contains(l, "held by the test")
	})
	must(t, r.cmd.Process.Signal(syscall.SIGINT))
	for l := range r.lines {
		r.seen = append(r.seen, l)
	}
	err = r.cmd.Wait()
	ee, _ := err.(*exec.ExitError)
	if last := r.seen[len(r.seen)-1]; ee == nil || ee.ExitCode() != 130 || !strings.HasPrefix(last, "coordctl: interrupted: ") || !strings.HasSuffix(last, "nothing was changed: it was still waiting for the product lock") {
		t.Fatalf("Ctrl-C: %v, stderr %q; want exit 130 saying interrupted, and that nothing was changed", err, r.seen)
	}
	must(t, lock.Unlock(ctx))

	// A silent proxy holds up a confirmed change past --timeout.
	must(t, models.SetSlotRange(ctx, s, "shop", 0, 1023, 1, models.SLOT_STATUS_ONLINE))
	p, err := proxysim.Start(ctx, b.Open(t, ns), "shop", models.ProxyInfo{Id: "mute", Addr: "127.0.0.1:19001", Pid: os.Getpid(), StartAt: "now"}, proxysim.Options{Mute: true})
	must(t, err)
	defer p.Stop()
	must(t, models.SetProxyStatus(ctx, s, "shop", "mute", models.PROXY_STATE_ONLINE))
	<-p.Ready()
	fails(t, 1, "mute had not answered when the wait was cut short; they were not marked offline", append(args, "--timeout", "3s", "slot", "set", "5", "--group", "1")...)
	pi, err := models.GetProxyInfo(ctx, s, "shop", "mute")
	must(t, err)
	if pi.State != models.PROXY_STATE_ONLINE {
		t.Fatalf("proxy state %s after the cut-short wait; the message says it was left alone", pi.State)
	}
}

// TestCopyLeavesSessionsBehind: copy carries what defines the product, and a
// dead proxy's fence, but not the fence of a proxy alive on the source (it
// does not follow the copy, and its fence would refuse every confirmed
// action there) nor a lock node a Codis 2 tool left persistent.
func TestCopyLeavesSessionsBehind(t *testing.T) {
	b, ns, s := shopOnZooKeeper(t)
	ctx := context.Background()
	must(t, models.SetSlotRange(ctx, s, "shop", 0, 1023, 1, models.SLOT_STATUS_ONLINE))
	p, err := proxysim.Start(ctx, b.Open(t, ns), "shop", models.ProxyInfo{Id: "live", Addr: "127.0.0.1:19002", Pid: os.Getpid(), StartAt: "now"}, proxysim.Options{})
	must(t, err)
	defer p.Stop()
	_, err = models.CreateProxyFenceNode(ctx, s, "shop", &models.ProxyInfo{Addr: "127.0.0.1:19003"}) // a dead proxy's
	must(t, err)
	root := models.ProductPath("shop")
	must(t, coord.MkdirAll(ctx, s, root+"/LOCK"))
	_, err = s.Create(ctx, root+"/LOCK/0000000001", []byte(`{"desc":"codis-config","hostname":"h","pid":1}`), coord.Persistent)
	must(t, err)
	dst := "embedded:" + t.TempDir()
	out := ok(t, "--product", "shop", "copy", "--from", b.URL(ns), "--to", dst)
	if !strings.Contains(out, "dumps match (1 fences of proxies live on the source left behind)") {
		t.Fatalf("copy: %s", out)
	}
	dump := ok(t, "--store", dst, "--product", "shop", "dump")
	if strings.Contains(dump, "19002") || strings.Contains(dump, `"LOCK`) || !strings.Contains(dump, "fence/127.0.0.1:19003") {
		t.Fatalf("the copy holds the live fence or the lock, or lacks the dead fence:\n%s", dump)
	}
}

// TestMigrateDoneChecksKeys: migrate-done refuses while the source master
// still holds keys of the slots, by SCAN on a plain Redis, and goes through
// once they are gone (or with --force).
func TestMigrateDoneChecksKeys(t *testing.T) {
	src, dst := testenv.RedisServer(t, "pw"), testenv.RedisServer(t, "pw")
	dir := t.TempDir()
	g := []string{"--data-dir", dir, "--product", "shop"}
	ok(t, append(g, "slot", "init")...)
	for i, addr := range []string{src, dst} {
		id := strconv.Itoa(i + 1)
		ok(t, append(g, "group", "create", id)...)
		ok(t, append(g, "group", "add-server", id, addr, "--type", "master", "--password", "pw")...)
	}
	ok(t, append(g, "slot", "range-set", "0", "1023", "1")...)
	// Impossible states are refused, nothing written.
	fails(t, 1, "is already in group 1", append(g, "group", "add-server", "2", src)...)
	fails(t, 1, "cannot be checked", append(g, "group", "add-server", "2", testenv.ClosedPort(t), "--type", "master")...)
	replica := testenv.RedisServer(t, "pw")
	must(t, redisc.SlaveOf(replica, src, "pw", 5*time.Second))
	ok(t, append(g, "group", "create", "3")...)
	fails(t, 1, "is a Redis slave", append(g, "group", "add-server", "3", replica, "--type", "master", "--password", "pw")...)
	fails(t, 1, "leaves its keys behind", append(g, "slot", "set", "500", "--group", "2")...)
	fails(t, 2, "needs its source and target", append(g, "slot", "set", "500", "--status", "migrate")...)
	if groups := ok(t, append(g, "group", "list")...); strings.Count(groups, "127.0.0.1:") != 2 {
		t.Fatalf("refused servers were added:\n%s", groups)
	}
	if sl := decode[SlotsOut](t, "slot list", ok(t, append(g, "--json", "slot", "list")...)); sl.Slots[500].Group != 1 {
		t.Fatalf("a refused slot set changed slot 500: %+v", sl.Slots[500])
	}
	c, err := redisc.Dial(src, "pw", 5*time.Second)
	must(t, err)
	defer c.Close()
	var inRange []string
	for i := 0; i < 2000; i++ {
		k := "user:" + strconv.Itoa(i)
		_, err := c.Do("SET", k, "v")
		must(t, err)
		if redisc.SlotOf(k, 1024) < 10 {
			inRange = append(inRange, k)
		}
	}
	ok(t, append(g, "slot", "migrate", "0", "9", "--to", "2")...)
	out, errs, code := ctlEnv(t, []string{"REDIS_PASSWORD=pw"}, append(g, "slot", "migrate-done", "0", "9")...)
	if code != 1 || !strings.Contains(errs, strconv.Itoa(len(inRange))+" keys of") || !strings.Contains(errs, "still on "+src) || !strings.Contains(errs, "SCAN") {
		t.Fatalf("migrate-done with %d keys left: exit %d\n%s%s", len(inRange), code, out, errs)
	}
	if mig := ok(t, append(g, "slot", "list", "--migrating")...); !strings.Contains(mig, "0-9") {
		t.Fatalf("a refused migrate-done changed the slots:\n%s", mig)
	}
	fails(t, 1, "AUTH", append(g, "slot", "migrate-done", "0", "9", "--password", "wrong")...)
	for _, k := range inRange { // what a migration tool does
		_, err := c.Do("DEL", k)
		must(t, err)
	}
	_, _, code = ctlEnv(t, []string{"REDIS_PASSWORD=pw"}, append(g, "slot", "migrate-done", "0", "9")...)
	if code != 0 {
		t.Fatal("migrate-done refused with no keys left")
	}
	if list := ok(t, append(g, "slot", "list")...); !strings.Contains(strings.Join(strings.Fields(list), " "), "0-9 2 online") {
		t.Fatalf("after migrate-done:\n%s", list)
	}
}

// TestRawEscapeHatch: a node that breaks the product (here a slot of
// another product, as a bad load once left) is found and repaired with raw
// stat/get/put, compare-and-set; writes inside a product wait for its lock.
func TestRawEscapeHatch(t *testing.T) {
	for _, b := range backends.Servers()[1:] { // server backends: the test holds the lock meanwhile
		t.Run(b.Name, func(t *testing.T) {
			_, s, g := initShop(t, b)
			ctx := context.Background()
			p := models.GetSlotPath("shop", 5)
			good, _, err := s.Get(ctx, p)
			must(t, err)
			bad := strings.Replace(string(good), `"product_name":"shop"`, `"product_name":"other"`, 1)
			_, err = s.Set(ctx, p, []byte(bad), coord.AnyVersion)
			must(t, err)
			fails(t, 1, "malformed", append(g, "slot", "list")...)
			if got := ok(t, append(g, "raw", "get", p)...); got != bad {
				t.Fatalf("raw get: %q", got)
			}
			if st := ok(t, append(g, "raw", "stat", p)...); !strings.Contains(st, "version    1") {
				t.Fatalf("raw stat: %s", st)
			}
			fails(t, 1, "version conflict", append(g, "raw", "put", p, string(good), "--version", "0")...)
			fails(t, 2, "needs one of --version", append(g, "raw", "put", p, string(good))...)
			// Held lock: the write waits for it and gives up naming the holder.
			lock, err := models.NewProductLock(s, "shop", "holder")
			must(t, err)
			must(t, lock.Lock(ctx))
			fails(t, 1, `held by "holder"`, append(g, "--timeout", "2s", "raw", "put", p, string(good), "--version", "1")...)
			must(t, lock.Unlock(ctx))
			ok(t, append(g, "raw", "put", p, string(good), "--version", "1")...)
			ok(t, append(g, "slot", "list")...)
			if kids := ok(t, append(g, "raw", "ls", models.ProductPath("shop"))...); !strings.Contains(kids, "slots") {
				t.Fatalf("raw ls: %s", kids)
			}
			if w := ok(t, append(g, "--timeout", "3s", "raw", "watch", p, "--count", "1")...); !strings.Contains(w, "version 2") {
				t.Fatalf("raw watch: %s", w)
			}
			fails(t, 2, "--version", append(g, "raw", "rm", p)...)
			fails(t, 2, "--yes", append(g, "raw", "rm", p, "--version", "2")...)
		})
	}
}

// TestInterruptedMigrationResumes: with a silent proxy holding up slot
// migrate, --progress always names the proxy every second; Ctrl-C exits
// 130, with --json the error object says so and how to go on; the slot
// the interrupt caught in pre_migrate is taken on by the same command run
// again, once the silent proxy is gone.
func TestInterruptedMigrationResumes(t *testing.T) {
	b, ns, s := shopOnZooKeeper(t)
	ctx := context.Background()
	args := []string{"--store", b.URL(ns), "--product", "shop"}
	must(t, models.SetSlotRange(ctx, s, "shop", 0, 1023, 1, models.SLOT_STATUS_ONLINE))
	g2 := models.NewServerGroup("shop", 2)
	must(t, g2.Create(ctx, s))
	must(t, g2.AddServer(ctx, s, models.NewServer(models.SERVER_TYPE_MASTER, "127.0.0.1:6380"), ""))
	ps := b.Open(t, ns)
	p, err := proxysim.Start(ctx, ps, "shop", models.ProxyInfo{Id: "mute", Addr: "127.0.0.1:19003", Pid: os.Getpid(), StartAt: "now"}, proxysim.Options{Mute: true})
	must(t, err)
	must(t, models.SetProxyStatus(ctx, s, "shop", "mute", models.PROXY_STATE_ONLINE))
	<-p.Ready()

	r := startCtl(t, append(args, "--json", "--progress", "always", "slot", "migrate", "0", "5", "--to", "2")...)
	r.waitFor(t, func(l string) bool {
		return strings.Contains(l, "waiting for the proxies to confirm: 0/1 answered") && strings.HasSuffix(l, "silent: mute")
	})
	// Who holds the lock meanwhile says what it does, and since when.
	if show := ok(t, append(args, "lock", "show")...); !regexp.MustCompile(`"coordctl slot migrate 0 5 \(since 20\d\d-\d\d-\d\dT[0-9:]+Z\): Slot.SetMigrateStatus"`).MatchString(show) {
		t.Errorf("lock show while slot migrate waits: %s", show)
	}
	cmd, lines, out := r.cmd, r.lines, r.out
	seen := r.seen
	must(t, cmd.Process.Signal(syscall.SIGINT))
	for l := range lines {
		seen = append(seen, l)
	}
	err = cmd.Wait()
	if ee, _ := err.(*exec.ExitError); ee == nil || ee.ExitCode() != 130 {
		t.Fatalf("Ctrl-C: %v; stderr %q", err, seen)
	}
	last := seen[len(seen)-1]
	if !strings.HasPrefix(last, "coordctl: interrupted: ") || !strings.Contains(last, "to go on: run the same slot migrate again") {
		t.Fatalf("the last line: %q", last)
	}
	var e ErrorOut
	dec := json.NewDecoder(strings.NewReader(out.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.OK || e.Exit != 130 || "coordctl: "+e.Error != last {
		t.Fatalf("--json after Ctrl-C: %q (%v); stderr ends %q", out.String(), err, last)
	}
	sl, err := models.GetSlot(ctx, s, "shop", 0)
	must(t, err)
	if sl.State.Status != models.SLOT_STATUS_PRE_MIGRATE || sl.GroupId != 1 {
		t.Fatalf("slot 0 after the interrupt: %s in group %d; want pre_migrate in group 1", sl.State.Status, sl.GroupId)
	}

	// The silent proxy goes away (its session ends; its fence stays until
	// removed); the same command takes slot 0 on and does the rest.
	p.Stop()
	must(t, ps.Close())
	ok(t, append(args, "proxy", "remove-fence")...)
	if out := ok(t, append(args, "slot", "migrate", "0", "5", "--to", "2")...); !strings.Contains(out, "6 slots migrating to group 2") {
		t.Fatalf("the second migrate: %s", out)
	}
	for id := 0; id <= 5; id++ {
		sl, err := models.GetSlot(ctx, s, "shop", id)
		must(t, err)
		if sl.State.Status != models.SLOT_STATUS_MIGRATE || sl.GroupId != 2 || sl.State.MigrateStatus.From != 1 {
			t.Fatalf("slot %d: %+v", id, sl)
		}
	}
}

// running is a coordctl started in the background, its stderr read line by
// line.
type running struct {
	cmd   *exec.Cmd
	out   *strings.Builder // stdout, to read once cmd has ended
	lines chan string      // stderr, closed at its end
	seen  []string         // the lines waitFor read
}

func startCtl(t *testing.T, args ...string) *running {
	t.Helper()
	r := &running{cmd: exec.Command(bin, args...), out: &strings.Builder{}, lines: make(chan string)}
	r.cmd.Stdout = r.out
	stderr, err := r.cmd.StderrPipe()
	must(t, err)
	must(t, r.cmd.Start())
	go func() {
		defer close(r.lines)
		buf := make([]byte, 64<<10)
		var rest string
		for {
			n, err := stderr.Read(buf)
			rest += string(buf[:n])
			for {
				i := strings.IndexByte(rest, '\n')
				if i < 0 {
					break
				}
				r.lines <- rest[:i]
				rest = rest[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

// waitFor reads stderr until a line satisfies ok (within a minute).
func (r *running) waitFor(t *testing.T, ok func(string) bool) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case l, open := <-r.lines:
			if !open {
				t.Fatalf("coordctl ended before the line awaited: %q", r.seen)
			}
			r.seen = append(r.seen, l)
			if ok(l) {
				return
			}
		case <-deadline:
			r.cmd.Process.Kill()
			t.Fatalf("not the line awaited in a minute: %q", r.seen)
		}
	}
}

// TestStorePasswordApart: the password of the user a zk:// URL names comes
// from a file or the environment (not the command line); ambiguous or
// misplaced secrets exit 2 before connecting, and no message shows one.
func TestStorePasswordApart(t *testing.T) {
	addr := testenv.Addr(t, "zk")
	url := "zk://ops@" + addr + "/" + backends.Namespace(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	must(t, os.WriteFile(pwFile, []byte("s3cretpw\n"), 0o600))
	ok(t, "--store", url, "--store-password-file", pwFile, "--product", "shop", "slot", "init")
	if _, errs, code := ctlEnv(t, []string{"COORD_STORE_PASSWORD=s3cretpw"}, "--store", url, "--product", "shop", "slot", "list"); code != 0 {
		t.Fatalf("COORD_STORE_PASSWORD: exit %d, %s", code, errs)
	}
	if _, errs, code := ctlEnv(t, []string{"COORD_STORE_PASSWORD=other"}, "--store", url, "--store-password-file", pwFile, "--product", "shop", "slot", "list"); code != 0 {
		t.Fatalf("--store-password-file does not win over COORD_STORE_PASSWORD: exit %d, %s", code, errs)
	}
	// copy's two URLs share the secrets: each gets those it can use (here
	// the password goes to zk://ops@, not to the embedded store).
	if out, errs, code := ctlEnv(t, []string{"COORD_STORE_PASSWORD=s3cretpw"}, "--product", "shop", "copy", "--from", url, "--to", "embedded:"+t.TempDir()); code != 0 || !strings.Contains(out, "dumps match") {
		t.Fatalf("copy with COORD_STORE_PASSWORD: exit %d, %s%s", code, out, errs)
	}
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"COORD_STORE_PASSWORD=s3cretpw"}, []string{"--store", "zk://ops:s3cretpw@" + addr, "slot", "list"}, "give one"},
		{[]string{"COORD_STORE_PASSWORD=s3cretpw"}, []string{"slot", "list"}, "the embedded store takes none"},
		{nil, []string{"--store", url, "--store-password-file", pwFile + ".missing", "slot", "list"}, "no such file"},
		{nil, []string{"--store", "consul://" + addr, "--store-password-file", pwFile, "slot", "list"}, "Consul takes a token"},
	} {
		_, errs, code := ctlEnv(t, c.env, append([]string{"--data-dir", t.TempDir()}, c.args...)...)
		if code != 2 || !strings.Contains(errs, c.want) || strings.Contains(errs, "s3cretpw") {
			t.Errorf("%v %v: exit %d, %q; want 2 and %q, no password", c.env, c.args, code, errs, c.want)
		}
	}
}
