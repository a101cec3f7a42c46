// Package consulstore is the coord.Store backend on Consul's KV store
// (github.com/hashicorp/consul/api).
//
// # Key layout
//
// A node at path P is the key Prefix + "/nodes" + P
// ("coord/nodes/zk/codis/db_p"); its value is
// the node's data, unchanged, and its coord version is kept in the key's
// Flags. Children are listed with a "/" separator, so a listing returns the
// direct children only. The sequence counter of a parent is the key
// Prefix + "/seq" + P, updated under check-and-set in the /v1/txn that
// creates a sequential child; its children mark, Prefix + "/kids" + P, is set
// to a value never written before by the /v1/txn that creates a plain child.
// Since no component of a prefix may be "nodes", "seq" or "kids", the keys of
// the stores on "p" and on "p/a" never meet.
//
// Every change is one /v1/txn guarded by the ModifyIndex of what it read, so
// it applies only to the state it was planned on. A delete checks the
// node's counter and children mark as it read them, before it listed the
// children: a child created after that has moved one of them, and the
// delete fails instead of orphaning the child. Plain creates under one
// parent do not refuse one another: the mark is set, not checked.
//
// Ephemeral nodes are keys acquired ("lock") by one Consul session per Store
// session, with behaviour delete, no health checks tying it to the agent's
// node, a TTL renewed in the background and no lock delay.
package consulstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-cleanhttp"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/fanout"
	"github.com/coordkit/coord/internal/lifecycle"
	"github.com/coordkit/coord/internal/resolve"
	"github.com/coordkit/coord/internal/retry"
)

// Config configures a Store.
type Config struct {
	// Address of the Consul agent's HTTP API ("127.0.0.1:8500").
	Address string
	// Scheme is "http" (default) or "https".
	Scheme string
	// Token is the ACL token sent with every request; none when empty
	// (CONSUL_HTTP_TOKEN and CONSUL_HTTP_TOKEN_FILE are not read here:
	// storeurl reads them, in the consul command's order).
	Token string
	// TLS configures https (CA, client certificate, server name).
	TLS api.TLSConfig
	// Datacenter to use (the agent's when empty).
	Datacenter string
	// Prefix of every key ("coord" when empty; leading and trailing "/"
	// dropped). Stores with different prefixes do not see each other's
	// nodes, even when one prefix extends the other ("p" and "p/a"). No
	// component of it may be empty, "nodes", "seq", "." or ".."; New refuses
	// such a prefix with ErrInvalidArgument.
	Prefix string
	// SessionTTL is the TTL of a session, renewed at a third of it (10s when
	// 0; the agent refuses a TTL under its session_ttl_min).
	SessionTTL time.Duration
	// RequestTimeout bounds a call whose context has no deadline (15s when 0).
	RequestTimeout time.Duration
	// MaxRequestBytes is the agent's limits.txn_max_req_len (512 KiB, the
	// default, when 0).
	MaxRequestBytes int
	// WatchWait is how long one blocking query of a watch waits before it is
	// renewed (30s when 0). The agent does not end a blocking query whose
	// client went away: a cancelled watch holds one of its connections (of
	// limits.http_max_conns_per_client, 200 by default, per client address)
	// until the query's wait ends, up to WatchWait plus Consul's jitter of a
	// sixteenth. Shorter frees them sooner, at one renewal per watch per
	// WatchWait.
	WatchWait time.Duration
}

// Consul's fixed limit on operations in one /v1/txn.
const serverTxnOps = 128

// A coord op takes at most this many Consul txn ops (an ephemeral
// sequential create: parent check-and-set, check-not-exists, lock, counter).
const opsPerOp = 4

