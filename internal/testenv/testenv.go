// Package testenv finds the servers that tests run against, from the
// environment:
//
//	COORD_TEST_ZK       host:port of a ZooKeeper server
//	COORD_TEST_CONSUL   host:port of a Consul agent's HTTP API
//	COORD_TEST_REQUIRE  comma-separated backends (zk, consul) whose absence
//	                    fails the run instead of skipping it; CI sets it
//
// `make test` starts the servers with scripts/zk.sh and scripts/consul.sh and
// sets all three.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var how = map[string]string{
	"zk":     "COORD_TEST_ZK=$(scripts/zk.sh start /tmp/coord-zk) (or run `make test`, which starts ZooKeeper itself)",
	"consul": "COORD_TEST_CONSUL=$(scripts/consul.sh start /tmp/coord-consul) (or run `make test`, which builds and starts Consul itself)",
}

var vars = map[string]string{"zk": "COORD_TEST_ZK", "consul": "COORD_TEST_CONSUL"}

// Required reports whether backend is listed in COORD_TEST_REQUIRE.
func Required(backend string) bool {
	for _, b := range strings.Split(os.Getenv("COORD_TEST_REQUIRE"), ",") {
		if strings.TrimSpace(b) == backend {
			return true
		}
	}
	return false
}

// Addr returns the address of the backend's test server ("zk" or "consul").
// When none is set, or it does not answer, the test is skipped, or failed if
// the backend is required; the message says how to start one.
func Addr(t testing.TB, backend string) string {
	t.Helper()
	addr := os.Getenv(vars[backend])
	problem := ""
	if addr == "" {
		problem = vars[backend] + " is not set"
	} else if c, err := net.DialTimeout("tcp", addr, 3*time.Second); err != nil {
		problem = vars[backend] + "=" + addr + " does not answer: " + err.Error()
	} else {
		c.Close()
		return addr
	}
	msg := "no " + backend + " server: " + problem + "; start one with " + how[backend]
	if Required(backend) {
		t.Fatal(msg + " (COORD_TEST_REQUIRE lists " + backend + ")")
	}
	t.Skip(msg)
	return ""
}

// root returns the module's root directory (the nearest go.mod upwards).
func root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("testenv: no go.mod above the test's directory")
		}
		dir = up
	}
}

// Script runs the project's scripts/NAME with args, the environment plus
// env, and returns its standard output without the trailing newline. The
// test fails with the script's messages when it fails.
func Script(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runScript(root(t), env, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runScript(root string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(root, "scripts", name), args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// Server is a ZooKeeper server or Consul agent of the test's own, run by
// scripts/zk.sh or scripts/consul.sh (a single Consul server that keeps its
// state on disk), that the test can stop and start again on the same
// address with the same data. It is stopped when the test ends.
type Server struct {
	// Addr is the server's host:port.
	Addr   string
	script string
	dir    string
}

// StartServer starts a server of backend ("zk" or "consul") in a temporary
// directory of t. Like Addr, it skips (or fails, when the backend is
// required) where the backend's shared test server is missing, since the
// scripts then have not installed it.
func StartServer(t testing.TB, backend string) *Server {
	t.Helper()
	Addr(t, backend)
	s := &Server{script: backend + ".sh", dir: t.TempDir()}
	var env []string
	if backend == "consul" {
		env = []string{"COORD_CONSUL_PERSIST=1"} // a server that keeps its state, not -dev
	}
	s.Addr = Script(t, env, s.script, "start", s.dir)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// Stop stops the server; its data stays.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	Script(t, nil, s.script, "stop", s.dir)
}

// Start starts the stopped server again, on the same address with the same
// data, and returns once it serves.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if addr := Script(t, nil, s.script, "restart", s.dir); addr != s.Addr {
		t.Fatalf("the restarted server is at %s, not %s", addr, s.Addr)
	}
}

// Ensemble is a cluster of servers of one backend of the test's own, run by
// its script (zk.sh ensemble, consul.sh cluster), whose members the test
// can stop and start again. It is stopped when the test ends.
type Ensemble struct {
	// Addrs are where clients connect: every member's host:port in member
	// order (ZooKeeper), or the client agent's (Consul, whose clients talk
	// to a local agent, not to the servers).
	Addrs []string
	// N is the number of members (servers).
	N      int
	root   string
	script string
	dir    string
}

// StartEnsemble starts an ensemble of n servers of backend ("zk" or
// "consul"); like StartServer, it skips (or fails) where the backend's test
// server is missing.
func StartEnsemble(t testing.TB, backend string, n int) *Ensemble {
	t.Helper()
	Addr(t, backend)
	e, err := startEnsemble(root(t), backend, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		Script(t, nil, e.script, "stop", e.dir)
		os.RemoveAll(e.dir)
	})
	return e
}

