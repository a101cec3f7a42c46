package consulstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/coordkit/coord/coord"
)

// TestMapErrTooLarge: only an answer that says so is ErrTooLarge. A lost
// reply from an agent whose port holds "413" is ErrUnavailable (it was taken
// for ErrTooLarge, and a create that had been applied was not resolved).
func TestMapErrTooLarge(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		err     error
		tooBig  bool
		outcome string
	}{
		{&url.Error{Op: "Put", URL: "http://127.0.0.1:41333/v1/txn?consistent=", Err: io.EOF}, false, "a lost reply from port 41333"},
		{fmt.Errorf("Unexpected response code: 413 (Request body too large)"), true, "a 413 in the api's text"},
		{api.StatusError{Code: 413, Body: "too big"}, true, "a 413 StatusError"},
		{fmt.Errorf("Failed request: Request body(600000 bytes) too large, max size: 524288 bytes"), true, "a txn refused for its size"},
		{&url.Error{Op: "Get", URL: "http://127.0.0.1:8500/v1/kv/a413", Err: io.ErrUnexpectedEOF}, false, "a key holding 413"},
	} {
		got := mapErr(ctx, c.err)
		if errors.Is(got, coord.ErrTooLarge) != c.tooBig {
			t.Errorf("%s: %v, ErrTooLarge %v, want %v", c.outcome, got, errors.Is(got, coord.ErrTooLarge), c.tooBig)
		}
		if !c.tooBig && !errors.Is(got, coord.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", c.outcome, got)
		}
	}
}
