// Package models is the Codis 2.x models API on any coord.Store: slots,
// server groups, proxies, fences, actions that proxies confirm, and the
// product lock.
//
// Every function and method of Codis 2's models package is here under the
// same name; code ports by adding a context.Context and passing a
// coord.Store where it passed a ZooKeeper connection. The nodes, their kinds,
// sequence names and JSON bytes are exactly Codis 2's (see the paths below),
// so on ZooKeeper (zkstore, no chroot) Codis 2.x proxies, dashboards and
// tools read and write the same data. On etcd and Consul the logical layout
// is the same.
//
// Where Codis 2 is racy or non-atomic this package does better without
// changing the data: every read-modify-write is versioned and retried on
// conflict, multi-node changes are transactions (split only where a
// backend's limits force it), scans tolerate a node vanishing under them, and
// confirmations wait on a children watch instead of polling every 500 ms.
//
// Layout, with R = /zk/codis/db_<product>:
//
//	R/slots/slot_<id>                 Slot JSON
//	R/servers/group_<id>              empty
//	R/servers/group_<id>/<host:port>  Server JSON
//	R/proxy/<proxy id>                ProxyInfo JSON, ephemeral
//	R/fence/<proxy addr>              empty
//	R/actions/<seq>                   Action JSON
//	R/ActionResponse/<seq>            Action JSON
//	R/ActionResponse/<seq>/<proxy id> ProxyInfo JSON of the answering proxy
//	R/LOCK/lock-<seq>                 {"desc":…,"hostname":…,"pid":…}, ephemeral
package models

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/coordkit/coord/coord"
)

// Garbage collection kinds for ActionGC.
const (
	GC_TYPE_N   = iota + 1 // keep the newest keep actions
	GC_TYPE_SEC            // delete actions older than keep seconds
)

// Proxy states.
const (
	PROXY_STATE_ONLINE       = "online"
	PROXY_STATE_OFFLINE      = "offline"
	PROXY_STATE_MARK_OFFLINE = "mark_offline"
)

// Redis server types within a group.
const (
	SERVER_TYPE_MASTER  string = "master"
	SERVER_TYPE_SLAVE   string = "slave"
	SERVER_TYPE_OFFLINE string = "offline"
)

// DEFAULT_SLOT_NUM is the number of slots of a product.
const (
	DEFAULT_SLOT_NUM = 1024
)

// INVALID_ID marks an unset group id.
const (
	INVALID_ID = -1
)

// Errors of Codis 2, kept under their names and texts.
var (
	ErrNodeExists         = errors.New("node already exists")
	ErrReceiverTimeout    = errors.New("receiver timeout")
	ErrSlotAlreadyExists  = errors.New("slots already exists")
	ErrUnknownProxyStatus = errors.New("unknown status, should be (online offline)")
	ErrUnknownSlotStatus  = errors.New("unknown slot status, slot status should be (online, offline, migrate, pre_migrate)")
)

// Errors this package adds, for inputs and states Codis 2 reported as text.
var (
	// ErrInvalidProductName: empty, or not usable as one path component.
	ErrInvalidProductName = errors.New("invalid product name")
	// ErrInvalidSlotId: outside 0..DEFAULT_SLOT_NUM-1, or a range with from > to.
	ErrInvalidSlotId = errors.New("invalid slot id")
	// ErrInvalidGroupId: a negative group id where a group is needed.
	ErrInvalidGroupId = errors.New("invalid group id")
	// ErrGroupNotFound: the server group does not exist.
	ErrGroupNotFound = errors.New("group not found")
	// ErrGroupInUse: a slot, or a migration, still uses the group.
	ErrGroupInUse = errors.New("group is in use")
	// ErrServerNotFound: no server with that address in the group.
	ErrServerNotFound = errors.New("server not found")
	// ErrRemoveMaster: the master cannot be removed; promote another first.
	ErrRemoveMaster = errors.New("cannot remove master, use promote first")
	// ErrInvalidServer: an unknown server type or an address that is not host:port.
	ErrInvalidServer = errors.New("invalid server")
	// ErrSlotNotOffline: a slot range may only be assigned from offline.
	ErrSlotNotOffline = errors.New("slot is not offline")
	// ErrSlotsNotReady: a proxy goes online only when every slot is online
	// or migrating, and assigned to a group.
	ErrSlotsNotReady = errors.New("slots not ready")
	// ErrFenceWithoutProxy: a fence has no online proxy behind it, so a
	// proxy may not have stopped cleanly; confirmed actions are refused.
	ErrFenceWithoutProxy = errors.New("some proxies may not stop cleanly")
	// ErrMarkOfflineTimeout: a proxy set to mark_offline did not go down in time.
	ErrMarkOfflineTimeout = errors.New("proxy did not go offline in time")
	// ErrMalformed: a node holds data that is not what its kind should hold.
	ErrMalformed = errors.New("malformed data in store")
	// ErrInvalidArgument: another argument is out of its range.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrRedis: a Redis server refused a command or could not be reached.
	ErrRedis = errors.New("redis")
)

