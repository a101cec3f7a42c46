// Package storeurl opens a coord.Store named by a URL:
//
//	zk://[user:password@]host:port[,host:port...][/chroot]
//	etcd://[user:password@]host:port[,host:port...][?prefix=coord]
//	consul://host:port[?prefix=coord&dc=dc1]
//	embedded:[/data/dir]   an etcd server inside the process, when
//	                       Options.Embedded says how to start one
//
// For ZooKeeper the user and password are digest credentials; for etcd,
// etcd's own. TLS options apply to ZooKeeper (its secure client port),
// etcd and Consul. A URL may name the user alone (zk://ops@host:2181) and leave
// the password to Options (Password, PasswordFile), so that it is on no
// command line. TLS and the Consul ACL token (Token or TokenFile, else the
// file $CONSUL_HTTP_TOKEN_FILE names, else $CONSUL_HTTP_TOKEN: the consul
// command's order) come from Options. No error repeats a password or a token.
package storeurl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/coord/consulstore"
	"github.com/coordkit/coord/coord/etcdstore"
	"github.com/coordkit/coord/coord/zkstore"
)

// ErrBadURL: the store URL cannot be used.
var ErrBadURL = errors.New("bad store URL")

// ErrNoStore: Options.MustExist is set and the embedded store's data
// directory holds no store.
var ErrNoStore = errors.New("no store there")

// Options complete a URL.
type Options struct {
	// DataDir is where "embedded:" keeps its data when the URL names none.
	DataDir string
	// Token is the Consul ACL token.
	Token string
	// TokenFile names a file holding the Consul ACL token (its first line),
	// instead of Token.
	TokenFile string
	// Password is the password of the user the URL names without one
	// (ZooKeeper digest, etcd). A URL with a password of its own and a
	// Password (or PasswordFile) is refused as ambiguous.
	Password string
	// PasswordFile names a file holding Password (its first line).
	PasswordFile string
	// CAFile, CertFile, KeyFile turn TLS on (ZooKeeper's secure client
	// port, etcd, Consul).
	CAFile, CertFile, KeyFile string
	// InsecureSkipVerify skips server certificate checks (tests only).
	InsecureSkipVerify bool
	// ZKLeaf, when set, names the nodes that get Codis 2's leaf ACL on
	// ZooKeeper (world:anyone rwa, see zkstore.LeafACL); the others get
	// world:anyone cdrwa. coordctl passes models.IsLeafNode.
	ZKLeaf func(path string) bool
	// SessionTimeout of ZooKeeper sessions, TTL of etcd and Consul ones.
	SessionTimeout time.Duration
	// MustExist makes Dial refuse an "embedded:" directory that holds no
	// store yet (ErrNoStore) instead of creating one: for a program that
	// only reads, a mistyped directory is then an error, not an empty store.
	MustExist bool
	// Embedded starts the server of "embedded:" URLs; without it they are
	// refused with ErrBadURL. It is a hook rather than an import so that a
	// program using storeurl for external stores does not link etcd's server.
	Embedded EmbeddedServer
}

// EmbeddedServer starts an etcd server inside the process with its data in
// dir, and returns the store configuration to reach it and a function that
// stops it. With package etcdembed:
//
//	func(dir string) (etcdstore.Config, func(), error) {
//		srv, err := etcdembed.Start(dir, etcdembed.Options{})
//		if err != nil {
//			return etcdstore.Config{}, nil, err
//		}
//		return srv.Config("coord"), srv.Close, nil
//	}
type EmbeddedServer func(dir string) (cfg etcdstore.Config, stop func(), err error)

// Conn is a resolved URL: it opens stores (each with its own session) and,
// for "embedded:", runs the server until Close.
type Conn struct {
	URL  string // the URL, any password in it redacted
	Kind string // zk, etcd, consul, embedded
	open func(ctx context.Context) (coord.Store, error)
	stop func()
}

// DefaultDataDir is where the embedded store keeps its data by default:
// $COORD_DATA_DIR, else $XDG_DATA_HOME/coordctl, else ~/.local/share/coordctl.
func DefaultDataDir() string {
	if d := os.Getenv("COORD_DATA_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "coordctl")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".coordctl"
	}
	return filepath.Join(home, ".local", "share", "coordctl")
}

