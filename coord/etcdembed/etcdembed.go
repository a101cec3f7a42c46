// Package etcdembed runs an etcd server inside the process, on loopback
// ports, for tests, demos and single-machine use; etcdstore talks to it like
// to any other etcd cluster.
//
// It lives apart from etcdstore on purpose: etcdstore links only etcd's
// client, so a program that talks to an external cluster stays small. Import
// etcdembed only where a server must run in-process.
package etcdembed

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/coordkit/coord/coord/etcdstore"
)

// ErrInUse: another server (of this process or another) runs on the data
// directory. The error names the holder's pid.
var ErrInUse = errors.New("the data directory is in use")

var errBusy = errors.New("busy")

// LockFile is the file in the data directory that a running server holds
// locked (flock), with its pid in it.
const LockFile = "coord.lock"

// Server is an etcd server running inside this process, on loopback ports.
type Server struct {
	lock      *os.File
	etcd      *embed.Etcd
	dir       string
	maxTxnOps int
	ports     [2]int // client, peer
}

// Options tune Start; the zero value is fine.
type Options struct {
	// MaxTxnOps is the server's limit on etcd ops per transaction (2048
	// when 0, so that a coord transaction can hold 1024 ops: all the slots
	// of a Codis product).
	MaxTxnOps uint
	// LogLevel is etcd's log level (debug, info, warn, error); the server
	// logs nothing when it is empty.
	LogLevel string
	// ClientPort and PeerPort are the loopback ports to listen on (a free
	// port each when 0). Give a stopped server's ports (Server.Ports) to
	// start it again where its clients look for it.
	ClientPort, PeerPort int
	// CertFile and KeyFile, when set, make the server serve its clients
	// over TLS (https://) with that certificate. ClientCAFile, when set
	// too, makes it refuse a client that does not present a certificate
	// signed by that CA. Peers (there are none) stay on plain http.
	CertFile, KeyFile, ClientCAFile string
}

// Start starts a single-member etcd server keeping its data in dir
// (created if missing; data already there is reused, so a later start finds
// it again) and listening on free loopback ports. It returns once the server
// serves clients. Close it when done.
//
// Only one server at a time runs on a directory: while one runs, Start
// fails at once with ErrInUse naming its pid (etcd alone would make the
// second wait, silently, for as long as the first runs).
func Start(dir string, opt Options) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcdembed: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s, err := startAttempts(dir, opt)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

// lockDir takes the directory's lock file and writes this process's pid in it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("etcdembed: %w", err)
	}
	if err := tryLock(f); err != nil {
		f.Close()
		if errors.Is(err, errBusy) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					holder = "pid " + strconv.Itoa(pid)
					if pid == os.Getpid() {
						holder += " (this process)"
					}
				}
			}
			return nil, fmt.Errorf("etcdembed: %s: %w by %s", dir, ErrInUse, holder)
		}
		return nil, fmt.Errorf("etcdembed: locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func startAttempts(dir string, opt Options) (*Server, error) {
	attempts := 5 // a free port may be taken before etcd binds it
	if opt.ClientPort != 0 && opt.PeerPort != 0 {
		attempts = 1 // the same ports would fail the same way
	}
	var lastErr error
	for attempt := 0; attempt < attempts; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			return nil, fmt.Errorf("etcdembed: %w", err)
		}
		if opt.ClientPort != 0 {
			ports[0] = opt.ClientPort
		}
		if opt.PeerPort != 0 {
			ports[1] = opt.PeerPort
		}
		m := member{name: "coord", ports: [2]int{ports[0], ports[1]}}
		m.cluster = m.name + "=" + m.peerURL().String()
		cfg := config(dir, opt, m)
		e, err := embed.StartEtcd(cfg)
		if err == nil {
			err = ready(e)
		}
		if err == nil {
			return &Server{etcd: e, dir: dir, maxTxnOps: int(cfg.MaxTxnOps), ports: m.ports}, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("etcdembed: etcd in %s: %w", dir, lastErr)
}

// member is what one server of a cluster is started with.
type member struct {
	name    string
	ports   [2]int // client, peer
	cluster string // the initial cluster: name=peer URL, ...
	token   string // the initial cluster token (etcd's default when empty)
}

func (m member) peerURL() *url.URL {
	return &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", m.ports[1])}
}

// config is the embedded server's configuration for member m in dir.
func config(dir string, opt Options, m member) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = dir
	if opt.LogLevel == "" {
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	} else {
		cfg.LogLevel = opt.LogLevel
	}
	cfg.MaxTxnOps = 2048
	if opt.MaxTxnOps > 0 {
		cfg.MaxTxnOps = opt.MaxTxnOps
	}
	scheme := "http"
	if opt.CertFile != "" || opt.KeyFile != "" {
		scheme = "https"
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: opt.CertFile, KeyFile: opt.KeyFile, TrustedCAFile: opt.ClientCAFile, ClientCertAuth: opt.ClientCAFile != ""}
	}
	client := url.URL{Scheme: scheme, Host: fmt.Sprintf("127.0.0.1:%d", m.ports[0])}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*m.peerURL()}, []url.URL{*m.peerURL()}
	cfg.InitialCluster = m.cluster
	if m.token != "" {
		cfg.InitialClusterToken = m.token
	}
	return cfg
}

// ready waits until e serves clients (a member of a cluster: until the
// cluster has a leader and e has joined it), and closes e if it cannot.
func ready(e *embed.Etcd) error {
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		e.Close()
		return err
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("not ready after 60s")
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Endpoints are the client URLs to give Config.Endpoints.
func (e *Server) Endpoints() []string {
	var out []string
	for _, u := range e.etcd.Config().AdvertiseClientUrls {
		out = append(out, u.String())
	}
	return out
}

// Config returns a store configuration for this server: its endpoints and
// limits, with the given key prefix.
func (e *Server) Config(prefix string) etcdstore.Config {
	return etcdstore.Config{Endpoints: e.Endpoints(), Prefix: prefix, MaxTxnOps: e.maxTxnOps}
}

// Ports are the client and peer ports the server listens on.
func (e *Server) Ports() (client, peer int) { return e.ports[0], e.ports[1] }

// Dir is the data directory.
func (e *Server) Dir() string { return e.dir }

// Close stops the server and frees the directory; its data stays in Dir.
func (e *Server) Close() {
	e.etcd.Close()
	if e.lock != nil {
		e.lock.Close()
	}
}