var shared struct {
	sync.Mutex
	ens  map[string]*Ensemble
	errs map[string]error
}

// SharedEnsemble returns an ensemble of three servers of backend ("zk" or
// "consul") that the tests of this process share, started on first use;
// StopShared stops it. Like StartServer, it skips (or fails) where the
// backend's test server is missing.
func SharedEnsemble(t testing.TB, backend string) *Ensemble {
	t.Helper()
	Addr(t, backend)
	shared.Lock()
	defer shared.Unlock()
	if e := shared.ens[backend]; e != nil {
		return e
	}
	if err := shared.errs[backend]; err != nil {
		t.Fatal(err)
	}
	if shared.ens == nil {
		shared.ens, shared.errs = map[string]*Ensemble{}, map[string]error{}
	}
	e, err := startEnsemble(root(t), backend, 3)
	if err != nil {
		shared.errs[backend] = err
		t.Fatal(err)
	}
	shared.ens[backend] = e
	return e
}

// StopShared stops the ensembles SharedEnsemble started and removes their
// directories.
func StopShared() {
	shared.Lock()
	defer shared.Unlock()
	for b, e := range shared.ens {
		_, _ = runScript(e.root, nil, e.script, "stop", e.dir)
		os.RemoveAll(e.dir)
		delete(shared.ens, b)
	}
}

func startEnsemble(root, backend string, n int) (*Ensemble, error) {
	dir, err := os.MkdirTemp("", "coord-"+backend+"-ensemble-")
	if err != nil {
		return nil, err
	}
	return startEnsembleIn(root, dir, backend, n)
}

// startEnsembleIn starts the ensemble in dir, which it removes if it fails.
func startEnsembleIn(root, dir, backend string, n int) (*Ensemble, error) {
	e := &Ensemble{N: n, root: root, script: backend + ".sh", dir: dir}
	cmd := "ensemble"
	if backend == "consul" {
		cmd = "cluster"
	}
	out, err := runScript(root, nil, e.script, cmd, dir, strconv.Itoa(n))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e.Addrs = strings.Split(out, ",")
	if backend == "zk" && len(e.Addrs) != n {
		return nil, fmt.Errorf("an ensemble of %d servers at %v", n, e.Addrs)
	}
	return e, nil
}

func (e *Ensemble) member(i int) string { return filepath.Join(e.dir, "m"+strconv.Itoa(i)) }

// Stop kills member i (SIGKILL: a crash, no shutdown of its own); its data
// stays.
func (e *Ensemble) Stop(t testing.TB, i int) {
	t.Helper()
	Script(t, nil, e.script, "crash", e.member(i))
}

// Start starts stopped member i again and returns once it serves (it has
// rejoined a quorum).
func (e *Ensemble) Start(t testing.TB, i int) {
	t.Helper()
	Script(t, nil, e.script, "restart", e.member(i))
}

// Leader returns the index of the member that leads, waiting up to wait
// for the members to elect one.
func (e *Ensemble) Leader(t testing.TB, wait time.Duration) int {
	t.Helper()
	for deadline := time.Now().Add(wait); ; time.Sleep(100 * time.Millisecond) {
		out, err := exec.Command(filepath.Join(root(t), "scripts", e.script), "leader", e.dir).Output()
		if i, perr := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && perr == nil {
			return i
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader in the ensemble after %v", wait)
		}
	}
}

// ACLAgent starts a Consul agent of the test's own with ACLs on (default
// deny) and token as its management token, and returns its HTTP host:port.
// It is stopped when the test ends. ACLs take a moment after the agent's
// leader to accept the token: callers retry their first call.
func ACLAgent(t testing.TB, token string) string {
	t.Helper()
	Addr(t, "consul") // the binary is there when an agent is
	dir := t.TempDir()
	addr := Script(t, nil, "consul.sh", "start", dir, token)
	t.Cleanup(func() { _ = exec.Command(filepath.Join(root(t), "scripts", "consul.sh"), "stop", dir).Run() })
	return addr
}
