package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/coordkit/coord/coord"
)

// ErrDashboardRunning: another dashboard holds R/dashboard.
var ErrDashboardRunning = errors.New("a dashboard is already running")

// DashboardInfo is what R/dashboard holds: {"addr": "<host:port>", "pid": <n>}.
type DashboardInfo struct {
	Addr string `json:"addr"`
	Pid  int    `json:"pid"`
}

// Dashboard is this process's registration as the product's one dashboard:
// the ephemeral node R/dashboard, owned by the store's session. Codis 2 made
// the node persistent, so that a dashboard that crashed kept every later one
// out until the node was removed by hand.
type Dashboard struct {
	store coord.Store
	path  string
	sess  coord.Session
	info  DashboardInfo
}

// RegisterDashboard makes this process the product's dashboard at addr. A
// second one, of this process or another, Codis 2's included, is refused
// with ErrDashboardRunning naming the holder's address and pid (and, for a
// persistent node a Codis 2 dashboard left, how to clear it). The node goes
// when Close is called or the store's session ends (Done).
func RegisterDashboard(ctx context.Context, store coord.Store, productName, addr string) (*Dashboard, error) {
	const op = "RegisterDashboard"
	if err := ValidateProductName(productName); err != nil {
		return nil, errorf(op, "", err)
	}
	if err := ValidateAddr(addr); err != nil {
		return nil, errorf(op, productName, fmt.Errorf("%w: dashboard %v", ErrInvalidArgument, err))
	}
	info := DashboardInfo{Addr: addr, Pid: os.Getpid()}
	quoted, _ := json.Marshal(addr)
	// Byte for byte what Codis 2 writes (it formats the JSON by hand).
	data := []byte(fmt.Sprintf(`{"addr": %s, "pid": %d}`, quoted, info.Pid))
	if err := coord.MkdirAll(ctx, store, ProductPath(productName)); err != nil {
		return nil, errorf(op, ProductPath(productName), err)
	}
	sess, err := store.Session(ctx)
	if err != nil {
		return nil, errorf(op, productName, err)
	}
	p := GetDashboardPath(productName)
	if _, err := store.Create(ctx, p, data, coord.Ephemeral); errors.Is(err, coord.ErrNodeExists) {
		holder, st, gerr := getDashboard(ctx, store, productName)
		switch {
		case errors.Is(gerr, coord.ErrNoNode):
			return nil, errorf(op, p, fmt.Errorf("%w: its node came and went; try again", ErrDashboardRunning))
		case gerr != nil:
			return nil, errorf(op, p, fmt.Errorf("%w: %w", ErrDashboardRunning, gerr))
		case !st.Ephemeral:
			return nil, errorf(op, p, fmt.Errorf("%w: at %s (pid %d), by a persistent node as Codis 2 leaves it; if no dashboard runs there, delete %s", ErrDashboardRunning, holder.Addr, holder.Pid, p))
		default:
			return nil, errorf(op, p, fmt.Errorf("%w: at %s (pid %d)", ErrDashboardRunning, holder.Addr, holder.Pid))
		}
	} else if err != nil {
		return nil, errorf(op, p, err)
	}
	return &Dashboard{store: store, path: p, sess: sess, info: info}, nil
}

// GetDashboard returns what R/dashboard holds (coord.ErrNoNode: no
// dashboard).
func GetDashboard(ctx context.Context, store coord.Store, productName string) (*DashboardInfo, error) {
	if err := ValidateProductName(productName); err != nil {
		return nil, errorf("GetDashboard", "", err)
	}
	info, _, err := getDashboard(ctx, store, productName)
	return info, err
}

func getDashboard(ctx context.Context, store coord.Store, productName string) (*DashboardInfo, coord.Stat, error) {
	p := GetDashboardPath(productName)
	data, st, err := store.Get(ctx, p)
	if err != nil {
		return nil, st, errorf("GetDashboard", p, err)
	}
	var info DashboardInfo
	if err := decode(p, data, &info); err != nil {
		return nil, st, err
	}
	return &info, st, nil
}

// Info is what this dashboard registered.
func (d *Dashboard) Info() DashboardInfo { return d.info }

// Done is closed when the registration has ended with the store's session
// (expiry, Close of the store): another dashboard may have started since.
func (d *Dashboard) Done() <-chan struct{} { return d.sess.Done() }

// Close removes R/dashboard if it is still this registration's node.
func (d *Dashboard) Close(ctx context.Context) error {
	st, ok, err := d.store.Exists(ctx, d.path)
	if err != nil {
		return errorf("Dashboard.Close", d.path, err)
	}
	if !ok || !st.Ephemeral || st.Owner != d.sess.ID() {
		return nil // gone with its session, perhaps replaced
	}
	err = d.store.Delete(ctx, d.path, st.Version)
	if errors.Is(err, coord.ErrNoNode) || errors.Is(err, coord.ErrBadVersion) {
		err = nil
	}
	return errorf("Dashboard.Close", d.path, err)
}