// Store is a coord.Store on Consul.
type Store struct {
	cli    *api.Client
	prefix string
	ttl    time.Duration
	reqTO  time.Duration
	limits coord.Limits
	bg     context.Context
	stop   context.CancelFunc

	mu   sync.Mutex
	life lifecycle.State // the store's: ended by Close
	sess *session

	watchWait time.Duration          // Config.WatchWait
	transport *http.Transport        // the client's: its idle connections close with the store
	maxReq    int                    // the agent's limit on a request body
	seen      resolve.Stamp          // the largest index a reply carried
	claims    resolve.Claims         // nodes that creates with lost replies took
	known     knownKeys              // keys' states last seen, for setsFast
	oldAgent  atomic.Bool            // the agent refused get-or-empty (before Consul 1.14)
	loseReply atomic.Pointer[func()] // a test's fault: lose the next applied commit's answer, then run it
	// loseRefusal is a test's fault: lose the next refused commit's
	// answer, then run it.
	loseRefusal atomic.Pointer[func()]
	dropWrite   atomic.Bool   // a test's fault: lose the next commit on its way
	markID      string        // random, for the children marks' values (newMark)
	marks       atomic.Uint64 // children marks written
	// a test's fault: run once between the next plan and its commit
	beforeCommit atomic.Pointer[func()]
}

var _ coord.Store = (*Store)(nil)

// configOnly is the store's HTTP round tripper: each request carries the
// store's token (none when it has none) and no namespace or partition,
// whatever consul/api took from the environment. A request that already
// matches goes on unchanged; one that does not is cloned, not modified.
//
// It also keeps the status of a failed transaction. consul/api reports a
// /v1/txn answered other than 200 or 409 by its body alone ("Failed
// request: ..."), and the status is what tells a write the agent turned away
// before any server took it (429, 503) from one that may have been applied:
// such an answer comes back as the api's StatusError, as other calls'
// failures do.
type configOnly struct {
	next  http.RoundTripper
	token string
}

func (c configOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.send(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/v1/txn") || resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusConflict {
		return resp, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return nil, api.StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(body))}
}

