package conformance

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/goleak"
)

// TestServerGoroutines: a goroutine that an in-process server starts after
// the snapshot (here net/http serving a connection opened afterwards) is
// reported by goleak, and no longer once its functions' prefix is given.
func TestServerGoroutines(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	before := goleak.IgnoreCurrent()
	// A raw connection: the client side starts no goroutine of its own.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	// The server keeps the connection, waiting for the next request.
	if err := goleak.Find(before); err == nil {
		t.Fatal("the server's connection goroutine was not reported")
	}
	opts := append([]goleak.Option{before}, serverGoroutines([]string{"net/http.(*conn)."})...)
	if err := goleak.Find(opts...); err != nil {
		t.Fatalf("the server's goroutines, left out by prefix, were reported: %v", err)
	}
	if opts := serverGoroutines(nil); len(opts) != 0 {
		t.Fatalf("no prefixes gave %d options", len(opts))
	}
}
