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
	"net"
	"os"
	"strings"
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
