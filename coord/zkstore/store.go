// Package zkstore is the coord.Store backend on ZooKeeper
// (github.com/go-zookeeper/zk).
//
// Nodes are plain ZooKeeper znodes: the data is stored unchanged, ephemeral
// and sequential nodes are ZooKeeper's own, the coord version is the znode's
// data version and transactions are ZooKeeper multi-ops. Data written here is
// what zkCli.sh, Codis 2.x proxies and any other ZooKeeper client read. Nodes
// get the world ACL unless Config.ACL says otherwise.
//
// Watches are one-shot ZooKeeper watches re-armed by the read that reports
// the state, so no change is missed; the client library re-registers them
// after a reconnect within the session, and they are re-armed on a new
// session after an expiry.
package zkstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/lifecycle"
	"github.com/coordkit/coord/internal/resolve"
)

// Config configures a Store.
type Config struct {
	// Servers are the ZooKeeper servers, "host:port".
	Servers []string
	// Chroot, when set ("/apps/codis"), roots every path of the store there;
	// the chroot node is created when missing.
	Chroot string
	// SessionTimeout asks the server for a session timeout (10s when 0; the
	// server bounds it between 2 and 20 ticks).
	SessionTimeout time.Duration
	// RequestTimeout bounds a call whose context has no deadline (15s when
	// 0): a server that does not answer in time gives ErrUnavailable.
	RequestTimeout time.Duration
	// ConnectTimeout bounds the first connection (10s when 0).
	ConnectTimeout time.Duration
	// Auth holds credentials added to the connection, such as
	// {"digest", "user:password"}.
	Auth []Auth
	// ACL is given to every node created (world:anyone with all permissions
	// when nil, which is what Codis 2 tools expect).
	ACL []zk.ACL
	// ACLFor, when set, gives the ACL of each node created, by its path in
	// the store (below Chroot); a nil result means ACL. Codis 2 gives its
	// leaf nodes read, write and admin only: LeafACL(models.IsLeafNode).
	ACLFor func(path string) []zk.ACL
	// Dialer, when set, makes the TCP connections (for tunnels and tests).
	Dialer zk.Dialer
	// TLS, when set, speaks TLS to the servers (ZooKeeper's secure client
	// port: secureClientPort, with the Netty connection factory) over the
	// connections Dialer (or net.DialTimeout) makes. Without a ServerName,
	// each server's host is checked against its certificate.
	TLS *tls.Config
	// Logger receives the client library's log lines (discarded when nil).
	Logger zk.Logger
	// StaleReads, when true, lets Get, Exists and Children answer from the
	// connected server's state as it is, which on an ensemble may lag
	// behind writes other clients have seen acknowledged. When false (the
	// default) each of them first syncs that server with the leader
	// (ZooKeeper's sync, one more round trip), so that it sees every write
	// acknowledged before the call, as on the other backends. Watches are
	// not synced: their first state may lag, and the events that follow
	// bring them up to date.
	StaleReads bool
}

// LeafACL returns a Config.ACLFor that gives the nodes isLeaf reports
// world:anyone with read, write and admin permissions (no create or delete of
// children: what Codis 2 gives its leaf nodes), and the others Config.ACL.
func LeafACL(isLeaf func(path string) bool) func(path string) []zk.ACL {
	leaf := zk.WorldACL(zk.PermRead | zk.PermWrite | zk.PermAdmin)
	return func(path string) []zk.ACL {
		if isLeaf(path) {
			return leaf
		}
		return nil
	}
}

// Auth is one credential for zk.Conn.AddAuth.
type Auth struct {
	Scheme string // "digest"
	Secret string // "user:password"
}

// Store is a coord.Store on ZooKeeper.
type Store struct {
	chroot string
	acl    []zk.ACL
	aclFn  func(path string) []zk.ACL
	reqTO  time.Duration
	dial   func() (*zk.Conn, <-chan zk.Event, *guard, error)

	mu      sync.Mutex
	conn    *zk.Conn        // replaced when the guard takes its session as lost
	guard   *guard          // conn's
	life    lifecycle.State // the store's: ended by Close
	sess    *session
	newSess chan struct{} // closed and replaced when a session is established
	watches watchSet
	stale   bool           // Config.StaleReads
	zxid    resolve.Stamp  // the largest zxid a reply carried
	claims  resolve.Claims // nodes that creates with lost replies took

	dropWrite atomic.Bool // a test's fault: lose the next create or multi on its way
}

