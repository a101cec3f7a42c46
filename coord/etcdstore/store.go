// Package etcdstore is the coord.Store backend on etcd v3
// (go.etcd.io/etcd/client/v3). It links etcd's client only; an etcd server
// inside the process is package etcdembed.
//
// # Key layout
//
// A node at path P of depth D (the number of components) is one key,
// Prefix + "/" + D as three digits + P: "/zk/codis" under the prefix "coord"
// is "coord/002/zk/codis". The children of a node are then exactly the keys
// of one range (depth D+1, path prefix P + "/"), so listing children, checking
// that a node has none and watching them never reads a subtree. The value is
// the node's data, unchanged. A node's coord version is the key's etcd
// version minus one. The sequence counter of a parent lives at
// Prefix + "/seq" + P and is updated in the transaction that creates the
// sequential node; it is deleted with the parent.
//
// Ephemeral nodes are attached to one lease per session, kept alive by the
// client; when the lease expires or is revoked the session's Done is closed
// and a new lease is made for later ephemeral nodes.
package etcdstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/fanout"
	"github.com/coordkit/coord/internal/lifecycle"
	"github.com/coordkit/coord/internal/resolve"
	"github.com/coordkit/coord/internal/retry"
)

// Config configures a Store. Endpoints (or Client) is required.
type Config struct {
	// Endpoints of the etcd cluster ("http://127.0.0.1:2379").
	Endpoints []string
	// Client, when set, is used instead of dialing Endpoints; Close does not
	// close it.
	Client *clientv3.Client
	// Prefix of every key this store writes ("coord" when empty; a trailing
	// "/" is dropped). Stores with different prefixes do not see each
	// other's nodes, even when one prefix extends the other ("p" and
	// "p/a"). So that no prefix can reach into another's key layout, none of
	// its "/"-separated components may be empty, three digits or "seq";
	// New refuses such a prefix with ErrInvalidArgument.
	Prefix string
	// SessionTTL is the lease TTL of a session (10s when 0; at least 2s).
	SessionTTL time.Duration
	// DialTimeout bounds connecting (5s when 0).
	DialTimeout time.Duration
	// RequestTimeout bounds a call whose context has no deadline (15s when 0):
	// a backend that does not answer in time gives ErrUnavailable.
	RequestTimeout time.Duration
	// ReconnectBackoff is the longest wait between attempts to reconnect to
	// a server that went away (1s when 0). gRPC's own default grows to two
	// minutes, which would leave a store failing long after its server is
	// back.
	ReconnectBackoff time.Duration
	// Username and Password for etcd authentication.
	Username, Password string
	// TLS configures TLS to the servers.
	TLS *tls.Config
	// MaxTxnOps is the cluster's --max-txn-ops (128, etcd's default, when 0).
	// A coord op takes up to two etcd ops, so Limits().MaxTxnOps is half of it.
	MaxTxnOps int
	// MaxRequestBytes is the cluster's --max-request-bytes (1.5 MiB, etcd's
	// default, when 0).
	MaxRequestBytes int
}

// Store is a coord.Store on etcd.
type Store struct {
	cli    *clientv3.Client
	ownCli bool
	prefix string
	ttl    time.Duration
	reqTO  time.Duration
	limits coord.Limits
	// serverOps is the cluster's limit on operations per etcd transaction.
	serverOps int
	// reqBytes is the cluster's limit on a request's size.
	reqBytes  int
	bg        context.Context
	stop      context.CancelFunc
	mu        sync.Mutex
	sess      *session
	life      lifecycle.State        // the store's: ended by Close
	seen      resolve.Stamp          // the largest revision a reply carried
	claims    resolve.Claims         // nodes that creates with lost replies took
	known     knownKeys              // the state of keys last read or written by a Txn
	loseReply atomic.Pointer[func()] // a test's fault: lose the next applied commit's answer, then run it
	// loseRefusal is a test's fault: lose the next refused commit's
	// answer, then run it.
	loseRefusal atomic.Pointer[func()]
	dropWrite   atomic.Bool // a test's fault: lose the next commit on its way
	// beforeCommit is a test's fault: run just before the next commit.
	beforeCommit atomic.Pointer[func()]
}

