package models_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/backends"
	"github.com/coordkit/coord/models"
)

// TestDashboardSingleton: R/dashboard is one ephemeral node with Codis 2's
// bytes; a second dashboard is refused naming the first; it goes with its
// session; a persistent one left by Codis 2 is named as such.
func TestDashboardSingleton(t *testing.T) {
	backends.Run(t, func(t *testing.T, open func() coord.Store) {
		ctx := ctxT(t)
		a, b := open(), open()
		d, err := models.RegisterDashboard(ctx, a, product, "127.0.0.1:18087")
		must(t, err)
		p := models.GetDashboardPath(product)
		if got, want := raw(t, b, p), fmt.Sprintf(`{"addr": "127.0.0.1:18087", "pid": %d}`, os.Getpid()); got != want {
			t.Fatalf("R/dashboard holds %s, want %s", got, want)
		}
		if st, _, _ := b.Exists(ctx, p); !st.Ephemeral {
			t.Fatal("R/dashboard is not ephemeral")
		}
		_, err = models.RegisterDashboard(ctx, b, product, "127.0.0.1:18088")
		is(t, err, models.ErrDashboardRunning)
		if !strings.Contains(err.Error(), "127.0.0.1:18087") || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
			t.Fatalf("the refusal does not name the holder: %v", err)
		}
		_, err = models.RegisterDashboard(ctx, a, product, "127.0.0.1:18089") // the same session
		is(t, err, models.ErrDashboardRunning)
		info, err := models.GetDashboard(ctx, b, product)
		must(t, err)
		if info.Addr != "127.0.0.1:18087" || info.Pid != os.Getpid() {
			t.Fatalf("GetDashboard: %+v", info)
		}
		_, err = models.RegisterDashboard(ctx, b, product, "bad addr")
		is(t, err, models.ErrInvalidArgument)

		// Close hands over; a closed store's node goes at once.
		must(t, d.Close(ctx))
		d2, err := models.RegisterDashboard(ctx, b, product, "127.0.0.1:18088")
		must(t, err)
		must(t, d.Close(ctx)) // not its node any more: left alone
		if info, _ := models.GetDashboard(ctx, a, product); info == nil || info.Addr != "127.0.0.1:18088" {
			t.Fatalf("an old registration's Close removed the new one: %+v", info)
		}
		must(t, b.Close())
		<-d2.Done()
		c := open()
		d3, err := models.RegisterDashboard(ctx, c, product, "127.0.0.1:18090")
		must(t, err)
		must(t, d3.Close(ctx))
		_, err = models.GetDashboard(ctx, c, product)
		is(t, err, coord.ErrNoNode)

		// What Codis 2 leaves: a persistent node.
		_, err = c.Create(ctx, p, []byte(`{"addr": "10.0.0.9:18087", "pid": 77}`), coord.Persistent)
		must(t, err)
		_, err = models.RegisterDashboard(ctx, a, product, "127.0.0.1:18087")
		is(t, err, models.ErrDashboardRunning)
		if !strings.Contains(err.Error(), "persistent") || !strings.Contains(err.Error(), "pid 77") {
			t.Fatalf("the refusal does not say a Codis 2 node is in the way: %v", err)
		}
		// Foreign bytes are reported as such, not as a dashboard.
		_, err = c.Set(ctx, p, []byte("not json"), coord.AnyVersion)
		must(t, err)
		_, err = models.GetDashboard(ctx, c, product)
		is(t, err, models.ErrMalformed)
	})
}