func (c configOnly) send(r *http.Request) (*http.Response, error) {
	scoped := strings.Contains(r.URL.RawQuery, "ns=") || strings.Contains(r.URL.RawQuery, "partition=")
	if r.Header.Get("X-Consul-Token") == c.token && !scoped {
		return c.next.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	if c.token == "" {
		r.Header.Del("X-Consul-Token")
	} else {
		r.Header.Set("X-Consul-Token", c.token)
	}
	if scoped {
		q := r.URL.Query()
		q.Del("ns")
		q.Del("partition")
		r.URL.RawQuery = q.Encode()
	}
	return c.next.RoundTrip(r)
}

// New connects to a Consul agent.
func New(ctx context.Context, cfg Config) (*Store, error) {
	// Pooled connections: a call reuses an idle connection to the agent
	// instead of dialing (a new TCP connection per call cost a quarter of
	// the client's CPU and counted against the agent's limit per client
	// address while it closed).
	// Only what Config says. consul/api fills what a Config leaves empty
	// from CONSUL_* environment variables (the token, TLS files and
	// verification, the namespace and partition): the HTTP client is built
	// here from Config's TLS alone, and every request leaves with Config's
	// token (none when empty) and no namespace or partition.
	transport := cleanhttp.DefaultPooledTransport()
	hc, err := api.NewHttpClient(transport, cfg.TLS)
	if err != nil {
		return nil, coord.Errorf("connect", cfg.Address, fmt.Errorf("%w: %v", coord.ErrInvalidArgument, err))
	}
	hc.Transport = configOnly{next: transport, token: cfg.Token}
	ac := &api.Config{Address: "127.0.0.1:8500", Scheme: "http", Transport: transport, HttpClient: hc}
	if cfg.Address != "" {
		ac.Address = cfg.Address
	}
	if cfg.Scheme != "" {
		ac.Scheme = cfg.Scheme
	}
	ac.Token = cfg.Token
	ac.TLSConfig = cfg.TLS
	ac.Datacenter = cfg.Datacenter
	cli, err := api.NewClient(ac)
	if err != nil {
		return nil, coord.Errorf("connect", ac.Address, fmt.Errorf("%w: %v", coord.ErrInvalidArgument, err))
	}
	s := &Store{cli: cli, transport: ac.Transport, prefix: strings.Trim(cfg.Prefix, "/"), ttl: cfg.SessionTTL, reqTO: cfg.RequestTimeout, markID: rand.Text()}
	if s.prefix == "" {
		s.prefix = "coord"
	}
	if err := checkPrefix(s.prefix); err != nil {
		return nil, coord.Errorf("connect", cfg.Prefix, err)
	}
	if s.ttl == 0 {
		s.ttl = 10 * time.Second
	}
	s.watchWait = cfg.WatchWait
	if s.watchWait <= 0 {
		s.watchWait = 30 * time.Second
	}
	if s.reqTO == 0 {
		s.reqTO = 15 * time.Second
	}
	req := cfg.MaxRequestBytes
	if req == 0 {
		req = 512 << 10
	}
	// Values travel base64-encoded inside the JSON body of /v1/txn. A coord
	// op is up to opsPerOp Consul ops (an ephemeral create under a parent
	// of its own: the parent's check-and-set, a check that the key is
	// missing, the set, the session's lock), each about 110 bytes of JSON
	// beside its key (the prefix and a path of ordinary length, 64 bytes)
	// and its value; the lock names the session (about 40 more). TxnOpBytes
	// is that room in bytes of data (the body holds 4/3 as many). Longer
	// keys can push a body over; checkBody refuses those before sending.
	data := (req - 16<<10) / 4 * 3
	opBytes := (3*(opsPerOp*(110+len(s.prefix)+1+64)+40) + 3) / 4
	// A set is one check-and-set, a check one index check, a delete four
	// (the key's index check and delete, its child counter's and its
	// children mark's), as many as the largest op: deletes get no more
	// room than MaxTxnOps.
	s.limits = coord.Limits{MaxValueSize: data, MaxTxnOps: serverTxnOps / opsPerOp, MaxTxnSetOps: serverTxnOps,
		MaxTxnDeleteOps: serverTxnOps / 4, MaxTxnBytes: data + opBytes, TxnOpBytes: opBytes}
	s.maxReq = req
	s.bg, s.stop = context.WithCancel(context.Background())
	// Fail now, not at the first call, when the agent does not answer.
	q, cancel, err := s.opts(ctx)
	if err != nil {
		return nil, coord.Errorf("connect", ac.Address, err)
	}
	defer cancel()
	if _, _, err := cli.KV().Get(s.prefix, q); err != nil {
		return nil, coord.Errorf("connect", ac.Address, mapErr(ctx, err))
	}
	return s, nil
}

// Client is the underlying Consul client.
func (s *Store) Client() *api.Client { return s.cli }

// Limits implements coord.Store.
func (s *Store) Limits() coord.Limits { return s.limits }

// checkPrefix refuses a prefix that could share keys with another store's:
// a component that is empty, "nodes", "seq" or "kids" would put the prefix
// "p/nodes", "p/seq" or "p/kids" inside the keys of the store on "p".
func checkPrefix(prefix string) error {
	for _, c := range strings.Split(prefix, "/") {
		if c == "" || c == "nodes" || c == "seq" || c == "kids" || c == "." || c == ".." {
			return fmt.Errorf("%w: prefix %q: component %q is empty, reserved or relative", coord.ErrInvalidArgument, prefix, c)
		}
		for _, r := range c {
			if r < 0x20 || r == 0x7f {
				return fmt.Errorf("%w: prefix %q: control character", coord.ErrInvalidArgument, prefix)
			}
		}
	}
	return nil
}

func (s *Store) key(p string) string {
	if p == "/" {
		return s.prefix + "/nodes"
	}
	return s.prefix + "/nodes" + p
}

func (s *Store) seqKey(p string) string {
	if p == "/" {
		return s.prefix + "/seq"
	}
	return s.prefix + "/seq" + p
}

// kidsKey is the children mark of the node at p: a key that every plain
// create of a child sets to a new value (see plan).
func (s *Store) kidsKey(p string) string {
	if p == "/" {
		return s.prefix + "/kids"
	}
	return s.prefix + "/kids" + p
}

// newMark is a children mark's value that no store has written before: the
// store's random id and a count.
func (s *Store) newMark() []byte {
	return fmt.Appendf(nil, "%s.%d", s.markID, s.marks.Add(1))
}

// opts returns query options bound to ctx and the request timeout.
func (s *Store) opts(ctx context.Context) (*api.QueryOptions, context.CancelFunc, error) {
	return s.waitOpts(ctx, 0)
}

// waitOpts is opts for a blocking query that waits up to wait (none when
// 0): bounded past its wait (plus the agent's jitter of up to a sixteenth,
// plus the request timeout), so that the client never cuts a query the
// agent would still be holding. (A query cut by its client keeps its agent
// connection until its wait ends: cutting queries at the request timeout
// piled up connections.)
func (s *Store) waitOpts(ctx context.Context, wait time.Duration) (*api.QueryOptions, context.CancelFunc, error) {
	if s.life.Ended() {
		return nil, nil, coord.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	c, cancel := lifecycle.Bound(ctx, wait+wait/16+s.reqTO)
	return (&api.QueryOptions{RequireConsistent: true, WaitTime: wait}).WithContext(c), cancel, nil
}

// keys lists the keys under prefix up to the next "/", tried again while
// the agent is unreachable or failing (a blocking query included).
func (s *Store) keys(prefix string, q *api.QueryOptions) ([]string, *api.QueryMeta, error) {
	var keys []string
	var meta *api.QueryMeta
	err := retry.Do(q.Context(), transientRead, func() error {
		var err error
		keys, meta, err = s.cli.KV().Keys(prefix, "/", q)
		return err
	})
	return keys, meta, err
}

// notApplied: the request never reached the agent (the connection was
// refused) or the agent turned it away before doing anything (429 Too Many
// Requests, 503 Service Unavailable, or a 500 that no server took it).
// Repeating it is safe, even a write.
func notApplied(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	code := statusCode(err)
	// The agent answered that no server took the request: the cluster has
	// no leader (an election, or no quorum), or the agent could not connect
	// to the server it forwards to (one that stopped). A 500. Not "EOF" or
	// "leadership lost while committing log": those may have been applied.
	if msg := err.Error(); code == http.StatusInternalServerError {
		if strings.Contains(msg, "No cluster leader") || strings.Contains(msg, "rpc error getting client") {
			return true
		}
	}
	return code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable
}

// transientRead: a read failed for a passing reason (notApplied, a server
// error such as "No cluster leader", a connection lost mid-request).
// Repeating a read is safe.
func transientRead(err error) bool {
	if notApplied(err) || statusCode(err) >= 500 {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// statusCode is the HTTP status of a failed Consul call (0 when none).
func statusCode(err error) int {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	// Some calls of the api package report the status only in the text.
	msg := err.Error()
	if i := strings.Index(msg, "Unexpected response code: "); i >= 0 {
		var code int
		if _, err := fmt.Sscanf(msg[i+len("Unexpected response code: "):], "%d", &code); err == nil {
			return code
		}
	}
	return 0
}

func mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return coord.InFlightErr(ctx)
	}
	for _, sentinel := range []error{coord.ErrNoNode, coord.ErrNodeExists, coord.ErrBadVersion, coord.ErrNotEmpty,
		coord.ErrEphemeralParent, coord.ErrSessionExpired, coord.ErrClosed, coord.ErrTooLarge, coord.ErrPermission,
		coord.ErrUnavailable, coord.ErrInvalidArgument} {
		if errors.Is(err, sentinel) {
			return err
		}
	}
	var se api.StatusError
	if errors.As(err, &se) {
		switch se.Code {
		case http.StatusForbidden, http.StatusUnauthorized:
			return fmt.Errorf("%w: %v", coord.ErrPermission, err)
		case http.StatusRequestEntityTooLarge:
			return fmt.Errorf("%w: %v", coord.ErrTooLarge, err)
		}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Permission denied"), strings.Contains(msg, "ACL not found"):
		return fmt.Errorf("%w: %v", coord.ErrPermission, err)
	case statusCode(err) == http.StatusRequestEntityTooLarge, strings.Contains(msg, "too large"):
		// Not a bare "413" in the text: the agent's port can hold it
		// (a lost reply from 127.0.0.1:41333 was taken for ErrTooLarge).
		return fmt.Errorf("%w: %v", coord.ErrTooLarge, err)
	}
	return fmt.Errorf("%w: %v", coord.ErrUnavailable, err)
}

func statOf(kv *api.KVPair) coord.Stat {
	return coord.Stat{Version: int64(kv.Flags), Ephemeral: kv.Session != "", Owner: kv.Session, Created: int64(kv.CreateIndex)}
}

func (s *Store) get(ctx context.Context, path string) (*api.KVPair, *api.QueryMeta, error) {
	q, cancel, err := s.opts(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer cancel()
	var kv *api.KVPair
	var meta *api.QueryMeta
	err = retry.Do(q.Context(), transientRead, func() error {
		var err error
		kv, meta, err = s.cli.KV().Get(s.key(path), q)
		return err
	})
	if err != nil {
		return nil, nil, mapErr(ctx, err)
	}
	s.seen.See(int64(meta.LastIndex))
	if path != "/" {
		s.known.see(s.key(path), kv)
	}
	return kv, meta, nil
}

// Get implements coord.Store.
func (s *Store) Get(ctx context.Context, path string) ([]byte, coord.Stat, error) {
	if err := coord.CheckCall(ctx, "get", path, nil, 0, 0, s.limits); err != nil {
		return nil, coord.Stat{}, err
	}
	if path == "/" {
		if _, _, err := s.get(ctx, path); err != nil {
			return nil, coord.Stat{}, coord.Errorf("get", path, err)
		}
		return nil, coord.Stat{}, nil
	}
	kv, _, err := s.get(ctx, path)
	if err != nil {
		return nil, coord.Stat{}, coord.Errorf("get", path, err)
	}
	if kv == nil {
		return nil, coord.Stat{}, coord.Errorf("get", path, coord.ErrNoNode)
	}
	return kv.Value, statOf(kv), nil
}

// GetMany implements coord.Store: the keys are read in read-only
// transactions of up to Consul's 128 ops (a missing key fails its
// transaction, which then names every missing key: they are dropped and the
// rest read again).
func (s *Store) GetMany(ctx context.Context, paths ...string) ([]coord.GetResult, error) {
	if err := coord.CheckGetMany(ctx, paths); err != nil {
		return nil, err
	}
	keys := make([]string, len(paths))
	for i, p := range paths {
		keys[i] = s.key(p)
	}
	kvs, err := s.getKeys(ctx, keys)
	if err != nil {
		first := ""
		if len(paths) > 0 {
			first = paths[0]
		}
		return nil, coord.Errorf("getmany", first, err)
	}
	res := make([]coord.GetResult, len(paths))
	for i, kv := range kvs {
		switch {
		case paths[i] == "/":
		case kv == nil:
			res[i].Err = coord.Errorf("getmany", paths[i], coord.ErrNoNode)
		default:
			res[i] = coord.GetResult{Data: kv.Value, Stat: statOf(kv)}
		}
	}
	return res, nil
}

// readsInFlight bounds the read transactions of one getKeys in flight at
// once (1024 keys are 8 transactions: 26 ms one after the other on a
// loopback agent).
const readsInFlight = 4

// errOldAgent is how a read transaction of getKeys says that the agent
// does not know get-or-empty.
var errOldAgent = errors.New("the agent does not know get-or-empty")

// getKeys reads keys (nil for a missing one) in as few consistent
// read-only transactions as Consul takes, a few at once: one per 128 keys, with Consul's
// get-or-empty (1.14 and later), which answers a missing key with an empty
// entry. An older agent refuses that verb; getKeys then reads with get,
// which fails the transaction on a missing key (getKeysOld).
func (s *Store) getKeys(ctx context.Context, keys []string) ([]*api.KVPair, error) {
	if len(keys) == 0 {
		_, cancel, err := s.opts(ctx) // refuses on a closed store
		if err != nil {
			return nil, err
		}
		cancel()
		return []*api.KVPair{}, nil
	}
	if s.oldAgent.Load() {
		return s.getKeysOld(ctx, keys)
	}
	out := make([]*api.KVPair, len(keys))
	chunks := (len(keys) + serverTxnOps - 1) / serverTxnOps
	err := fanout.Each(ctx, chunks, readsInFlight, func(ctx context.Context, c int) error {
		start := c * serverTxnOps
		chunk := keys[start:min(start+serverTxnOps, len(keys))]
		ops := make(api.TxnOps, len(chunk))
		for j, k := range chunk {
			ops[j] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: k}}
		}
		ok, resp, err := s.readTxn(ctx, ops)
		if err != nil {
			return err
		}
		if !ok {
			for _, e := range resp.Errors {
				if strings.Contains(e.What, "unknown KV verb") {
					s.oldAgent.Store(true)
					return errOldAgent
				}
			}
			return readFailed(resp, chunk[0])
		}
		if len(resp.Results) != len(chunk) {
			return fmt.Errorf("%w: a read of %d keys answered %d", coord.ErrUnavailable, len(chunk), len(resp.Results))
		}
		for j, r := range resp.Results {
			kv := r.KV
			if kv == nil || kv.Key != chunk[j] {
				return fmt.Errorf("%w: a read of %s answered another key", coord.ErrUnavailable, chunk[j])
			}
			if kv.ModifyIndex == 0 {
				kv = nil // the empty entry of a missing key
			} else {
				s.seen.See(int64(kv.ModifyIndex))
			}
			out[start+j] = kv
			s.known.see(chunk[j], kv)
		}
		return nil
	})
	if errors.Is(err, errOldAgent) {
		return s.getKeysOld(ctx, keys)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sendTxn sends ops to /v1/txn, again while retryable says a failure
// allows it. Errors are the client's, unmapped.
func (s *Store) sendTxn(ctx context.Context, ops api.TxnOps, retryable func(error) bool) (bool, *api.TxnResponse, error) {
	q, cancel, err := s.opts(ctx)
	if err != nil {
		return false, nil, err
	}
	defer cancel()
	var ok bool
	var resp *api.TxnResponse
	err = retry.Do(q.Context(), retryable, func() error {
		var err error
		ok, resp, _, err = s.cli.Txn().Txn(ops, q)
		return err
	})
	return ok, resp, err
}

// readTxn sends a read-only transaction, retried on transient failures.
func (s *Store) readTxn(ctx context.Context, ops api.TxnOps) (bool, *api.TxnResponse, error) {
	ok, resp, err := s.sendTxn(ctx, ops, transientRead)
	if err != nil {
		return false, nil, mapErr(ctx, err)
	}
	return ok, resp, nil
}

// readFailed is the error of a read transaction that failed other than on
// missing keys.
func readFailed(resp *api.TxnResponse, first string) error {
	for _, e := range resp.Errors {
		if strings.Contains(e.What, "Permission denied") || strings.Contains(e.What, "ACL") {
			return fmt.Errorf("%w: %s", coord.ErrPermission, e.What)
		}
	}
	if len(resp.Errors) > 0 {
		return fmt.Errorf("%w: reading %s: %s", coord.ErrUnavailable, first, resp.Errors[0].What)
	}
	return fmt.Errorf("%w: a read transaction failed without saying why", coord.ErrUnavailable)
}

// getKeysOld is getKeys for an agent without get-or-empty: a missing key
// fails its transaction, which then names every missing key; they are
// dropped and the rest read again.
func (s *Store) getKeysOld(ctx context.Context, keys []string) ([]*api.KVPair, error) {
	out := make([]*api.KVPair, len(keys))
	for start := 0; start < len(keys); start += serverTxnOps {
		todo := make([]int, 0, serverTxnOps)
		for i := start; i < min(start+serverTxnOps, len(keys)); i++ {
			todo = append(todo, i)
		}
		for len(todo) > 0 {
			ops := make(api.TxnOps, len(todo))
			for j, i := range todo {
				ops[j] = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGet, Key: keys[i]}}
			}
			ok, resp, err := s.readTxn(ctx, ops)
			if err != nil {
				return nil, err
			}
			if ok {
				for j, r := range resp.Results {
					if j < len(todo) && r.KV != nil {
						out[todo[j]] = r.KV
						s.seen.See(int64(r.KV.ModifyIndex))
					}
				}
				for _, i := range todo {
					s.known.see(keys[i], out[i])
				}
				break
			}
			// Only missing keys may fail a read: drop them, read the rest.
			missing := map[int]bool{}
			for _, e := range resp.Errors {
				if e.OpIndex < 0 || e.OpIndex >= len(todo) || !strings.Contains(e.What, "doesn't exist") {
					return nil, readFailed(resp, keys[todo[0]])
				}
				missing[e.OpIndex] = true
			}
			if len(missing) == 0 {
				return nil, readFailed(resp, keys[todo[0]])
			}
			kept := todo[:0]
			for j, i := range todo {
				if !missing[j] {
					kept = append(kept, i)
				}
			}
			if len(kept) == len(todo) { // nothing dropped: it would fail again
				return nil, readFailed(resp, keys[todo[0]])
			}
			todo = kept
		}
	}
	return out, nil
}

// Exists implements coord.Store.
func (s *Store) Exists(ctx context.Context, path string) (coord.Stat, bool, error) {
	if err := coord.CheckCall(ctx, "exists", path, nil, 0, 0, s.limits); err != nil {
		return coord.Stat{}, false, err
	}
	kv, _, err := s.get(ctx, path)
	if err != nil {
		return coord.Stat{}, false, coord.Errorf("exists", path, err)
	}
	if path == "/" {
		return coord.Stat{}, true, nil
	}
	if kv == nil {
		return coord.Stat{}, false, nil
	}
	return statOf(kv), true, nil
}

// Children implements coord.Store.
func (s *Store) Children(ctx context.Context, path string) ([]string, error) {
	if err := coord.CheckCall(ctx, "children", path, nil, 0, 0, s.limits); err != nil {
		return nil, err
	}
	// The children first: a node that has any exists (a child is only made
	// under a node that exists, and a node is only deleted without
	// children), so one request answers. Only an empty listing needs the
	// node's own, to tell "no children" from "no node".
	q, cancel, err := s.opts(ctx)
	if err != nil {
		return nil, coord.Errorf("children", path, err)
	}
	kids, _, err := s.list(ctx, q, path)
	cancel()
	if err != nil {
		return nil, coord.Errorf("children", path, err)
	}
	if len(kids) > 0 || path == "/" {
		return kids, nil
	}
	// No children: the node must exist when it was read, which is after the
	// listing (a point between them, when it existed without children,
	// there was: its children come after it).
	kv, _, err := s.get(ctx, path)
	if err != nil {
		return nil, coord.Errorf("children", path, err)
	}
	if kv == nil {
		return nil, coord.Errorf("children", path, coord.ErrNoNode)
	}
	return kids, nil
}

// children lists the direct children and tells whether the node exists.
// With waitIndex > 0 it is a blocking query on the node and its subtree.
func (s *Store) children(ctx context.Context, path string, waitIndex uint64, wait time.Duration) ([]string, bool, uint64, error) {
	q, cancel, err := s.waitOpts(ctx, wait)
	if err != nil {
		return nil, false, 0, err
	}
	defer cancel()
	exists := path == "/"
	var index uint64
	if !exists || waitIndex > 0 {
		// The node and everything under it (and siblings sharing its name
		// as a prefix, which only cost a spurious wake-up).
		wq := *q
		wq.WaitIndex = waitIndex
		keys, meta, err := s.keys(s.key(path), &wq)
		if err != nil {
			return nil, false, 0, mapErr(ctx, err)
		}
		index = meta.LastIndex
		for _, k := range keys {
			if k == s.key(path) {
				exists = true
			}
		}
		if path == "/" {
			exists = true
		}
	}
	if !exists {
		return nil, false, index, nil
	}
	kids, last, err := s.list(ctx, q, path)
	if err != nil {
		return nil, false, 0, err
	}
	if index == 0 {
		index = last
	}
	return kids, true, index, nil
}

// list lists the direct children of path, sorted, whether or not it exists.
func (s *Store) list(ctx context.Context, q *api.QueryOptions, path string) ([]string, uint64, error) {
	base := s.key(path) + "/"
	keys, meta, err := s.keys(base, q)
	if err != nil {
		return nil, 0, mapErr(ctx, err)
	}
	seen := map[string]bool{}
	kids := make([]string, 0, len(keys))
	for _, k := range keys {
		name := strings.TrimSuffix(strings.TrimPrefix(k, base), "/")
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		kids = append(kids, name)
	}
	sort.Strings(kids)
	return kids, meta.LastIndex, nil
}

// Create implements coord.Store.
func (s *Store) Create(ctx context.Context, path string, data []byte, mode coord.Mode) (string, error) {
	if err := coord.CheckCall(ctx, "create", path, data, mode, 0, s.limits); err != nil {
		return "", err
	}
	return resolve.Create(ctx, s, &s.claims, s.reqTO, path, data, mode, s.seen.Load,
		func() (string, error) {
			res, err := s.Txn(ctx, coord.CreateOp(path, data, mode))
			if err != nil {
				return "", coord.Errorf("create", path, unwrapTxn(err))
			}
			return res[0].Path, nil
		})
}

// Set implements coord.Store.
func (s *Store) Set(ctx context.Context, path string, data []byte, version int64) (coord.Stat, error) {
	if err := coord.CheckCall(ctx, "set", path, data, 0, version, s.limits); err != nil {
		return coord.Stat{}, err
	}
	res, err := s.Txn(ctx, coord.SetOp(path, data, version))
	if err != nil {
		return coord.Stat{}, coord.Errorf("set", path, unwrapTxn(err))
	}
	return res[0].Stat, nil
}

// Delete implements coord.Store.
func (s *Store) Delete(ctx context.Context, path string, version int64) error {
	if err := coord.CheckCall(ctx, "delete", path, nil, 0, version, s.limits); err != nil {
		return err
	}
	if _, err := s.Txn(ctx, coord.DeleteOp(path, version)); err != nil {
		return coord.Errorf("delete", path, unwrapTxn(err))
	}
	return nil
}

func unwrapTxn(err error) error {
	var te *coord.TxnError
	if errors.As(err, &te) {
		return te.Err
	}
	var pe *coord.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Close implements coord.Store: it destroys the session, which deletes its
// ephemeral nodes, and ends every watch.
func (s *Store) Close() error {
	s.mu.Lock()
	first := s.life.End(coord.ErrClosed)
	sess := s.sess
	s.mu.Unlock()
	if !first {
		return nil
	}
	s.stop()
	if sess != nil && sess.Err() == nil {
		c, cancel := context.WithTimeout(context.Background(), s.reqTO)
		_, _ = s.cli.Session().Destroy(sess.id, (&api.WriteOptions{}).WithContext(c))
		cancel()
		sess.End(coord.ErrClosed)
	}
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	return nil
}