var _ coord.Store = (*Store)(nil)

// New connects to etcd.
func New(ctx context.Context, cfg Config) (*Store, error) {
	s := &Store{prefix: strings.TrimSuffix(cfg.Prefix, "/"), ttl: cfg.SessionTTL, reqTO: cfg.RequestTimeout}
	if s.prefix == "" {
		s.prefix = "coord"
	}
	if err := checkPrefix(s.prefix); err != nil {
		return nil, coord.Errorf("connect", cfg.Prefix, err)
	}
	if s.ttl == 0 {
		s.ttl = 10 * time.Second
	}
	if s.ttl < 2*time.Second {
		s.ttl = 2 * time.Second
	}
	if s.reqTO == 0 {
		s.reqTO = 15 * time.Second
	}
	ops, reqBytes := cfg.MaxTxnOps, cfg.MaxRequestBytes
	if ops == 0 {
		ops = 128
	}
	if reqBytes == 0 {
		reqBytes = 3 << 19 // 1.5 MiB
	}
	s.serverOps = ops
	// etcd counts compares, success ops and failure ops against
	// --max-txn-ops each. A set or check takes one of each. Another op takes
	// up to four compares: a sequential create under a parent of its own
	// checks that its key is missing, that the parent exists and is not
	// ephemeral, and the parent's counter (MaxTxnOps is a quarter of the
	// server's limit).
	perOp := 4
	// An op's room in a request (TxnOpBytes): its encoding (32 bytes) and
	// its key (the prefix, the depth and a path of ordinary length, 64
	// bytes) named three times: a set compares the key's version, puts it,
	// and reads it in the Else branch that tells why a refused transaction
	// failed. Other ops (at most MaxTxnOps of them) name their key and
	// their parent's up to seven times: room for four more is kept off the
	// value limit, so that the largest transaction of creates within
	// Limits fits the request limit too. Anything larger is refused before
	// it is sent (see commit).
	const ordinaryPath = 64
	keyRoom := len(s.prefix) + 4 + ordinaryPath
	opBytes := 3*keyRoom + 32
	values := reqBytes - 64<<10 - ops/perOp*4*keyRoom
	s.reqBytes = reqBytes
	s.limits = coord.Limits{MaxValueSize: values, MaxTxnOps: ops / perOp, MaxTxnSetOps: ops, MaxTxnBytes: values + opBytes, TxnOpBytes: opBytes}
	if cfg.Client != nil {
		s.cli = cfg.Client
	} else {
		dt := cfg.DialTimeout
		if dt == 0 {
			dt = 5 * time.Second
		}
		rb := cfg.ReconnectBackoff
		if rb <= 0 {
			rb = time.Second
		}
		cli, err := clientv3.New(clientv3.Config{
			DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: min(100*time.Millisecond, rb), Multiplier: 1.6, Jitter: 0.2, MaxDelay: rb},
				MinConnectTimeout: dt,
			})},
			Endpoints:          cfg.Endpoints,
			DialTimeout:        dt,
			Username:           cfg.Username,
			Password:           cfg.Password,
			TLS:                cfg.TLS,
			Context:            ctx,
			MaxCallSendMsgSize: reqBytes + 1<<20,
			Logger:             nopLogger(),
		})
		if err != nil {
			// Wrong credentials fail here (the client authenticates as it
			// dials): ErrPermission; the rest is the server not answering.
			mapped := mapErr(ctx, err)
			if !errors.Is(mapped, coord.ErrPermission) {
				mapped = fmt.Errorf("%w: %v", coord.ErrUnavailable, err)
			}
			return nil, coord.Errorf("connect", strings.Join(cfg.Endpoints, ","), mapped)
		}
		s.cli, s.ownCli = cli, true
		// Fail now, not at the first call, when nothing answers.
		sctx, cancel := context.WithTimeout(ctx, dt)
		_, err = cli.Get(sctx, s.prefix+"/", clientv3.WithCountOnly())
		cancel()
		if err != nil {
			cli.Close()
			return nil, coord.Errorf("connect", strings.Join(cfg.Endpoints, ","), mapErr(ctx, err))
		}
	}
	s.bg, s.stop = context.WithCancel(context.Background())
	return s, nil
}

