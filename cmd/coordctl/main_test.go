package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/internal/testenv"
	"github.com/coordkit/coord/models"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coordctl-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "coordctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		panic("building coordctl: " + err.Error() + "\n" + string(out))
	}
	backends.Main(m, func() { os.RemoveAll(dir) })
}

// ctl runs the built binary and returns stdout, stderr and the exit code.
func ctl(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return ctlEnv(t, nil, args...)
}

// ctlEnv is ctl with extra environment variables.
func ctlEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := ctl(t, args...)
	if code != 0 {
		t.Fatalf("coordctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func fails(t *testing.T, wantCode int, wantErr string, args ...string) {
	t.Helper()
	out, errs, code := ctl(t, args...)
	if code != wantCode || !strings.Contains(errs, wantErr) || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Fatalf("coordctl %s: exit %d, stderr %q, stdout %q; want exit %d and one line with %q", strings.Join(args, " "), code, errs, out, wantCode, wantErr)
	}
	for _, p := range []string{"models: ", "coord: ", "etcdembed: ", "storeurl: "} {
		if strings.Count(errs, p) > 1 {
			t.Fatalf("coordctl %s: stderr %q names %q more than once", strings.Join(args, " "), errs, p)
		}
	}
}

// storeArgs are the global flags for a backend and a fresh namespace.
func storeArgs(t *testing.T, b backends.Backend) []string {
	switch b.Name {
	case "etcd":
		return []string{"--store", "embedded:" + t.TempDir()}
	case "zk":
		testenv.Addr(t, "zk")
	case "consul":
		testenv.Addr(t, "consul")
	}
	return []string{"--store", b.URL(backends.Namespace(t))}
}