// Error wraps a failure with the product and the subject it concerns.
type Error struct {
	Op   string // the models function
	What string // what it was about: a path, a slot, an address
	Err  error
}

func (e *Error) Error() string {
	msg := "<nil>"
	if e.Err != nil {
		// A models error nested in another names the package once:
		// "models: Op what: Op2 what2: why".
		msg = strings.TrimPrefix(e.Err.Error(), "models: ")
	}
	if e.What == "" {
		return fmt.Sprintf("models: %s: %s", e.Op, msg)
	}
	return fmt.Sprintf("models: %s %s: %s", e.Op, e.What, msg)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func errorf(op, what string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Op: op, What: what, Err: err}
}

// MaxProductNameLen is the longest product name, in bytes.
const MaxProductNameLen = 128

// ValidateProductName checks that name can name a product on every backend:
// 1 to MaxProductNameLen bytes of ASCII letters, digits, '_', '-' and '.',
// and not "." or "..". The rule is the same whatever the store, so that a
// product that can be made on one backend can be copied to any other; and it
// is checked before anything is written.
func ValidateProductName(name string) error {
	if err := validName(name, MaxProductNameLen, ""); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrInvalidProductName, name, err)
	}
	return nil
}

// validName checks a name used as one path component: 1 to max bytes of
// ASCII letters, digits, '_', '-', '.' and the bytes of extra; not "." or "..".
func validName(name string, max int, extra string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case len(name) > max:
		return fmt.Errorf("%d bytes, longer than %d", len(name), max)
	case name == "." || name == "..":
		return errors.New("a relative path component")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || strings.IndexByte(extra, c) >= 0 {
			continue
		}
		return fmt.Errorf("byte %d is %q: only ASCII letters, digits and _-.%s are allowed", i, rune(c), extra)
	}
	return nil
}

// MaxProxyIdLen is the longest proxy id, in bytes.
const MaxProxyIdLen = 128

// validProxyId checks a proxy id (the name of its node): the product-name
// rule, with ':' and '@' allowed too.
func validProxyId(id string) error {
	if err := validName(id, MaxProxyIdLen, ":@"); err != nil {
		return fmt.Errorf("%w: proxy id %q: %v", ErrInvalidArgument, id, err)
	}
	return nil
}

// IsLeafNode reports whether path, a path in the store, is one of the nodes
// Codis 2 makes as leaves: R/dashboard, a lock node, a slot, a server, a
// proxy, a fence, an action, an answer under R/ActionResponse/<seq>, a
// migrate task. On ZooKeeper Codis 2 gives leaves the ACL world:anyone with
// read, write and admin only (no create or delete below them) and every other
// node all permissions; zkstore.Config{ACLFor: zkstore.LeafACL(IsLeafNode)}
// writes the same.
func IsLeafNode(path string) bool {
	const root = "/zk/codis/db_"
	if !strings.HasPrefix(path, root) {
		return false
	}
	parts := strings.Split(path[len(root):], "/") // product, kind, ...
	if len(parts) < 2 || parts[0] == "" {
		return false
	}
	switch parts[1] {
	case "dashboard":
		return len(parts) == 2
	case "LOCK", "slots", "proxy", "fence", "actions", "migrate_tasks":
		return len(parts) == 3
	case "servers", "ActionResponse":
		return len(parts) == 4
	}
	return false
}

