package zkstore

import (
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/go-zookeeper/zk"
)

// Which failures a write may be sent again after: only those that show it
// was never applied. A write to a connection already closed (the client
// drops an expired session's connection) was never sent; a connection
// closed after sending may have been applied.
func TestRetryableOnlyWhenNotSent(t *testing.T) {
	closedWrite := &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}
	for _, c := range []struct {
		name        string
		err         error
		write, read bool
	}{
		{"no server", zk.ErrNoServer, true, true},
		{"write to a closed connection", closedWrite, true, true},
		{"wrapped write to a closed connection", fmt.Errorf("sending: %w", closedWrite), true, true},
		{"read from a closed connection", &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}, false, false},
		{"write reset", &net.OpError{Op: "write", Net: "tcp", Err: errors.New("connection reset by peer")}, false, false},
		{"connection closed after sending", zk.ErrConnectionClosed, false, true},
		{"closing", zk.ErrClosing, false, true},
		{"bad version", zk.ErrBadVersion, false, false},
		{"session expired", zk.ErrSessionExpired, false, false},
	} {
		if got := retryable(c.err, false); got != c.write {
			t.Errorf("%s: a write is retried: %v, want %v", c.name, got, c.write)
		}
		if got := retryable(c.err, true); got != c.read {
			t.Errorf("%s: a read is retried: %v, want %v", c.name, got, c.read)
		}
	}
}
