package etcdstore

import (
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestUnavailableSeesServerErrors: the errors the client library hands
// over as rpctypes.EtcdError during an election are tried again like gRPC's
// Unavailable (a children watch armed then failed at once, and a proxy
// agent stopped); refusals are not.
func TestUnavailableSeesServerErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{rpctypes.ErrLeaderChanged, true},
		{rpctypes.ErrNoLeader, true},
		{fmt.Errorf("read: %w", rpctypes.ErrTimeoutDueToLeaderFail), true},
		{rpctypes.ErrGRPCNoLeader, true},
		{rpctypes.ErrPermissionDenied, false},
		{rpctypes.ErrCompacted, false},
		{errors.New("etcdserver: leader changed"), false}, // a message alone proves nothing
	} {
		if got := unavailable(c.err); got != c.want {
			t.Errorf("unavailable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
