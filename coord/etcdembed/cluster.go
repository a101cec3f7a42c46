package etcdembed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/coordkit/coord/coord/etcdstore"
)

// Cluster is an etcd cluster whose members all run inside this process, each
// on its own loopback ports and data directory. Members can be stopped and
// started again, so that a test sees what clients do when a follower, the
// leader or the quorum goes away, and when it comes back.
type Cluster struct {
	dir     string
	opt     Options
	members []member

	mu      sync.Mutex
	running []*Server // nil while stopped
}

// StartCluster starts an n-member cluster with its data in dir/m0 ...
// dir/m<n-1> (dir is created if missing) and returns once every member serves
// clients. Options apply to every member, but for ClientPort and PeerPort,
// which must be 0: each member gets free loopback ports of its own. Close it
// when done.
func StartCluster(dir string, n int, opt Options) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("etcdembed: a cluster of %d members", n)
	}
	if opt.ClientPort != 0 || opt.PeerPort != 0 {
		return nil, errors.New("etcdembed: a cluster's members take free ports (ClientPort and PeerPort must be 0)")
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ { // a free port may be taken before etcd binds it
		c, err := startCluster(dir, n, opt, attempt)
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("etcdembed: cluster in %s: %w", dir, lastErr)
}

func startCluster(dir string, n int, opt Options, attempt int) (*Cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, opt: opt, members: make([]member, n), running: make([]*Server, n)}
	var initial []string
	for i := range c.members {
		m := member{name: "m" + strconv.Itoa(i), ports: [2]int{ports[2*i], ports[2*i+1]}}
		initial = append(initial, m.name+"="+m.peerURL().String())
		c.members[i] = m
	}
	token := fmt.Sprintf("coord-%d-%d-%d", os.Getpid(), time.Now().UnixNano(), attempt)
	for i := range c.members {
		c.members[i].cluster = strings.Join(initial, ",")
		c.members[i].token = token
		// A member's directory holds the cluster it was made for: a new
		// cluster starts from empty ones.
		if err := os.RemoveAll(c.memberDir(i)); err != nil {
			return nil, err
		}
	}
	// Members start together: none is ready before a quorum has joined.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c.running[i], errs[i] = c.startMember(i)
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) memberDir(i int) string { return filepath.Join(c.dir, "m"+strconv.Itoa(i)) }

func (c *Cluster) startMember(i int) (*Server, error) {
	dir := c.memberDir(i)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	cfg := config(dir, c.opt, c.members[i])
	e, err := embed.StartEtcd(cfg)
	if err == nil {
		err = ready(e)
	}
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("member %d: %w", i, err)
	}
	return &Server{lock: lock, etcd: e, dir: dir, maxTxnOps: int(cfg.MaxTxnOps), ports: c.members[i].ports}, nil
}

// Size is the number of members, running or stopped.
func (c *Cluster) Size() int { return len(c.members) }

// Endpoints are the client URLs of every member, running or stopped, to
// give Config.Endpoints: the client moves to another member when one stops.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.members {
		scheme := "http"
		if c.opt.CertFile != "" || c.opt.KeyFile != "" {
			scheme = "https"
		}
		out = append(out, fmt.Sprintf("%s://127.0.0.1:%d", scheme, m.ports[0]))
	}
	return out
}

// Config returns a store configuration for this cluster: every member's
// endpoint and the members' limits, with the given key prefix.
func (c *Cluster) Config(prefix string) etcdstore.Config {
	max := 2048
	if c.opt.MaxTxnOps > 0 {
		max = int(c.opt.MaxTxnOps)
	}
	return etcdstore.Config{Endpoints: c.Endpoints(), Prefix: prefix, MaxTxnOps: max}
}

// Member returns member i while it runs (nil while it is stopped).
func (c *Cluster) Member(i int) *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running[i]
}

// Leader returns the index of the member that the running members take as
// their leader, or -1 while they have none (an election, or no quorum).
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.running {
		if s == nil {
			continue
		}
		lead := s.etcd.Server.Leader()
		for j, t := range c.running {
			if t != nil && t.etcd.Server.MemberID() == lead {
				return j
			}
		}
	}
	return -1
}

// Follower returns the index of a running member that is not the leader,
// or -1 if there is none.
func (c *Cluster) Follower() int {
	lead := c.Leader()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.running {
		if s != nil && i != lead {
			return i
		}
	}
	return -1
}

// Stop stops member i (as a crash would, but for its data, which stays);
// Start brings it back. Stopping a stopped member does nothing.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.running[i]
	c.running[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

// Start starts stopped member i again on its ports and data, and returns
// once it serves clients (which needs a quorum of members running).
// Starting a running member does nothing.
func (c *Cluster) Start(i int) error {
	c.mu.Lock()
	running := c.running[i] != nil
	c.mu.Unlock()
	if running {
		return nil
	}
	s, err := c.startMember(i)
	if err != nil {
		return fmt.Errorf("etcdembed: %w", err)
	}
	c.mu.Lock()
	c.running[i] = s
	c.mu.Unlock()
	return nil
}

// Isolate cuts running member i off from every other running member, both
// ways, as a network partition would: its clients still reach it, and no
// message passes between it and a peer (etcd's transport drops them, as in
// etcd's own integration tests). A leader so isolated keeps answering its
// clients until it finds it has lost the quorum. Heal joins it again.
func (c *Cluster) Isolate(i int) { c.cut(i, true) }

// Heal undoes Isolate(i).
func (c *Cluster) Heal(i int) { c.cut(i, false) }

func (c *Cluster) cut(i int, cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.running[i]
	if a == nil {
		return
	}
	for j, b := range c.running {
		if j == i || b == nil {
			continue
		}
		if cut {
			a.etcd.Server.CutPeer(b.etcd.Server.MemberID())
			b.etcd.Server.CutPeer(a.etcd.Server.MemberID())
		} else {
			a.etcd.Server.MendPeer(b.etcd.Server.MemberID())
			b.etcd.Server.MendPeer(a.etcd.Server.MemberID())
		}
	}
}

// Close stops every member; their data stays in the cluster's directory.
func (c *Cluster) Close() {
	for i := range c.members {
		c.Stop(i)
	}
}