// dropped reports (once) that a test made the next write get lost on its
// way: the connection closed before the request was sent on.
func (s *Store) dropped() error {
	if s.dropWrite.CompareAndSwap(true, false) {
		return zk.ErrConnectionClosed
	}
	return nil
}

var _ coord.Store = (*Store)(nil)

// The server refuses packets over jute.maxbuffer (1 MiB less one byte by
// default); keep room for the path, ACL and framing.
const (
	maxPacket    = 1<<20 - 1
	maxValueSize = maxPacket - 8<<10
	maxTxnOps    = 2048
	// txnOpBytes is Limits.TxnOpBytes: an op of a multi beside its data
	// (header, version, flags, an ACL and a path of ordinary length).
	txnOpBytes = 160
)

type nopLogger struct{}

func (nopLogger) Printf(string, ...interface{}) {}

// New connects to ZooKeeper and waits for a session.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Servers) == 0 {
		return nil, coord.Errorf("connect", "", fmt.Errorf("%w: no servers", coord.ErrInvalidArgument))
	}
	if cfg.Chroot != "" && cfg.Chroot != "/" {
		if err := coord.ValidatePath(cfg.Chroot); err != nil {
			return nil, coord.Errorf("connect", cfg.Chroot, err)
		}
	}
	st := &Store{chroot: strings.TrimSuffix(cfg.Chroot, "/"), acl: cfg.ACL, aclFn: cfg.ACLFor, reqTO: cfg.RequestTimeout,
		newSess: make(chan struct{}), stale: cfg.StaleReads}
	if st.acl == nil {
		st.acl = zk.WorldACL(zk.PermAll)
	}
	if st.reqTO == 0 {
		st.reqTO = 15 * time.Second
	}
	timeout := cfg.SessionTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = nopLogger{}
	}
	st.dial = func() (*zk.Conn, <-chan zk.Event, *guard, error) {
		g := newGuard(&st.zxid)
		conn, events, err := connect(cfg.Servers, timeout, g.dialer(tlsDialer(baseDialer(cfg.Dialer), cfg.TLS)), logger)
		return conn, events, g, err
	}
	conn, events, g, err := st.dial()
	if err != nil {
		return nil, coord.Errorf("connect", strings.Join(cfg.Servers, ","), fmt.Errorf("%w: %v", coord.ErrUnavailable, err))
	}
	st.conn, st.guard = conn, g
	go st.watchSession(conn, events)
	go g.watchdog(st)
	ct := cfg.ConnectTimeout
	if ct == 0 {
		ct = 10 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, ct)
	defer cancel()
	if _, err := st.session(cctx); err != nil {
		st.Close()
		if ctx.Err() == nil {
			err = fmt.Errorf("%w: no session within %v", coord.ErrUnavailable, ct)
		}
		return nil, coord.Errorf("connect", strings.Join(cfg.Servers, ","), err)
	}
	for _, a := range cfg.Auth {
		if err := st.do(ctx, func() error { return st.zk().AddAuth(a.Scheme, []byte(a.Secret)) }); err != nil {
			st.Close()
			return nil, coord.Errorf("auth", a.Scheme, mapErr(err))
		}
	}
	if st.chroot != "" {
		if err := coord.MkdirAll(ctx, &rootStore{st}, st.chroot); err != nil {
			st.Close()
			return nil, err
		}
	}
	return st, nil
}

func connect(servers []string, timeout time.Duration, dialer zk.Dialer, logger zk.Logger) (*zk.Conn, <-chan zk.Event, error) {
	return zk.Connect(servers, timeout, zk.WithLogger(logger), zk.WithLogInfo(false), zk.WithDialer(dialer))
}

// tlsDialer wraps d's connections in TLS with tc (d itself when tc is
// nil); the handshake is bounded by the dial's timeout.
func tlsDialer(d zk.Dialer, tc *tls.Config) zk.Dialer {
	if tc == nil {
		return d
	}
	return func(network, address string, timeout time.Duration) (net.Conn, error) {
		raw, err := d(network, address, timeout)
		if err != nil {
			return nil, err
		}
		c := tc.Clone()
		if c.ServerName == "" {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				raw.Close()
				return nil, err
			}
			c.ServerName = host
		}
		conn := tls.Client(raw, c)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return conn, nil
	}
}