// Client is the underlying etcd client.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Limits implements coord.Store.
func (s *Store) Limits() coord.Limits { return s.limits }

// checkPrefix refuses a prefix that could share keys with another store's:
// a component that is empty, three digits (a depth) or "seq" would let the
// prefix "p/001" or "p/seq" live inside the key ranges of the store on "p".
func checkPrefix(prefix string) error {
	for _, c := range strings.Split(prefix, "/") {
		digits := len(c) == 3 && strings.Trim(c, "0123456789") == ""
		if c == "" || c == "seq" || digits {
			return fmt.Errorf("%w: prefix %q: component %q is empty, three digits or \"seq\"", coord.ErrInvalidArgument, prefix, c)
		}
		for _, r := range c {
			if r < 0x20 || r == 0x7f {
				return fmt.Errorf("%w: prefix %q: control character", coord.ErrInvalidArgument, prefix)
			}
		}
	}
	return nil
}

func (s *Store) nodeKey(p string) string {
	return fmt.Sprintf("%s/%03d%s", s.prefix, coord.Depth(p), p)
}

func (s *Store) childPrefix(p string) string {
	if p == "/" {
		return fmt.Sprintf("%s/%03d/", s.prefix, 1)
	}
	return fmt.Sprintf("%s/%03d%s/", s.prefix, coord.Depth(p)+1, p)
}

func (s *Store) seqKey(p string) string { return s.prefix + "/seq" + p }

// call bounds ctx by the request timeout when it has no deadline, and checks
// that the store is open.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.life.Ended() {
		return nil, nil, coord.ErrClosed
	}
	c, cancel := lifecycle.Bound(ctx, s.reqTO)
	return c, cancel, nil
}

// readTxn runs a transaction of reads only, tried again while the server is
// unavailable (the client library retries Range calls by itself, but not Txn
// ones, which may write).
func (s *Store) readTxn(ctx context.Context, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	var resp *clientv3.TxnResponse
	err := retry.Do(ctx, unavailable, func() error {
		var err error
		resp, err = s.cli.Txn(ctx).Then(ops...).Commit()
		return err
	})
	return resp, err
}

// unavailable: the server could not be reached or is between leaders. The
// client library hands the server's own errors ("etcdserver: leader
// changed", "no leader") over as rpctypes.EtcdError, which gRPC's
// status.Code does not see: a children watch armed during an election
// failed at once.
func unavailable(err error) bool {
	if status.Code(err) == codes.Unavailable {
		return true
	}
	var ee rpctypes.EtcdError
	return errors.As(err, &ee) && ee.Code() == codes.Unavailable
}

// mapErr turns an etcd client error into a coord sentinel.
func mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	for _, sentinel := range []error{coord.ErrNoNode, coord.ErrNodeExists, coord.ErrBadVersion, coord.ErrNotEmpty,
		coord.ErrEphemeralParent, coord.ErrSessionExpired, coord.ErrClosed, coord.ErrTooLarge, coord.ErrUnavailable, coord.ErrPermission} {
		if errors.Is(err, sentinel) {
			return err
		}
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.Canceled || status.Code(err) == codes.DeadlineExceeded) {
		return coord.InFlightErr(ctx)
	}
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return coord.ErrSessionExpired
	case errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrGRPCPermissionDenied),
		errors.Is(err, rpctypes.ErrGRPCAuthFailed), status.Code(err) == codes.PermissionDenied, status.Code(err) == codes.Unauthenticated:
		// A user without the right (or wrong credentials): retrying
		// cannot help.
		return fmt.Errorf("%w: %v", coord.ErrPermission, err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrTooManyOps),
		// gRPC's own message limits, on either side: not applied.
		status.Code(err) == codes.ResourceExhausted:
		return fmt.Errorf("%w: %v", coord.ErrTooLarge, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		status.Code(err) == codes.DeadlineExceeded, status.Code(err) == codes.Unavailable:
		return fmt.Errorf("%w: %v", coord.ErrUnavailable, err)
	case errors.Is(err, clientv3.ErrNoAvailableEndpoints), status.Code(err) == codes.Canceled:
		return fmt.Errorf("%w: %v", coord.ErrClosed, err)
	}
	return fmt.Errorf("%w: %v", coord.ErrUnavailable, err)
}

