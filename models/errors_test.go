package models

import (
	"errors"
	"fmt"
	"testing"

	"github.com/coordkit/coord/coord"
)

// TestErrorNamesPackageOnce: a models error wrapping another (directly or
// through fmt.Errorf's %w at the front) says "models: " once, keeps every
// layer, and still matches the sentinels of each.
func TestErrorNamesPackageOnce(t *testing.T) {
	leaf := &coord.PathError{Op: "get", Path: "/zk/codis/db_x/slots/slot_1", Err: coord.ErrNoNode}
	inner := errorf("GetSlot", "slot 1", leaf)
	for _, c := range []struct {
		err  error
		want string
	}{
		{errorf("SetSlotRange", "0..1", inner), "models: SetSlotRange 0..1: GetSlot slot 1: coord: get /zk/codis/db_x/slots/slot_1: node does not exist"},
		{errorf("Promote", "", fmt.Errorf("%w (while promoting)", inner)), "models: Promote: GetSlot slot 1: coord: get /zk/codis/db_x/slots/slot_1: node does not exist (while promoting)"},
		{errorf("Promote", "", fmt.Errorf("step: %w", inner)), "models: Promote: step: models: GetSlot slot 1: coord: get /zk/codis/db_x/slots/slot_1: node does not exist"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
		var me *Error
		if !errors.Is(c.err, coord.ErrNoNode) || !errors.As(c.err, &me) {
			t.Errorf("%q lost its chain", c.err)
		}
	}
	if got := (&Error{Op: "X"}).Error(); got != "models: X: <nil>" {
		t.Errorf("nil Err: %q", got)
	}
}