func TestCommands(t *testing.T) {
	for _, b := range backends.Servers() {
		t.Run(b.Name, func(t *testing.T) {
			g := append(storeArgs(t, b), "--product", "shop")
			run := func(args ...string) string { return ok(t, append(append([]string{}, g...), args...)...) }
			run("slot", "init")
			fails(t, 1, "has 1024 slots already", append(g, "slot", "init")...)
			run("group", "create", "1")
			run("group", "create", "2")
			fails(t, 1, "cannot be checked", append(g, "group", "add-server", "1", "127.0.0.1:6379", "--type", "master")...)
			run("group", "add-server", "1", "127.0.0.1:6379", "--type", "master", "--force") // no Redis there: the check is skipped
			run("group", "add-server", "2", "127.0.0.1:6380")
			run("slot", "range-set", "0", "511", "1")
			run("slot", "range-set", "512", "1023", "2")
			list := run("slot", "list")
			for _, want := range []string{"SLOTS", "0-511     1      online", "512-1023  2      online"} {
				if !strings.Contains(list, want) {
					t.Fatalf("slot list lacks %q:\n%s", want, list)
				}
			}
			if sl := decode[SlotsOut](t, "slot list", run("--json", "slot", "list")); len(sl.Slots) != 1024 || sl.Slots[1023].Group != 2 {
				t.Fatalf("--json slot list: %d slots", len(sl.Slots))
			}
			run("slot", "migrate", "10", "12", "--to", "2")
			if mig := run("slot", "list", "--migrating"); !strings.Contains(mig, "10-12") || !strings.Contains(mig, "migrate") {
				t.Fatalf("migrating slots:\n%s", mig)
			}
			fails(t, 1, "--force skips the check", append(g, "slot", "migrate-done", "10", "12")...) // no Redis at the source master to check
			run("slot", "migrate-done", "10", "12", "--force")
			run("slot", "set", "100", "--status", "offline")
			groups := run("group", "list")
			if !strings.Contains(groups, "127.0.0.1:6379  master") {
				t.Fatalf("group list:\n%s", groups)
			}
			fails(t, 1, "group is in use", append(g, "group", "remove", "1")...)
			run("group", "create", "3")
			run("group", "remove", "3")
			fails(t, 1, "cannot remove master", append(g, "group", "remove-server", "1", "127.0.0.1:6379")...)
			actions := run("action", "list")
			if strings.Count(actions, "\n") < 5 {
				t.Fatalf("action list:\n%s", actions)
			}
			run("action", "show", strings.Fields(strings.Split(actions, "\n")[1])[0])
			// Fewer actions than the 500 proxies may still read: none go.
			if out := run("action", "gc", "--keep", "2"); !strings.Contains(out, "deleted 0 actions") {
				t.Fatalf("gc: %s", out)
			}
			run("lock", "force-remove")
			run("proxy", "list")
			run("proxy", "remove-fence")
			fails(t, 1, "node does not exist", append(g, "proxy", "online", "nosuch")...)
			// Bad input: one line, non-zero.
			fails(t, 1, "from 5 > to 1", append(g, "slot", "range-set", "5", "1", "1")...)
			fails(t, 1, "invalid slot id", append(g, "slot", "range-set", "0", "1024", "1")...)
			fails(t, 1, "group not found", append(g, "slot", "range-set", "0", "1", "9")...)
			fails(t, 2, "not a whole number", append(g, "slot", "range-set", "x", "1", "1")...)
			fails(t, 2, "invalid product name", append(storeArgs(t, b), "--product", "a/b", "slot", "list")...)
			fails(t, 2, "unknown command", append(g, "slot", "frobnicate")...)
			// dump and load round trip, under another name.
			dump := run("dump")
			path := filepath.Join(t.TempDir(), "shop.json")
			must(t, os.WriteFile(path, []byte(dump), 0o600))
			run("load", path, "--as", "shop2")
			dump2 := ok(t, append(storeArgs(t, b)[:0:0], append(g[:2:2], "--product", "shop2", "dump")...)...)
			if strings.ReplaceAll(dump2, "shop2", "shop") != dump {
				t.Fatal("dump of the loaded product differs")
			}
			fails(t, 1, "exists", append(g, "load", path)...)
			// The loaded product is its own: changing it leaves shop alone.
			g2 := append(append([]string{}, g[:2]...), "--product", "shop2")
			ok(t, append(g2, "slot", "set", "600", "--group", "1", "--force")...)
			if sl := decode[SlotsOut](t, "slot list", run("--json", "slot", "list")); sl.Product != "shop" || sl.Slots[600].Group != 2 {
				t.Fatalf("shop's slot 600 after changing shop2's: %+v", sl.Slots[600])
			}
			if sl := decode[SlotsOut](t, "slot list", ok(t, append(g2, "--json", "slot", "list")...)); sl.Product != "shop2" || sl.Slots[600].Group != 1 {
				t.Fatalf("shop2's slot 600: %+v", sl.Slots[600])
			}
		})
	}
}