func statOf(kvVersion, lease, created int64) coord.Stat {
	return coord.Stat{Version: kvVersion - 1, Ephemeral: lease != 0, Owner: leaseOwner(lease), Created: created}
}

// leaseOwner is the session ID of lease ("" for none), as session.ID says.
func leaseOwner(lease int64) string {
	if lease == 0 {
		return ""
	}
	return fmt.Sprintf("%x", lease)
}

// Create implements coord.Store.
func (s *Store) Create(ctx context.Context, path string, data []byte, mode coord.Mode) (string, error) {
	if err := coord.CheckCall(ctx, "create", path, data, mode, 0, s.limits); err != nil {
		return "", err
	}
	return resolve.Create(ctx, s, &s.claims, s.reqTO, path, data, mode, s.seen.Load,
		func() (string, error) {
			if mode&coord.Sequential == 0 {
				return path, coord.Errorf("create", path, s.createOne(ctx, path, data, mode))
			}
			res, err := s.Txn(ctx, coord.CreateOp(path, data, mode))
			if err != nil {
				var te *coord.TxnError
				if errors.As(err, &te) {
					err = te.Err
				}
				return "", coord.Errorf("create", path, err)
			}
			return res[0].Path, nil
		})
}

// createOne creates a node by name in one request: the put applies if the
// node is missing and its parent exists and is not ephemeral; otherwise the
// same transaction reads both, which tells why not (in the order a
// transaction tells it: parent missing, parent ephemeral, node exists).
func (s *Store) createOne(ctx context.Context, path string, data []byte, mode coord.Mode) error {
	var lease clientv3.LeaseID
	if mode&coord.Ephemeral != 0 {
		sess, err := s.session(ctx)
		if err != nil {
			return err
		}
		lease = sess.id
	}
	c, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	key, par := s.nodeKey(path), coord.Parent(path)
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	// (Full reads: a keys-only read does not carry a key's lease or version.)
	els := []clientv3.Op{clientv3.OpGet(key)}
	if par != "/" { // the root is no key, and always there
		pk := s.nodeKey(par)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(pk), ">", 0), clientv3.Compare(clientv3.LeaseValue(pk), "=", 0))
		els = append(els, clientv3.OpGet(pk))
	}
	resp, err := s.commit(c, cmps, []clientv3.Op{clientv3.OpPut(key, string(data), clientv3.WithLease(lease))}, els)
	if err != nil {
		if errors.Is(err, coord.ErrSessionExpired) {
			s.sessionLost(lease)
		}
		return err
	}
	if resp.Succeeded {
		return nil
	}
	if par != "/" {
		switch pk := resp.Responses[1].GetResponseRange().Kvs; {
		case len(pk) == 0:
			return fmt.Errorf("%w: parent %s", coord.ErrNoNode, par)
		case pk[0].Lease != 0:
			return fmt.Errorf("%w: parent %s", coord.ErrEphemeralParent, par)
		}
	}
	if len(resp.Responses[0].GetResponseRange().Kvs) > 0 {
		return coord.ErrNodeExists
	}
	return fmt.Errorf("%w: create refused for no reason the store can see", coord.ErrUnavailable)
}

// Get implements coord.Store.
func (s *Store) Get(ctx context.Context, path string) ([]byte, coord.Stat, error) {
	if err := coord.CheckCall(ctx, "get", path, nil, 0, 0, s.limits); err != nil {
		return nil, coord.Stat{}, err
	}
	c, cancel, err := s.call(ctx)
	if err != nil {
		return nil, coord.Stat{}, coord.Errorf("get", path, err)
	}
	defer cancel()
	if path == "/" {
		return nil, coord.Stat{}, nil
	}
	resp, err := s.cli.Get(c, s.nodeKey(path))
	if err != nil {
		return nil, coord.Stat{}, coord.Errorf("get", path, mapErr(ctx, err))
	}
	s.seen.See(resp.Header.Revision)
	if len(resp.Kvs) == 0 {
		return nil, coord.Stat{}, coord.Errorf("get", path, coord.ErrNoNode)
	}
	kv := resp.Kvs[0]
	return kv.Value, statOf(kv.Version, kv.Lease, kv.CreateRevision), nil
}

