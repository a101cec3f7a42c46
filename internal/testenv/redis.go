package testenv

import (
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"
)

// RedisServer starts a throw-away redis-server (Debian's redis-server
// package) on a free loopback port, with requirepass when passwd is set,
// and stops it when t ends. Without the binary the test is skipped, or
// failed when COORD_TEST_REQUIRE lists redis.
func RedisServer(t testing.TB, passwd string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "no redis-server: install Debian's redis-server package (scripts/test.sh does)"
		if Required("redis") {
			t.Fatal(msg + " (COORD_TEST_REQUIRE lists redis)")
		}
		t.Skip(msg)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	args := []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--loglevel", "warning"}
	if passwd != "" {
		args = append(args, "--requirepass", passwd, "--masterauth", passwd)
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; i < 100; i++ {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("redis-server on %s did not start", addr)
	return ""
}

// ClosedPort returns a loopback address nothing listens on (a port just
// taken and released), for "unreachable" without leaving loopback.
func ClosedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