func baseDialer(d zk.Dialer) zk.Dialer {
	if d != nil {
		return d
	}
	return net.DialTimeout
}

// Conn is the underlying ZooKeeper connection. It is replaced when a
// session is taken as lost (see Session), so do not keep it.
func (s *Store) Conn() *zk.Conn { return s.zk() }

// zk is the current connection.
func (s *Store) zk() *zk.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// Limits implements coord.Store. ZooKeeper bounds a request by
// jute.maxbuffer (1 MiB by default); this store allows 2048 ops per multi.
func (s *Store) Limits() coord.Limits {
	return coord.Limits{MaxValueSize: maxValueSize, MaxTxnOps: maxTxnOps, MaxTxnBytes: maxValueSize + txnOpBytes, TxnOpBytes: txnOpBytes}
}

// abs maps a store path to the ZooKeeper path.
func (s *Store) abs(p string) string {
	if s.chroot == "" {
		return p
	}
	if p == "/" {
		return s.chroot
	}
	return s.chroot + p
}

// rel maps a ZooKeeper path back.
func (s *Store) rel(p string) string {
	if s.chroot == "" {
		return p
	}
	r := strings.TrimPrefix(p, s.chroot)
	if r == "" {
		return "/"
	}
	return r
}

// do runs a blocking client call that writes, honouring ctx and the request
// timeout (when ctx has no deadline). A request that never left the client
// (zk.ErrNoServer: no server could be reached) is tried again with backoff
// until then; one whose outcome is unknown (the connection closed after it
// was sent) is not, and fails with ErrUnavailable. A call abandoned by its
// context still completes in the background.
func (s *Store) do(ctx context.Context, fn func() error) error { return s.call(ctx, false, fn) }

// read is do for a call that changes nothing: it is also tried again when
// the connection closed under it.
func (s *Store) read(ctx context.Context, fn func() error) error { return s.call(ctx, true, fn) }

func (s *Store) call(ctx context.Context, idempotent bool, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.life.Ended() {
		return coord.ErrClosed
	}
	var timeout <-chan time.Time
	if _, ok := ctx.Deadline(); !ok {
		t := time.NewTimer(s.reqTO)
		defer t.Stop()
		timeout = t.C
	}
	backoff := 20 * time.Millisecond
	for {
		done := make(chan error, 1)
		go func() { done <- fn() }()
		var err error
		select {
		case err = <-done:
		case <-ctx.Done():
			return coord.InFlightErr(ctx)
		case <-timeout:
			return fmt.Errorf("%w: no answer within %v", coord.ErrUnavailable, s.reqTO)
		case <-s.life.Done():
			return coord.ErrClosed
		}
		if !retryable(err, idempotent) {
			if !idempotent && !s.life.Ended() && (errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrClosing)) {
				// Sent, and the connection closed before the answer.
				return fmt.Errorf("%w: %w: %v", coord.ErrUnavailable, coord.ErrOutcomeUnknown, err)
			}
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return coord.InFlightErr(ctx)
		case <-timeout:
			t.Stop()
			return fmt.Errorf("%w: %v (tried until the request timeout, %v)", coord.ErrUnavailable, err, s.reqTO)
		case <-s.life.Done():
			t.Stop()
			return coord.ErrClosed
		}
		backoff = min(2*backoff, time.Second)
	}
}