// GetMany implements coord.Store: the reads go in read-only transactions of
// up to the server's --max-txn-ops ranges, the later ones at the first one's
// revision, so that the results are one snapshot.
func (s *Store) GetMany(ctx context.Context, paths ...string) ([]coord.GetResult, error) {
	if err := coord.CheckGetMany(ctx, paths); err != nil {
		return nil, err
	}
	first := ""
	if len(paths) > 0 {
		first = paths[0]
	}
	c, cancel, err := s.call(ctx)
	if err != nil {
		return nil, coord.Errorf("getmany", first, err)
	}
	defer cancel()
	for {
		res, err := s.getManyAt(c, paths)
		if errors.Is(err, rpctypes.ErrCompacted) {
			continue // the snapshot's revision was compacted between chunks
		}
		if err != nil {
			return nil, coord.Errorf("getmany", first, mapErr(ctx, err))
		}
		return res, nil
	}
}

func (s *Store) getManyAt(ctx context.Context, paths []string) ([]coord.GetResult, error) {
	res := make([]coord.GetResult, len(paths))
	var rev int64
	read := func(ctx context.Context, c int) error {
		var ops []clientv3.Op
		var idx []int
		for i := c * s.serverOps; i < min((c+1)*s.serverOps, len(paths)); i++ {
			if paths[i] == "/" {
				continue // always there, with no data
			}
			var opts []clientv3.OpOption
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			ops = append(ops, clientv3.OpGet(s.nodeKey(paths[i]), opts...))
			idx = append(idx, i)
		}
		if len(ops) == 0 {
			return nil
		}
		resp, err := s.readTxn(ctx, ops...)
		if err != nil {
			return err
		}
		if rev == 0 {
			rev = resp.Header.Revision
			s.seen.See(rev)
		}
		for j, r := range resp.Responses {
			i := idx[j]
			kvs := r.GetResponseRange().GetKvs()
			if len(kvs) == 0 {
				res[i].Err = coord.Errorf("getmany", paths[i], coord.ErrNoNode)
				continue
			}
			kv := kvs[0]
			res[i] = coord.GetResult{Data: kv.Value, Stat: statOf(kv.Version, kv.Lease, kv.CreateRevision)}
		}
		return nil
	}
	// The first chunk that reads anything fixes the revision; the others
	// are read at it, a few at once.
	chunks := (len(paths) + s.serverOps - 1) / s.serverOps
	c := 0
	for ; c < chunks && rev == 0; c++ {
		if err := read(ctx, c); err != nil {
			return nil, err
		}
	}
	if err := fanout.Each(ctx, chunks-c, readsInFlight, func(ctx context.Context, i int) error { return read(ctx, c+i) }); err != nil {
		return nil, err
	}
	return res, nil
}

// readsInFlight bounds the read transactions of one GetMany in flight at
// once, after the first.
const readsInFlight = 4

// Exists implements coord.Store.
//
// It reads the value too: a keys-only range, which etcd 3.7 answers from its
// in-memory index, leaves out the lease, and with it the Stat's Ephemeral
// and Owner.
func (s *Store) Exists(ctx context.Context, path string) (coord.Stat, bool, error) {
	_, st, err := s.Get(ctx, path)
	if errors.Is(err, coord.ErrNoNode) {
		return coord.Stat{}, false, nil
	}
	if err != nil {
		return coord.Stat{}, false, coord.Errorf("exists", path, errors.Unwrap(err))
	}
	return st, true, nil
}