func TestDemo(t *testing.T) {
	dir := t.TempDir()
	out := ok(t, "--data-dir", dir, "demo")
	for _, want := range []string{"3 proxies online", "migrate slots 0-31 to group 2", "CODIS 2 AT LEAST", "the product stays"} {
		if !strings.Contains(out, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The data is found again on the next run.
	list := ok(t, "--data-dir", dir, "slot", "list")
	if !strings.Contains(list, "0-31      2      online") || !strings.Contains(list, "960-1023  2      online") {
		t.Fatalf("after the demo:\n%s", list)
	}
	demo := decode[DemoOut](t, "demo", ok(t, "--data-dir", dir, "--json", "demo"))
	if len(demo.Steps) < 8 || demo.Product != "demo" || !strings.HasPrefix(demo.Store, "embedded") {
		t.Fatalf("--json demo: %+v", demo)
	}
	for _, st := range demo.Steps {
		if st.Name == "" || st.Micros <= 0 {
			t.Fatalf("--json demo: step %+v", st)
		}
	}
}

func TestCopyBetweenBackends(t *testing.T) {
	all := backends.Servers()
	src := storeArgs(t, all[0]) // embedded etcd
	g := append(src, "--product", "moving")
	ok(t, append(g, "slot", "init")...)
	ok(t, append(g, "group", "create", "1")...)
	ok(t, append(g, "group", "add-server", "1", "127.0.0.1:6379")...)
	ok(t, append(g, "slot", "range-set", "0", "1023", "1")...)
	want := ok(t, append(g, "dump")...)
	for _, b := range all[1:] {
		t.Run("etcd-to-"+b.Name, func(t *testing.T) {
			dst := storeArgs(t, b)
			out := ok(t, "--product", "moving", "copy", "--from", src[1], "--to", dst[1])
			if !strings.Contains(out, "dumps match") {
				t.Fatalf("copy: %s", out)
			}
			if got := ok(t, append(dst, "--product", "moving", "dump")...); got != want {
				t.Fatal("the copy's dump differs from the source's")
			}
			fails(t, 1, "exists", "--product", "moving", "copy", "--from", src[1], "--to", dst[1])
			// And back, into a fresh embedded store.
			back := "embedded:" + t.TempDir()
			ok(t, "--product", "moving", "copy", "--from", dst[1], "--to", back)
			if got := ok(t, "--store", back, "--product", "moving", "dump"); got != want {
				t.Fatal("the round trip's dump differs")
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A changing command waits for the product lock that another writer (here a
// Codis 2 style dashboard, in this process) holds, and gives up naming the
// holder, having written nothing; lock show names it too; force-remove says
// whose lock it removed, and the command then goes through.
func TestLockHolderNamed(t *testing.T) {
	for _, b := range backends.Servers() {
		t.Run(b.Name, func(t *testing.T) {
			_, s, g := initShop(t, b)
			ctx := context.Background()
			lock, err := models.NewProductLock(s, "shop", "dashboard: rebalance")
			must(t, err)
			must(t, lock.Lock(ctx))
			pid := strconv.Itoa(os.Getpid())
			for _, want := range []string{`"dashboard: rebalance"`, "pid " + pid} {
				if out := ok(t, append(g, "lock", "show")...); !strings.Contains(out, want) {
					t.Fatalf("lock show lacks %q: %s", want, out)
				}
				fails(t, 1, want, append(g, "--timeout", "2s", "group", "create", "5")...)
			}
			if _, err := models.GetGroup(ctx, s, "shop", 5); !errors.Is(err, models.ErrGroupNotFound) {
				t.Fatalf("group 5 after a refused create: %v", err)
			}
			// --no-lock goes through the held lock, loudly.
			if _, errs, code := ctl(t, append(g, "--no-lock", "group", "create", "6")...); code != 0 || !strings.Contains(errs, "WARNING: --no-lock") {
				t.Fatalf("--no-lock: exit %d, %q", code, errs)
			}
			if _, err := models.GetGroup(ctx, s, "shop", 6); err != nil {
				t.Fatalf("group 6 after --no-lock: %v", err)
			}
			if out := ok(t, append(g, "lock", "force-remove")...); !strings.Contains(out, `removed the lock held by "dashboard: rebalance"`) {
				t.Fatalf("force-remove: %s", out)
			}
			select {
			case <-lock.Lost():
			case <-time.After(30 * time.Second):
				t.Fatal("the holder was not told that its lock was removed")
			}
			ok(t, append(g, "group", "create", "5")...)
			if out := ok(t, append(g, "lock", "show")...); !strings.Contains(out, "free") {
				t.Fatalf("lock show after the command: %s", out)
			}
			if out := ok(t, append(g, "lock", "force-remove")...); !strings.Contains(out, "nothing removed") {
				t.Fatalf("force-remove of a free lock: %s", out)
			}
		})
	}
}

// TestLockDescription: the lock a command takes names the command and its
// arguments (quoted where they need it, long ones cut), never its flags.
func TestLockDescription(t *testing.T) {
	a := &app{}
	root := a.rootCmd()
	long := strings.Repeat("é", 50)
	cmd, rest, err := root.Find([]string{"raw", "put", "/a b", long, "--version", "3", "--tls-key", "secret.pem"})
	must(t, err)
	must(t, cmd.ParseFlags(rest)) // parsed as cobra does before running it (not run here)
	got := lockDesc(cmd, time.Date(2026, 12, 3, 17, 4, 5, 0, time.UTC))
	want := `coordctl raw put "/a b" ` + strings.Repeat("é", 40) + `... (since 2026-12-03T17:04:05Z)`
	if got != want {
		t.Fatalf("lockDesc = %q\nwant %q", got, want)
	}
}