// retryable: err says the request was not applied (ErrNoServer, or a write
// to a closed connection), or the call is a read whose connection went away
// under it.
func retryable(err error, idempotent bool) bool {
	var oe *net.OpError
	switch {
	case errors.Is(err, zk.ErrNoServer):
		return true
	case errors.As(err, &oe) && oe.Op == "write" && errors.Is(err, net.ErrClosed):
		// The connection was closed before the request was written (as
		// when the client drops an expired session): never sent.
		return true
	case idempotent:
		return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrClosing)
	}
	return false
}

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, zk.ErrNoNode):
		return coord.ErrNoNode
	case errors.Is(err, zk.ErrNodeExists):
		return coord.ErrNodeExists
	case errors.Is(err, zk.ErrBadVersion):
		return coord.ErrBadVersion
	case errors.Is(err, zk.ErrNotEmpty):
		return coord.ErrNotEmpty
	case errors.Is(err, zk.ErrNoChildrenForEphemerals):
		return coord.ErrEphemeralParent
	case errors.Is(err, zk.ErrSessionExpired):
		return coord.ErrSessionExpired
	case errors.Is(err, zk.ErrNoAuth), errors.Is(err, zk.ErrAuthFailed), errors.Is(err, zk.ErrInvalidACL):
		return fmt.Errorf("%w: %v", coord.ErrPermission, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	for _, sentinel := range []error{coord.ErrClosed, coord.ErrUnavailable, coord.ErrTooLarge, coord.ErrInvalidArgument} {
		if errors.Is(err, sentinel) {
			return err
		}
	}
	return fmt.Errorf("%w: %v", coord.ErrUnavailable, err)
}

func statOf(st *zk.Stat) coord.Stat {
	if st == nil {
		return coord.Stat{}
	}
	return coord.Stat{Version: int64(st.Version), Ephemeral: st.EphemeralOwner != 0, Owner: owner(st.EphemeralOwner), Created: st.Czxid}
}

// owner is the session ID of a ZooKeeper session id ("" for 0), as
// session.ID says.
func owner(id int64) string {
	if id == 0 {
		return ""
	}
	return fmt.Sprintf("%x", id)
}

func zkVersion(v int64) int32 {
	if v > math.MaxInt32 {
		return math.MaxInt32 // no znode reaches it: the write fails with a version conflict
	}
	return int32(v)
}

func zkFlags(m coord.Mode) int32 {
	var f int32
	if m&coord.Ephemeral != 0 {
		f |= zk.FlagEphemeral
	}
	if m&coord.Sequential != 0 {
		f |= zk.FlagSequence
	}
	return f
}

// checkPacket refuses a request the server would drop the connection for.
func checkPacket(op, path string, size int) error {
	if size > maxPacket-1024 {
		return coord.Errorf(op, path, fmt.Errorf("%w: request of about %d bytes, ZooKeeper's limit is %d", coord.ErrTooLarge, size, maxPacket))
	}
	return nil
}

// Create implements coord.Store.
func (s *Store) Create(ctx context.Context, path string, data []byte, mode coord.Mode) (string, error) {
	if err := coord.CheckCall(ctx, "create", path, data, mode, 0, s.Limits()); err != nil {
		return "", err
	}
	if data == nil {
		data = []byte{}
	}
	return resolve.Create(ctx, s, &s.claims, s.reqTO, path, data, mode,
		s.zxid.Load,
		func() (string, error) {
			var out string
			err := s.do(ctx, func() error {
				if err := s.dropped(); err != nil {
					return err
				}
				p, err := s.zk().Create(s.abs(path), data, zkFlags(mode), s.aclFor(path))
				out = p
				return err
			})
			for try := 0; mode&coord.Sequential != 0 && errors.Is(err, zk.ErrNodeExists) && try < maxSeqSkips; try++ {
				// The name ZooKeeper made is taken by a node created by
				// name: move the parent's counter past it and try again.
				if err = s.skipSeq(ctx, coord.Parent(path)); err == nil {
					err = s.do(ctx, func() error {
						p, err := s.zk().Create(s.abs(path), data, zkFlags(mode), s.aclFor(path))
						out = p
						return err
					})
				}
			}
			return s.created(path, out, err)
		})
}

// maxSeqSkips bounds how many taken sequence numbers a sequential create
// moves past before it reports ErrNodeExists.
const maxSeqSkips = 64

// skipSeq moves parent's sequence counter (its child-change count) on by
// creating and deleting a child no sequential create can be named: ZooKeeper
// names a sequential node from that counter and, unlike the other backends,
// fails with NodeExists when a node of that name was created by name. The
// child is ephemeral, so a crash between the two steps leaves nothing behind
// once the session ends.
func (s *Store) skipSeq(ctx context.Context, parent string) error {
	var made string
	err := s.do(ctx, func() error {
		p, err := s.zk().Create(s.abs(coord.Join(parent, seqSkipName)), []byte{}, zk.FlagEphemeral|zk.FlagSequence, s.acl)
		made = p
		return err
	})
	if err != nil {
		return err
	}
	return s.do(ctx, func() error {
		err := s.zk().Delete(made, -1)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		return err
	})
}