// Set implements coord.Store.
func (s *Store) Set(ctx context.Context, path string, data []byte, version int64) (coord.Stat, error) {
	if err := coord.CheckCall(ctx, "set", path, data, 0, version, s.limits); err != nil {
		return coord.Stat{}, err
	}
	if path != "/" {
		st, err := s.setOne(ctx, path, data, version)
		if err != nil {
			return coord.Stat{}, coord.Errorf("set", path, err)
		}
		return st, nil
	}
	res, err := s.Txn(ctx, coord.SetOp(path, data, version))
	if err != nil {
		var te *coord.TxnError
		if errors.As(err, &te) {
			err = te.Err
		}
		return coord.Stat{}, coord.Errorf("set", path, err)
	}
	return res[0].Stat, nil
}

// setOne writes one node in one request, as the raw client would: the put
// applies if the node is at version (or exists, for AnyVersion); otherwise
// the same transaction reads the node, which tells why it did not.
func (s *Store) setOne(ctx context.Context, path string, data []byte, version int64) (coord.Stat, error) {
	c, cancel, err := s.call(ctx)
	if err != nil {
		return coord.Stat{}, err
	}
	defer cancel()
	key := s.nodeKey(path)
	cmp := versionCmp(key, version)
	resp, err := s.commit(c, []clientv3.Cmp{cmp},
		[]clientv3.Op{clientv3.OpPut(key, string(data), clientv3.WithIgnoreLease(), clientv3.WithPrevKV())},
		[]clientv3.Op{clientv3.OpGet(key)})
	if err != nil {
		return coord.Stat{}, err
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return coord.Stat{}, coord.ErrNoNode
		}
		return coord.Stat{}, fmt.Errorf("%w: expected %d, is %d", coord.ErrBadVersion, version, kvs[0].Version-1)
	}
	prev := resp.Responses[0].GetResponsePut().PrevKv
	return statOf(prev.Version+1, prev.Lease, prev.CreateRevision), nil
}

// versionCmp compares key against a coord version: it exists, for
// AnyVersion, or is at version.
func versionCmp(key string, version int64) clientv3.Cmp {
	if version == coord.AnyVersion {
		return clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	}
	return clientv3.Compare(clientv3.Version(key), "=", version+1)
}

// Delete implements coord.Store.
func (s *Store) Delete(ctx context.Context, path string, version int64) error {
	if err := coord.CheckCall(ctx, "delete", path, nil, 0, version, s.limits); err != nil {
		return err
	}
	if path != "/" {
		return coord.Errorf("delete", path, s.deleteOne(ctx, path, version))
	}
	if _, err := s.Txn(ctx, coord.DeleteOp(path, version)); err != nil {
		var te *coord.TxnError
		if errors.As(err, &te) {
			err = te.Err
		}
		return coord.Errorf("delete", path, err)
	}
	return nil
}