// Dial resolves raw (and, for "embedded:", starts the server).
func Dial(ctx context.Context, raw string, opt Options) (*Conn, error) {
	tlsSet := opt.CAFile != "" || opt.CertFile != "" || opt.KeyFile != "" || opt.InsecureSkipVerify
	pwSet := opt.Password != "" || opt.PasswordFile != ""
	if opt.Token != "" && opt.TokenFile != "" {
		return nil, fmt.Errorf("%w: a token and a token file: give one", ErrBadURL)
	}
	if opt.Password != "" && opt.PasswordFile != "" {
		return nil, fmt.Errorf("%w: a password and a password file: give one", ErrBadURL)
	}
	if opt.TokenFile != "" {
		tok, err := secretFile("token", opt.TokenFile)
		if err != nil {
			return nil, err
		}
		opt.Token = tok
	}
	if raw == "" || raw == "embedded" || strings.HasPrefix(raw, "embedded:") {
		if tlsSet || opt.Token != "" || pwSet {
			return nil, fmt.Errorf("%w: %q: TLS options, tokens and passwords are for etcd, Consul and ZooKeeper stores; the embedded store takes none", ErrBadURL, raw)
		}
		dir := strings.TrimPrefix(strings.TrimPrefix(raw, "embedded"), ":")
		dir = strings.TrimPrefix(dir, "//")
		if dir == "" {
			dir = opt.DataDir
		}
		if dir == "" {
			dir = DefaultDataDir()
		}
		if opt.Embedded == nil {
			return nil, fmt.Errorf("%w: %q: this program has no embedded store (Options.Embedded is nil)", ErrBadURL, raw)
		}
		if opt.MustExist {
			if _, err := os.Stat(filepath.Join(dir, "etcd", "member")); err != nil {
				return nil, fmt.Errorf("%w: %s holds no embedded store (nothing was ever written there; is the data directory right?)", ErrNoStore, dir)
			}
		}
		cfg, stop, err := opt.Embedded(filepath.Join(dir, "etcd"))
		if err != nil {
			return nil, err
		}
		cfg.SessionTTL = opt.SessionTimeout
		return &Conn{URL: "embedded:" + dir, Kind: "embedded", stop: stop, open: func(ctx context.Context) (coord.Store, error) {
			return etcdstore.New(ctx, cfg)
		}}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, fmt.Errorf("%w: not a URL: %v", ErrBadURL, err)
	}
	hosts := strings.Split(u.Host, ",")
	if u.Host == "" {
		return nil, fmt.Errorf("%w: %s names no host:port", ErrBadURL, Redact(raw))
	}
	q := u.Query()
	allowed := map[string][]string{"zk": nil, "zookeeper": nil, "etcd": {"prefix", "max-txn-ops"}, "consul": {"prefix", "dc"}}
	if names, ok := allowed[u.Scheme]; ok {
		for k := range q {
			known := false
			for _, n := range names {
				known = known || k == n
			}
			if !known {
				return nil, fmt.Errorf("%w: %s: unknown parameter %q (%s:// takes %s)", ErrBadURL, Redact(raw), k, u.Scheme, paramList(names))
			}
		}
	}
	if (u.Scheme == "zk" || u.Scheme == "zookeeper") && opt.Token != "" {
		return nil, fmt.Errorf("%w: %s: a token is for Consul; ZooKeeper takes digest credentials (zk://user:password@ or zk://user@ and a password apart)", ErrBadURL, Redact(raw))
	}
	if u.Scheme == "etcd" && opt.Token != "" {
		return nil, fmt.Errorf("%w: %s: a token is for Consul; etcd takes user:password in the URL", ErrBadURL, Redact(raw))
	}
	if u.Scheme == "consul" && (u.User != nil || pwSet) {
		return nil, fmt.Errorf("%w: %s: Consul takes a token (--token, CONSUL_HTTP_TOKEN), not a user and password", ErrBadURL, Redact(raw))
	}
	if pwSet {
		if u.User == nil {
			return nil, fmt.Errorf("%w: %s: a password, but the URL names no user (scheme://user@host)", ErrBadURL, Redact(raw))
		}
		if _, has := u.User.Password(); has {
			return nil, fmt.Errorf("%w: %s: a password in the URL and another given apart: give one", ErrBadURL, Redact(raw))
		}
		pw := opt.Password
		if opt.PasswordFile != "" {
			if pw, err = secretFile("password", opt.PasswordFile); err != nil {
				return nil, err
			}
		}
		u.User = url.UserPassword(u.User.Username(), pw)
	}
	c := &Conn{URL: Redact(raw), Kind: u.Scheme}
	switch u.Scheme {
	case "zk", "zookeeper":
		cfg := zkstore.Config{Servers: hosts, Chroot: strings.TrimSuffix(u.Path, "/"), SessionTimeout: opt.SessionTimeout}
		if u.User != nil {
			pw, _ := u.User.Password()
			cfg.Auth = []zkstore.Auth{{Scheme: "digest", Secret: u.User.Username() + ":" + pw}}
		}
		if opt.ZKLeaf != nil {
			cfg.ACLFor = zkstore.LeafACL(opt.ZKLeaf)
		}
		if tlsSet {
			tc, err := tlsConfig(opt)
			if err != nil {
				return nil, err
			}
			cfg.TLS = tc
		}
		c.Kind = "zk"
		c.open = func(ctx context.Context) (coord.Store, error) { return zkstore.New(ctx, cfg) }
	case "etcd":
		cfg := etcdstore.Config{Prefix: q.Get("prefix"), SessionTTL: opt.SessionTimeout}
		if v := q.Get("max-txn-ops"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 2 {
				return nil, fmt.Errorf("%w: max-txn-ops=%q: the cluster's --max-txn-ops, 2 or more", ErrBadURL, v)
			}
			cfg.MaxTxnOps = n
		}
		scheme := "http://"
		if opt.CAFile != "" || opt.CertFile != "" || opt.InsecureSkipVerify {
			tc, err := tlsConfig(opt)
			if err != nil {
				return nil, err
			}
			cfg.TLS, scheme = tc, "https://"
		}
		for _, h := range hosts {
			cfg.Endpoints = append(cfg.Endpoints, scheme+h)
		}
		if u.User != nil {
			cfg.Username = u.User.Username()
			cfg.Password, _ = u.User.Password()
		}
		c.open = func(ctx context.Context) (coord.Store, error) { return etcdstore.New(ctx, cfg) }
	case "consul":
		if len(hosts) != 1 {
			return nil, fmt.Errorf("%w: consul:// takes one agent address", ErrBadURL)
		}
		cfg := consulstore.Config{Address: hosts[0], Prefix: q.Get("prefix"), Datacenter: q.Get("dc"), Token: opt.Token, SessionTTL: opt.SessionTimeout}
		// The consul command's order: a token given, then the file
		// CONSUL_HTTP_TOKEN_FILE names, then CONSUL_HTTP_TOKEN.
		if f := os.Getenv("CONSUL_HTTP_TOKEN_FILE"); cfg.Token == "" && f != "" {
			tok, err := secretFile("token (CONSUL_HTTP_TOKEN_FILE)", f)
			if err != nil {
				return nil, err
			}
			cfg.Token = tok
		}
		if cfg.Token == "" {
			cfg.Token = os.Getenv("CONSUL_HTTP_TOKEN")
		}
		if opt.CAFile != "" || opt.CertFile != "" || opt.InsecureSkipVerify {
			cfg.Scheme = "https"
			cfg.TLS = api.TLSConfig{CAFile: opt.CAFile, CertFile: opt.CertFile, KeyFile: opt.KeyFile, InsecureSkipVerify: opt.InsecureSkipVerify}
		}
		c.open = func(ctx context.Context) (coord.Store, error) { return consulstore.New(ctx, cfg) }
	default:
		return nil, fmt.Errorf("%w: %s: the scheme must be zk, etcd, consul or embedded", ErrBadURL, Redact(raw))
	}
	return c, nil
}