// seqSkipName is the prefix of the short-lived child skipSeq makes.
const seqSkipName = ".coord-seq-skip-"

// aclFor is the ACL of a node created at path.
func (s *Store) aclFor(path string) []zk.ACL {
	if s.aclFn != nil {
		if acl := s.aclFn(path); acl != nil {
			return acl
		}
	}
	return s.acl
}

// created reports the outcome of a create.
func (s *Store) created(path, out string, err error) (string, error) {
	if err != nil {
		err = mapErr(err)
		if errors.Is(err, coord.ErrNoNode) {
			err = fmt.Errorf("%w: parent %s", err, coord.Parent(path))
		}
		return "", coord.Errorf("create", path, err)
	}
	return s.rel(out), nil
}

// sync brings the connected server up to date with the leader before a
// read, unless the store takes stale reads.
func (s *Store) sync(ctx context.Context) error {
	if s.stale {
		return nil
	}
	return s.read(ctx, func() error {
		_, err := s.zk().Sync(s.abs("/"))
		return err
	})
}

// Get implements coord.Store.
func (s *Store) Get(ctx context.Context, path string) ([]byte, coord.Stat, error) {
	if err := coord.CheckCall(ctx, "get", path, nil, 0, 0, s.Limits()); err != nil {
		return nil, coord.Stat{}, err
	}
	var data []byte
	var st *zk.Stat
	if err := s.sync(ctx); err != nil {
		return nil, coord.Stat{}, coord.Errorf("get", path, mapErr(err))
	}
	err := s.read(ctx, func() error {
		var err error
		data, st, err = s.zk().Get(s.abs(path))
		return err
	})
	if err != nil {
		return nil, coord.Stat{}, coord.Errorf("get", path, mapErr(err))
	}
	if path == "/" {
		return nil, coord.Stat{}, nil
	}
	return data, statOf(st), nil
}

// getManyWorkers bounds the reads of one GetMany in flight at once. The
// client pipelines them on the one connection, so the call takes about
// len(paths)/getManyWorkers round trips, not len(paths).
const getManyWorkers = 64