// deleteOne deletes one node in one request: the delete applies if the
// node is at version (or exists) and has no child; otherwise the same
// transaction reads the node and counts its children, which tells why not
// (in the order a transaction tells it: no node, version, children).
func (s *Store) deleteOne(ctx context.Context, path string, version int64) error {
	c, cancel, err := s.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	key, kids := s.nodeKey(path), s.childPrefix(path)
	cmp := versionCmp(key, version)
	// No key under the child prefix: an empty range compares as a key never
	// created.
	none := clientv3.Compare(clientv3.CreateRevision(kids), "=", 0).WithPrefix()
	resp, err := s.commit(c, []clientv3.Cmp{cmp, none},
		[]clientv3.Op{clientv3.OpDelete(key), clientv3.OpDelete(s.seqKey(path))},
		[]clientv3.Op{clientv3.OpGet(key), clientv3.OpGet(kids, clientv3.WithPrefix(), clientv3.WithCountOnly())})
	if err != nil {
		return err
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	switch {
	case len(kvs) == 0:
		return coord.ErrNoNode
	case version != coord.AnyVersion && kvs[0].Version-1 != version:
		return fmt.Errorf("%w: expected %d, is %d", coord.ErrBadVersion, version, kvs[0].Version-1)
	case resp.Responses[1].GetResponseRange().Count > 0:
		return coord.ErrNotEmpty
	}
	return fmt.Errorf("%w: delete refused for no reason the store can see", coord.ErrUnavailable)
}

// Children implements coord.Store.
func (s *Store) Children(ctx context.Context, path string) ([]string, error) {
	if err := coord.CheckCall(ctx, "children", path, nil, 0, 0, s.limits); err != nil {
		return nil, err
	}
	c, cancel, err := s.call(ctx)
	if err != nil {
		return nil, coord.Errorf("children", path, err)
	}
	defer cancel()
	kids, _, err := s.readChildren(c, path)
	if err != nil {
		return nil, coord.Errorf("children", path, mapErr(ctx, err))
	}
	return kids, nil
}

// ScanChildren implements coord.ChildScanner: pages of coord.ScanBatch
// names, the first read together with the node's existence and the later
// ones at its revision, so that the pages are one snapshot (if that revision
// is compacted during the scan, the rest is read at the newest one). Each
// page is one request, bounded by the request timeout on its own.
func (s *Store) ScanChildren(ctx context.Context, path string, fn func(names []string) error) error {
	if err := coord.CheckCall(ctx, "children", path, nil, 0, 0, s.limits); err != nil {
		return err
	}
	cp := s.childPrefix(path)
	from, end := cp, clientv3.GetPrefixRangeEnd(cp)
	var rev int64
	for {
		kvs, more, r, err := s.childPage(ctx, path, from, end, rev, rev == 0)
		if err != nil {
			return coord.Errorf("children", path, err)
		}
		rev = r
		if len(kvs) == 0 {
			return nil
		}
		names := make([]string, len(kvs))
		for i, kv := range kvs {
			names[i] = string(kv.Key[len(cp):])
		}
		if err := fn(names); err != nil {
			return err
		}
		if !more {
			return nil
		}
		from = string(kvs[len(kvs)-1].Key) + "\x00"
	}
}

// childPage reads up to coord.ScanBatch child keys from the key from (to
// end, excluded) at revision rev (0: the newest), and with check whether
// the node exists, and returns them, whether more follow and the revision
// read.
func (s *Store) childPage(ctx context.Context, path, from, end string, rev int64, check bool) ([]*mvccpb.KeyValue, bool, int64, error) {
	c, cancel, err := s.call(ctx)
	if err != nil {
		return nil, false, 0, err
	}
	defer cancel()
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(coord.ScanBatch)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		ops := []clientv3.Op{clientv3.OpGet(from, opts...)}
		if check && path != "/" {
			ops = append(ops, clientv3.OpGet(s.nodeKey(path), clientv3.WithCountOnly()))
		}
		resp, err := s.readTxn(c, ops...)
		if errors.Is(err, rpctypes.ErrCompacted) && rev != 0 {
			rev = 0 // compacted since the first page: read on at the newest revision
			continue
		}
		if err != nil {
			return nil, false, 0, mapErr(ctx, err)
		}
		if len(ops) == 2 && resp.Responses[1].GetResponseRange().Count == 0 {
			return nil, false, 0, coord.ErrNoNode
		}
		rr := resp.Responses[0].GetResponseRange()
		if rev == 0 {
			rev = resp.Header.Revision
		}
		return rr.Kvs, rr.More, rev, nil
	}
}

// readChildren reads the node's children and, when it has none, whether
// it exists, at one revision, which it returns (also with ErrNoNode). A
// node with children exists (a create compares its parent, a delete its
// children), so most listings are one range; only an empty one reads the
// node too, at the listing's revision.
func (s *Store) readChildren(ctx context.Context, path string) ([]string, int64, error) {
	cp := s.childPrefix(path)
	for {
		resp, err := s.cli.Get(ctx, cp, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return nil, 0, err
		}
		rev := resp.Header.Revision
		s.seen.See(rev)
		if len(resp.Kvs) == 0 && path != "/" {
			node, err := s.cli.Get(ctx, s.nodeKey(path), clientv3.WithCountOnly(), clientv3.WithRev(rev))
			if errors.Is(err, rpctypes.ErrCompacted) {
				continue // compacted in between: list again
			}
			if err != nil {
				return nil, 0, err
			}
			if node.Count == 0 {
				return nil, rev, coord.ErrNoNode
			}
		}
		kids := make([]string, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			kids = append(kids, string(kv.Key[len(cp):]))
		}
		sort.Strings(kids)
		return kids, rev, nil
	}
}