// Open opens a store, with a session of its own.
func (c *Conn) Open(ctx context.Context) (coord.Store, error) { return c.open(ctx) }

// Close stops the embedded server, if any (its data stays).
func (c *Conn) Close() {
	if c.stop != nil {
		c.stop()
	}
}

// secretFile reads a password or token from the first line of the file
// at path; errors name the file, never what it holds.
func secretFile(what, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("%w: %s file %s: %v", ErrBadURL, what, path, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%w: %s file %s: its first line is empty", ErrBadURL, what, path)
	}
	return line, nil
}

func tlsConfig(opt Options) (*tls.Config, error) {
	tc := &tls.Config{InsecureSkipVerify: opt.InsecureSkipVerify} //nolint:gosec // an explicit option
	if opt.CAFile != "" {
		pem, err := os.ReadFile(opt.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: CA file: %v", ErrBadURL, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s holds no certificate", ErrBadURL, opt.CAFile)
		}
		tc.RootCAs = pool
	}
	if opt.CertFile != "" || opt.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(opt.CertFile, opt.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate: %v", ErrBadURL, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func paramList(names []string) string {
	if len(names) == 0 {
		return "no parameters"
	}
	return strings.Join(names, ", ")
}

// Redact returns raw with any password in it replaced by "xxxxx", for
// messages and logs.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