// ValidateAddr checks a Redis or proxy address: host:port where host is a
// DNS name (letters, digits, '-', '_' and '.'), an IPv4 address or a
// bracketed IPv6 address, and port is a number from 1 to 65535.
func ValidateAddr(addr string) error {
	bad := func(why string) error { return fmt.Errorf("address %q is not host:port: %s", addr, why) }
	if len(addr) > 255 {
		return bad("longer than 255 bytes")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return bad(strings.TrimPrefix(err.Error(), "address "+addr+": "))
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
		return bad(fmt.Sprintf("port %q is not a number from 1 to 65535", port))
	}
	if host == "" {
		return bad("no host")
	}
	if strings.HasPrefix(addr, "[") { // IPv6: net.SplitHostPort took off the brackets
		if ip := net.ParseIP(host); ip == nil {
			return bad(fmt.Sprintf("host %q is not an IPv6 address", host))
		}
		return nil
	}
	if err := validName(host, 253, ""); err != nil {
		return bad(fmt.Sprintf("host %q: %v", host, err))
	}
	return nil
}

func validSlot(id int) error {
	if id < 0 || id >= DEFAULT_SLOT_NUM {
		return fmt.Errorf("%w: %d is outside 0..%d", ErrInvalidSlotId, id, DEFAULT_SLOT_NUM-1)
	}
	return nil
}

// ProductPath is R, the root of a product: /zk/codis/db_<product>.
func ProductPath(productName string) string { return "/zk/codis/db_" + productName }

// GetSlotBasePath is R/slots.
func GetSlotBasePath(productName string) string { return ProductPath(productName) + "/slots" }

// GetSlotPath is R/slots/slot_<id>.
func GetSlotPath(productName string, slotId int) string {
	return fmt.Sprintf("%s/slot_%d", GetSlotBasePath(productName), slotId)
}

// GetProxyPath is R/proxy.
func GetProxyPath(productName string) string { return ProductPath(productName) + "/proxy" }

// GetProxyFencePath is R/fence.
func GetProxyFencePath(productName string) string { return ProductPath(productName) + "/fence" }

// GetWatchActionPath is R/actions.
func GetWatchActionPath(productName string) string { return ProductPath(productName) + "/actions" }

// GetActionResponsePath is R/ActionResponse.
func GetActionResponsePath(productName string) string {
	return ProductPath(productName) + "/ActionResponse"
}

// GetServerGroupsPath is R/servers.
func GetServerGroupsPath(productName string) string { return ProductPath(productName) + "/servers" }

// GetGroupPath is R/servers/group_<id>.
func GetGroupPath(productName string, groupId int) string {
	return fmt.Sprintf("%s/group_%d", GetServerGroupsPath(productName), groupId)
}

// GetLockPath is R/LOCK.
func GetLockPath(productName string) string { return ProductPath(productName) + "/LOCK" }

// GetDashboardPath is R/dashboard.
func GetDashboardPath(productName string) string { return ProductPath(productName) + "/dashboard" }

// Products lists the names of the products in the store (the children
// db_<name> of /zk/codis), sorted. A child whose name is not a valid product
// name is left out, as Codis 2 tools would not see it as a product.
func Products(ctx context.Context, store coord.Store) ([]string, error) {
	kids, err := store.Children(ctx, "/zk/codis")
	if errors.Is(err, coord.ErrNoNode) {
		return []string{}, nil
	}
	if err != nil {
		return nil, errorf("Products", "/zk/codis", err)
	}
	out := []string{}
	for _, k := range kids {
		if name, ok := strings.CutPrefix(k, "db_"); ok && ValidateProductName(name) == nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}