// GetMany implements coord.Store: one sync (unless StaleReads), then the
// reads, pipelined on the connection. (go-zookeeper has no multi-read.)
func (s *Store) GetMany(ctx context.Context, paths ...string) ([]coord.GetResult, error) {
	if err := coord.CheckGetMany(ctx, paths); err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		if s.life.Ended() {
			return nil, coord.Errorf("getmany", "", coord.ErrClosed)
		}
		return []coord.GetResult{}, nil
	}
	if err := s.sync(ctx); err != nil {
		return nil, coord.Errorf("getmany", paths[0], mapErr(err))
	}
	res := make([]coord.GetResult, len(paths))
	c, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	next := make(chan int)
	for w := 0; w < min(getManyWorkers, len(paths)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var data []byte
				var st *zk.Stat
				err := s.read(c, func() error {
					var err error
					data, st, err = s.zk().Get(s.abs(paths[i]))
					return err
				})
				switch err := mapErr(err); {
				case err == nil && paths[i] == "/":
				case err == nil:
					res[i] = coord.GetResult{Data: data, Stat: statOf(st)}
				case errors.Is(err, coord.ErrNoNode) && paths[i] != "/":
					res[i].Err = coord.Errorf("getmany", paths[i], err)
				default:
					mu.Lock()
					if first == nil {
						first = coord.Errorf("getmany", paths[i], err)
					}
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
	for i := range paths {
		if c.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = coord.Errorf("getmany", paths[0], coord.InFlightErr(ctx))
	}
	if first != nil {
		return nil, first
	}
	return res, nil
}

// Exists implements coord.Store.
func (s *Store) Exists(ctx context.Context, path string) (coord.Stat, bool, error) {
	if err := coord.CheckCall(ctx, "exists", path, nil, 0, 0, s.Limits()); err != nil {
		return coord.Stat{}, false, err
	}
	if err := s.sync(ctx); err != nil {
		return coord.Stat{}, false, coord.Errorf("exists", path, mapErr(err))
	}
	return s.exists(ctx, path)
}

// exists is Exists without the sync: it sees at least what this store's
// connection has seen (ZooKeeper answers one session's requests in order).
func (s *Store) exists(ctx context.Context, path string) (coord.Stat, bool, error) {
	var ok bool
	var st *zk.Stat
	err := s.read(ctx, func() error {
		var err error
		ok, st, err = s.zk().Exists(s.abs(path))
		return err
	})
	if err != nil {
		return coord.Stat{}, false, coord.Errorf("exists", path, mapErr(err))
	}
	if !ok || path == "/" {
		return coord.Stat{}, ok, nil
	}
	return statOf(st), true, nil
}

// Set implements coord.Store.
func (s *Store) Set(ctx context.Context, path string, data []byte, version int64) (coord.Stat, error) {
	if err := coord.CheckCall(ctx, "set", path, data, 0, version, s.Limits()); err != nil {
		return coord.Stat{}, err
	}
	if data == nil {
		data = []byte{}
	}
	var st *zk.Stat
	err := s.do(ctx, func() error {
		if err := s.dropped(); err != nil {
			return err
		}
		var err error
		st, err = s.zk().Set(s.abs(path), data, zkVersion(version))
		return err
	})
	if err != nil {
		return coord.Stat{}, coord.Errorf("set", path, mapErr(err))
	}
	return writeStat(st), nil
}

// writeStat is the Stat a write returns: as the contract says, without
// Created (which etcd and Consul do not learn from a write).
func writeStat(st *zk.Stat) coord.Stat {
	out := statOf(st)
	out.Created = 0
	return out
}

// Delete implements coord.Store.
func (s *Store) Delete(ctx context.Context, path string, version int64) error {
	if err := coord.CheckCall(ctx, "delete", path, nil, 0, version, s.Limits()); err != nil {
		return err
	}
	err := s.do(ctx, func() error {
		if err := s.dropped(); err != nil {
			return err
		}
		return s.zk().Delete(s.abs(path), zkVersion(version))
	})
	return coord.Errorf("delete", path, mapErr(err))
}

// Children implements coord.Store.
func (s *Store) Children(ctx context.Context, path string) ([]string, error) {
	if err := coord.CheckCall(ctx, "children", path, nil, 0, 0, s.Limits()); err != nil {
		return nil, err
	}
	var kids []string
	if err := s.sync(ctx); err != nil {
		return nil, coord.Errorf("children", path, mapErr(err))
	}
	err := s.read(ctx, func() error {
		var err error
		kids, _, err = s.zk().Children(s.abs(path))
		return err
	})
	if err != nil {
		return nil, coord.Errorf("children", path, mapErr(err))
	}
	kids = s.hide(path, kids)
	sort.Strings(kids)
	return kids, nil
}

// hide leaves ZooKeeper's own /zookeeper node out of the root's children.
func (s *Store) hide(path string, kids []string) []string {
	if path != "/" || s.chroot != "" {
		return kids
	}
	out := kids[:0]
	for _, k := range kids {
		if k != "zookeeper" {
			out = append(out, k)
		}
	}
	return out
}

// Close implements coord.Store: it closes the ZooKeeper session, which
// removes its ephemeral nodes at once.
func (s *Store) Close() error {
	s.mu.Lock()
	first := s.life.End(coord.ErrClosed)
	sess := s.sess
	s.mu.Unlock()
	if !first {
		return nil
	}
	s.mu.Lock()
	conn, g := s.conn, s.guard
	s.mu.Unlock()
	g.stop()
	conn.Close()
	if sess != nil {
		sess.End(coord.ErrClosed)
	}
	return nil
}

// rootStore lets coord helpers run on the unchrooted namespace while the
// chroot node is made.
type rootStore struct{ *Store }

func (r *rootStore) Create(ctx context.Context, path string, data []byte, mode coord.Mode) (string, error) {
	err := r.do(ctx, func() error { _, err := r.zk().Create(path, []byte{}, 0, r.acl); return err })
	return path, coord.Errorf("create", path, mapErr(err))
}

func (r *rootStore) Exists(ctx context.Context, path string) (coord.Stat, bool, error) {
	var ok bool
	err := r.read(ctx, func() error { var err error; ok, _, err = r.zk().Exists(path); return err })
	return coord.Stat{}, ok, coord.Errorf("exists", path, mapErr(err))
}
