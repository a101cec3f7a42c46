package testenv

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coordkit/coord/internal/faultproxy"
)

// Links are the connections between the members of an ensemble started by
// StartLinkedEnsemble: each member reaches each other one through a proxy
// of its own (one per ordered pair of members and per port), so that a test
// can cut some members off from the others while their clients still reach
// them.
type Links struct {
	links map[[2]int][]*faultproxy.Proxy // [from, to]: quorum, election
}

// StartLinkedEnsemble starts an ensemble of n ZooKeeper servers, like
// StartEnsemble, whose members reach one another through Links (zk.sh
// ensemble with DIR/peers). The proxies forward to the ports the script
// gives each member, read when a connection is made. Only ZooKeeper: a
// Consul server learns its peers' addresses through gossip, the same for
// every member, so a pair of members cannot be given a route of its own on
// one loopback address.
func StartLinkedEnsemble(t testing.TB, n int) (*Ensemble, *Links) {
	t.Helper()
	Addr(t, "zk")
	dir, err := os.MkdirTemp("", "coord-zk-linked-")
	if err != nil {
		t.Fatal(err)
	}
	l := &Links{links: map[[2]int][]*faultproxy.Proxy{}}
	t.Cleanup(func() {
		for _, ps := range l.links {
			for _, p := range ps {
				p.Close()
			}
		}
	})
	var peers strings.Builder
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if i == j {
				continue
			}
			var ports []string
			for _, port := range []string{"quorum.addr", "election.addr"} {
				file := filepath.Join(dir, "m"+strconv.Itoa(j), port)
				p, err := faultproxy.NewFunc(func() (string, error) {
					b, err := os.ReadFile(file)
					return strings.TrimSpace(string(b)), err
				})
				if err != nil {
					t.Fatal(err)
				}
				// A member whose peer is still starting (a leader not yet
				// listening for its followers) refuses: through a proxy
				// that would be a connection closed once made, which a
				// follower takes as a failed leader, not as one to wait for.
				p.SetDialWait(5 * time.Second)
				l.links[[2]int{i, j}] = append(l.links[[2]int{i, j}], p)
				_, port, _ := strings.Cut(p.Addr(), ":")
				ports = append(ports, port)
			}
			fmt.Fprintf(&peers, "%d %d %s\n", i, j, strings.Join(ports, " "))
		}
	}
	// ZooKeeper keeps one election connection per pair of members, the one
	// the higher id makes: when a lower id connects, the higher one closes
	// that connection and connects back to the address the lower one gave
	// in its greeting, its own port. The proxies put the proxy of the way
	// back in its place, so that the connection made back is cut too.
	for pair, ps := range l.links {
		back := l.links[[2]int{pair[1], pair[0]}][1].Addr()
		ps[1].SetOpening(func(r io.Reader) ([]byte, error) { return zkGreeting(r, back) })
	}
	if err := os.WriteFile(filepath.Join(dir, "peers"), []byte(peers.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := startEnsembleIn(root(t), dir, "zk", n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		Script(t, nil, e.script, "stop", e.dir)
		os.RemoveAll(e.dir)
	})
	return e, l
}

// Isolate cuts member i off from every other member, both ways, as a
// partition does: what either side sends is held, connections stay open and
// new ones are taken and held too. Its clients still reach it.
func (l *Links) Isolate(i int) {
	for pair, ps := range l.links {
		if pair[0] == i || pair[1] == i {
			for _, p := range ps {
				p.Stall()
			}
		}
	}
}

// Heal ends member i's isolation. The connections held meanwhile are
// closed (a long partition's would have timed out), new ones flow.
func (l *Links) Heal(i int) error {
	for pair, ps := range l.links {
		if pair[0] == i || pair[1] == i {
			for _, p := range ps {
				p.Cut()
				if err := p.Resume(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// zkGreeting reads the greeting a ZooKeeper member sends first on an
// election connection (protocol version, id, then the length and text of
// its election address, "host:port"; a greeting of the oldest protocol is
// only the id) and returns it with addr as the address.
func zkGreeting(r io.Reader, addr string) ([]byte, error) {
	var head [20]byte
	if _, err := io.ReadFull(r, head[:8]); err != nil {
		return nil, err
	}
	if int64(binary.BigEndian.Uint64(head[:8])) >= 0 {
		return head[:8], nil // the oldest protocol: no address
	}
	if _, err := io.ReadFull(r, head[8:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[16:])
	if n > 4096 {
		return nil, fmt.Errorf("a greeting with an address of %d bytes", n)
	}
	if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint32(head[16:], uint32(len(addr)))
	return append(head[:], addr...), nil
}
