package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/consul/api"
	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/consulstore"
	"github.com/coordkit/coord/coord/etcdembed"
	"github.com/coordkit/coord/coord/etcdstore"
	"github.com/coordkit/coord/coord/zkstore"
)

// backend is one server the harness measures on.
type backend struct {
	name, version string
	// open returns a new store on namespace ns; stores on one ns share
	// their nodes. The harness closes it at the end.
	open func(ctx context.Context, ns string) (coord.Store, error)
	// openProxy, if set, opens the store of a simulated Codis 2 proxy,
	// which reads as the real one does (on ZooKeeper: without a sync).
	openProxy func(ctx context.Context, ns string) (coord.Store, error)
	// newRaw returns a client of the backend's own, on the same server.
	newRaw func(ctx context.Context) (raw, error)
	raw    raw
	// rawKey is the raw client's key for a name.
	rawKey func(name string) string
	// maxTxnOps is the server's limit per transaction, as the raw client
	// counts them.
	maxTxnOps int
	stores    []coord.Store
}

func (b *backend) store(ctx context.Context, ns string) (coord.Store, error) {
	s, err := b.open(ctx, ns)
	if err == nil {
		b.stores = append(b.stores, s)
	}
	return s, err
}

func (b *backend) closeAll() {
	for _, s := range b.stores {
		_ = s.Close()
	}
	b.stores = nil
}

// runID keeps the keys of one run apart from every other's.
var runID = fmt.Sprintf("r%d", time.Now().UnixNano()%1e9)

// backendsPresent starts the etcd servers and connects to those the
// environment names.
func backendsPresent(ctx context.Context) ([]*backend, func(), error) {
	var bes []*backend
	var cleanups []func()
	cleanup := func() {
		for _, b := range bes {
			b.closeAll()
			if b.raw != nil {
				b.raw.close()
			}
		}
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	dir, err := os.MkdirTemp("", "coord-bench-")
	if err != nil {
		return nil, cleanup, err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })

	emb, err := etcdembed.Start(dir+"/embedded", etcdembed.Options{})
	if err != nil {
		return nil, cleanup, fmt.Errorf("embedded etcd: %w", err)
	}
	cleanups = append(cleanups, func() { emb.Close() })
	bes = append(bes, etcdBackend("etcd-embedded", "etcd "+version.Version+" embedded in this process (--max-txn-ops 2048)", emb.Endpoints(), 2048))

	// A standalone server: the same etcd in a process of its own, with
	// etcd's default --max-txn-ops (128).
	cmd, err := selfCommand("-serve-etcd", dir+"/standalone")
	if err != nil {
		return nil, cleanup, err
	}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, cleanup, fmt.Errorf("standalone etcd: %w", err)
	}
	cleanups = append(cleanups, func() { stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return nil, cleanup, fmt.Errorf("standalone etcd did not start: %v", err)
	}
	bes = append(bes, etcdBackend("etcd-standalone", "etcd "+version.Version+" in a process of its own (--max-txn-ops 128)", []string{strings.TrimSpace(line)}, 128))

	if addr := os.Getenv("COORD_TEST_ZK"); addr != "" {
		bes = append(bes, zkBackend(addr))
	}
	if addr := os.Getenv("COORD_TEST_CONSUL"); addr != "" {
		b, err := consulBackend(addr)
		if err != nil {
			return nil, cleanup, err
		}
		bes = append(bes, b)
	}
	for _, b := range bes {
		r, err := b.newRaw(ctx)
		if err != nil {
			return nil, cleanup, fmt.Errorf("%s: raw client: %w", b.name, err)
		}
		b.raw = r
	}
	return bes, cleanup, nil
}

func etcdBackend(name, ver string, endpoints []string, maxOps int) *backend {
	return &backend{
		name: name, version: ver + " at " + strings.Join(endpoints, ","), maxTxnOps: maxOps,
		open: func(ctx context.Context, ns string) (coord.Store, error) {
			return etcdstore.New(ctx, etcdstore.Config{Endpoints: endpoints, Prefix: "coordbench/" + ns, MaxTxnOps: maxOps})
		},
		newRaw: func(ctx context.Context) (raw, error) {
			cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
			if err != nil {
				return nil, err
			}
			return &etcdRaw{cli: cli, maxOps: maxOps}, nil
		},
		rawKey: func(n string) string { return "coordbench-raw/" + runID + "/" + n },
	}
}

func zkBackend(addr string) *backend {
	ver := os.Getenv("COORD_BENCH_ZK_VERSION")
	if ver == "" {
		ver = "ZooKeeper"
	}
	return &backend{
		name: "zk", version: ver + " at " + addr, maxTxnOps: 1 << 20,
		open: func(ctx context.Context, ns string) (coord.Store, error) {
			return zkstore.New(ctx, zkstore.Config{Servers: []string{addr}, Chroot: "/coordbench/" + ns, SessionTimeout: 10 * time.Second})
		},
		// A Codis 2 proxy reads the action, and what it names, on the
		// server that told it of the action, without a sync: that server
		// has applied everything written before the action.
		openProxy: func(ctx context.Context, ns string) (coord.Store, error) {
			return zkstore.New(ctx, zkstore.Config{Servers: []string{addr}, Chroot: "/coordbench/" + ns, SessionTimeout: 10 * time.Second, StaleReads: true})
		},
		newRaw: func(ctx context.Context) (raw, error) {
			conn, ev, err := zk.Connect([]string{addr}, 10*time.Second, zk.WithLogger(log.New(io.Discard, "", 0)))
			if err != nil {
				return nil, err
			}
			for e := range ev {
				if e.State == zk.StateHasSession {
					break
				}
			}
			go func() {
				for range ev {
				}
			}()
			return &zkRaw{conn: conn}, nil
		},
		rawKey: func(n string) string { return "/coordbench-raw/" + runID + "/" + n },
	}
}

func consulBackend(addr string) (*backend, error) {
	cfg := api.DefaultConfig() // pooled connections, as a user would have them
	cfg.Address = addr
	ver := "Consul"
	if cli, err := api.NewClient(cfg); err == nil {
		if self, err := cli.Agent().Self(); err == nil {
			if v, ok := self["Config"]["Version"].(string); ok {
				ver = "Consul " + v
			}
		}
	}
	return &backend{
		name: "consul", version: ver + " at " + addr, maxTxnOps: 128,
		open: func(ctx context.Context, ns string) (coord.Store, error) {
			return consulstore.New(ctx, consulstore.Config{Address: addr, Prefix: "coordbench/" + ns})
		},
		newRaw: func(ctx context.Context) (raw, error) {
			cli, err := api.NewClient(cfg)
			if err != nil {
				return nil, err
			}
			return &consulRaw{cli: cli, maxOps: 128}, nil
		},
		rawKey: func(n string) string { return "coordbench-raw/" + runID + "/" + n },
	}, nil
}

// serveEtcd is the standalone etcd's process: it serves until its standard
// input closes (the harness ended) or it is told to stop.
func serveEtcd(dir string) {
	srv, err := etcdembed.Start(dir, etcdembed.Options{MaxTxnOps: 128})
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: standalone etcd: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(srv.Endpoints()[0])
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case <-done:
	case <-sig:
	}
	srv.Close()
}
