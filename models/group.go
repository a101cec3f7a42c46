package models

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/redisc"
)

// RedisTimeout bounds each command sent to a Redis server.
var RedisTimeout = 5 * time.Second

// GroupExists reports whether group groupId exists.
func GroupExists(ctx context.Context, store coord.Store, productName string, groupId int) (bool, error) {
	if err := ValidateProductName(productName); err != nil {
		return false, errorf("GroupExists", "", err)
	}
	if groupId < 0 {
		return false, errorf("GroupExists", productName, fmt.Errorf("%w: %d", ErrInvalidGroupId, groupId))
	}
	_, ok, err := store.Exists(ctx, GetGroupPath(productName, groupId))
	return ok, errorf("GroupExists", GetGroupPath(productName, groupId), err)
}

// GetGroup reads group groupId with its servers.
func GetGroup(ctx context.Context, store coord.Store, productName string, groupId int) (*ServerGroup, error) {
	g := NewServerGroup(productName, groupId)
	ok, err := g.Exists(ctx, store)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errorf("GetGroup", GetGroupPath(productName, groupId), ErrGroupNotFound)
	}
	if g.Servers, err = g.GetServers(ctx, store); err != nil {
		return nil, err
	}
	return g, nil
}

// ServerGroups reads every group with its servers, ordered by id. A group
// removed during the scan is left out.
func ServerGroups(ctx context.Context, store coord.Store, productName string) ([]*ServerGroup, error) {
	const op = "ServerGroups"
	if err := ValidateProductName(productName); err != nil {
		return nil, errorf(op, "", err)
	}
	base := GetServerGroupsPath(productName)
	kids, err := store.Children(ctx, base)
	if errors.Is(err, coord.ErrNoNode) {
		return []*ServerGroup{}, nil
	}
	if err != nil {
		return nil, errorf(op, base, err)
	}
	groups := make([]*ServerGroup, len(kids))
	err = forEach(ctx, len(kids), func(i int) error {
		id, err := strconv.Atoi(strings.TrimPrefix(kids[i], "group_"))
		if err != nil || !strings.HasPrefix(kids[i], "group_") || id < 0 {
			return errorf(op, coord.Join(base, kids[i]), fmt.Errorf("%w: not a group node", ErrMalformed))
		}
		g, err := GetGroup(ctx, store, productName, id)
		if errors.Is(err, ErrGroupNotFound) {
			return nil
		}
		groups[i] = g
		return err
	})
	if err != nil {
		return nil, err
	}
	out := groups[:0]
	for _, g := range groups {
		if g != nil {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out, nil
}

func (g *ServerGroup) check(op string) error {
	if err := ValidateProductName(g.ProductName); err != nil {
		return errorf(op, "", err)
	}
	if g.Id < 0 {
		return errorf(op, g.ProductName, fmt.Errorf("%w: %d", ErrInvalidGroupId, g.Id))
	}
	return nil
}

func (g *ServerGroup) path() string { return GetGroupPath(g.ProductName, g.Id) }

// Exists reports whether the group's node exists.
func (g *ServerGroup) Exists(ctx context.Context, store coord.Store) (bool, error) {
	if err := g.check("ServerGroup.Exists"); err != nil {
		return false, err
	}
	return GroupExists(ctx, store, g.ProductName, g.Id)
}

// Create makes the group's node if missing (idempotent) and announces
// group_changed (not confirmed).
func (g *ServerGroup) Create(ctx context.Context, store coord.Store) error {
	const op = "ServerGroup.Create"
	if err := g.check(op); err != nil {
		return err
	}
	return locked(ctx, store, g.ProductName, op, func(ctx context.Context, store coord.Store) error {
		if err := coord.MkdirAll(ctx, store, g.path()); err != nil {
			return errorf(op, g.path(), err)
		}
		return NewAction(ctx, store, g.ProductName, ACTION_TYPE_SERVER_GROUP_CHANGED, g, "", false)
	})
}

// GetServers reads the group's servers, ordered by address. A server
// removed during the scan is left out.
func (g *ServerGroup) GetServers(ctx context.Context, store coord.Store) ([]*Server, error) {
	servers, _, err := g.servers(ctx, store)
	return servers, err
}

// servers reads the servers and the group node's version.
func (g *ServerGroup) servers(ctx context.Context, store coord.Store) ([]*Server, map[string]int64, error) {
	const op = "ServerGroup.GetServers"
	if err := g.check(op); err != nil {
		return nil, nil, err
	}
	kids, err := store.Children(ctx, g.path())
	if errors.Is(err, coord.ErrNoNode) {
		return nil, nil, errorf(op, g.path(), ErrGroupNotFound)
	}
	if err != nil {
		return nil, nil, errorf(op, g.path(), err)
	}
	paths := make([]string, len(kids))
	for i, kid := range kids {
		paths[i] = coord.Join(g.path(), kid)
	}
	res, err := store.GetMany(ctx, paths...)
	if err != nil {
		return nil, nil, errorf(op, g.path(), err)
	}
	servers := make([]*Server, len(kids))
	versions := make([]int64, len(kids))
	for i, r := range res {
		if errors.Is(r.Err, coord.ErrNoNode) {
			continue // removed since the listing
		}
		if r.Err != nil {
			return nil, nil, errorf(op, paths[i], r.Err)
		}
		var s Server
		if err := decode(paths[i], r.Data, &s); err != nil {
			return nil, nil, err
		}
		servers[i], versions[i] = &s, r.Stat.Version
	}
	out := []*Server{}
	vs := map[string]int64{}
	for i, s := range servers {
		if s != nil {
			out = append(out, s)
			vs[s.Addr] = versions[i]
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out, vs, nil
}

// snapshot reads the group node's version, then its servers and their
// versions: what a versioned change of the group is planned on.
func (g *ServerGroup) snapshot(ctx context.Context, store coord.Store, op string) (int64, []*Server, map[string]int64, error) {
	_, st, err := store.Get(ctx, g.path())
	if errors.Is(err, coord.ErrNoNode) {
		return 0, nil, nil, errorf(op, g.path(), ErrGroupNotFound)
	}
	if err != nil {
		return 0, nil, nil, errorf(op, g.path(), err)
	}
	servers, versions, err := g.servers(ctx, store)
	return st.Version, servers, versions, err
}

// Master returns the group's master, or nil when it has none.
func (g *ServerGroup) Master(ctx context.Context, store coord.Store) (*Server, error) {
	servers, err := g.GetServers(ctx, store)
	if err != nil {
		return nil, err
	}
	for _, s := range servers {
		if s.Type == SERVER_TYPE_MASTER {
			return s, nil
		}
	}
	return nil, nil
}

func validServer(s *Server) error {
	switch s.Type {
	case SERVER_TYPE_MASTER, SERVER_TYPE_SLAVE, SERVER_TYPE_OFFLINE:
	default:
		return fmt.Errorf("%w: type %q", ErrInvalidServer, s.Type)
	}
	if err := ValidateAddr(s.Addr); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidServer, err)
	}
	return nil
}

// AddServer adds s to the group, or updates it if its address is there.
// The group must exist; a second master is refused (ErrNodeExists); the
// first server of an empty group becomes its master; the current master added
// again is refused (ErrNodeExists, as Codis 2 says "node already exists"). A
// slave is told to replicate the master (SLAVEOF, authenticated with passwd)
// once it is recorded; when Redis refuses, the record is set back and
// ErrRedis returned. Adding a master announces group_changed (confirmed).
// Concurrent AddServers on a group are serialized by the group node's version.
func (g *ServerGroup) AddServer(ctx context.Context, store coord.Store, s *Server, passwd string) error {
	const op = "ServerGroup.AddServer"
	if err := g.check(op); err != nil {
		return err
	}
	if err := validServer(s); err != nil {
		return errorf(op, s.Addr, err)
	}
	return locked(ctx, store, g.ProductName, op, func(ctx context.Context, store coord.Store) error {
		s.GroupId = g.Id
		for {
			groupVersion, servers, versions, err := g.snapshot(ctx, store, op)
			if err != nil {
				return err
			}
			var masterAddr string
			for _, srv := range servers {
				if srv.Type == SERVER_TYPE_MASTER && srv.Addr == s.Addr && s.Type == SERVER_TYPE_MASTER {
					// Codis 2: adding the master again is "node already exists".
					return errorf(op, s.Addr, fmt.Errorf("%w: %s is already the master of group %d", ErrNodeExists, s.Addr, g.Id))
				}
				if srv.Type == SERVER_TYPE_MASTER && srv.Addr != s.Addr {
					masterAddr = srv.Addr
				}
			}
			if s.Type == SERVER_TYPE_MASTER && masterAddr != "" {
				return errorf(op, s.Addr, fmt.Errorf("%w: group %d already has master %s", ErrNodeExists, g.Id, masterAddr))
			}
			if len(servers) == 0 {
				s.Type = SERVER_TYPE_MASTER
			}
			p := coord.Join(g.path(), s.Addr)
			// Rewriting the group node (it holds nothing) moves its version, so
			// that two concurrent AddServers cannot both see "no master".
			ops := []coord.Op{coord.SetOp(g.path(), nil, groupVersion)}
			var prev *Server
			if v, ok := versions[s.Addr]; ok {
				ops = append(ops, coord.SetOp(p, mustEncode(s), v))
				for _, srv := range servers {
					if srv.Addr == s.Addr {
						prev = srv
					}
				}
			} else {
				ops = append(ops, coord.CreateOp(p, mustEncode(s), coord.Persistent))
			}
			res, err := store.Txn(ctx, ops...)
			if errors.Is(err, coord.ErrBadVersion) || errors.Is(err, coord.ErrNodeExists) || errors.Is(err, coord.ErrNoNode) {
				continue // the group changed meanwhile: look again
			} else if err != nil {
				return errorf(op, p, err)
			}
			// Recorded: only now is the slave pointed at the master.
			if s.Type == SERVER_TYPE_SLAVE && masterAddr != "" {
				if err := redisc.SlaveOf(s.Addr, masterAddr, passwd, RedisTimeout); err != nil {
					undo := []coord.Op{coord.DeleteOp(p, 0)}
					if prev != nil {
						undo[0] = coord.SetOp(p, mustEncode(prev), 0)
					}
					return errorf(op, s.Addr, undoAfterRedis(ctx, store, undo, res[1:], err))
				}
			}
			break
		}
		servers, err := g.GetServers(ctx, store)
		if err != nil {
			return err
		}
		g.Servers = servers
		if s.Type == SERVER_TYPE_MASTER {
			return NewAction(ctx, store, g.ProductName, ACTION_TYPE_SERVER_GROUP_CHANGED, g, "", true)
		}
		return nil
	})
}

// RemoveServer removes the server at addr from the group; the master is
// refused (ErrRemoveMaster). Announces group_changed (not confirmed).
func (g *ServerGroup) RemoveServer(ctx context.Context, store coord.Store, addr string) error {
	const op = "ServerGroup.RemoveServer"
	if err := g.check(op); err != nil {
		return err
	}
	p := coord.Join(g.path(), addr)
	if err := coord.ValidatePath(p); err != nil || coord.Base(p) != addr {
		return errorf(op, addr, fmt.Errorf("%w: address %q", ErrInvalidServer, addr))
	}
	return locked(ctx, store, g.ProductName, op, func(ctx context.Context, store coord.Store) error {
		for {
			data, st, err := store.Get(ctx, p)
			if errors.Is(err, coord.ErrNoNode) {
				return errorf(op, p, ErrServerNotFound)
			}
			if err != nil {
				return errorf(op, p, err)
			}
			var s Server
			if err := decode(p, data, &s); err != nil {
				return err
			}
			if s.Type == SERVER_TYPE_MASTER {
				return errorf(op, addr, ErrRemoveMaster)
			}
			if err := store.Delete(ctx, p, st.Version); errors.Is(err, coord.ErrBadVersion) {
				continue
			} else if err != nil {
				return errorf(op, p, err)
			}
			break
		}
		servers, err := g.GetServers(ctx, store)
		if err != nil {
			return err
		}
		g.Servers = servers
		return NewAction(ctx, store, g.ProductName, ACTION_TYPE_SERVER_GROUP_CHANGED, g, "", false)
	})
}

// Promote makes the server at addr the group's master: in one transaction
// the old master becomes offline and addr master; only once that change has
// won (a concurrent writer makes it read the group again) is addr told
// SLAVEOF NO ONE (authenticated with passwd), and then group_changed is
// announced (confirmed). When Redis refuses, the store is set back and
// ErrRedis returned, with nothing announced. Other slaves keep replicating
// the old master, as in Codis 2; RepointSlaves moves them.
func (g *ServerGroup) Promote(ctx context.Context, store coord.Store, addr, passwd string) error {
	const op = "ServerGroup.Promote"
	if err := g.check(op); err != nil {
		return err
	}
	return locked(ctx, store, g.ProductName, op, func(ctx context.Context, store coord.Store) error {
		for {
			servers, versions, err := g.servers(ctx, store)
			if err != nil {
				return err
			}
			var target, master *Server
			for _, s := range servers {
				if s.Addr == addr {
					target = s
				}
				if s.Type == SERVER_TYPE_MASTER {
					master = s
				}
			}
			if target == nil {
				return errorf(op, addr, fmt.Errorf("%w: not in group %d", ErrServerNotFound, g.Id))
			}
			var do, undo []coord.Op
			if master != nil && master.Addr != addr {
				p := coord.Join(g.path(), master.Addr)
				undo = append(undo, coord.SetOp(p, mustEncode(master), 0))
				demoted := *master
				demoted.Type = SERVER_TYPE_OFFLINE
				do = append(do, coord.SetOp(p, mustEncode(&demoted), versions[master.Addr]))
				master.Type = SERVER_TYPE_OFFLINE
			}
			p := coord.Join(g.path(), addr)
			undo = append(undo, coord.SetOp(p, mustEncode(target), 0))
			target.Type = SERVER_TYPE_MASTER
			do = append(do, coord.SetOp(p, mustEncode(target), versions[addr]))
			res, err := store.Txn(ctx, do...)
			if errors.Is(err, coord.ErrBadVersion) || errors.Is(err, coord.ErrNoNode) {
				continue // the group changed meanwhile: look again
			}
			if err != nil {
				return errorf(op, addr, err)
			}
			if err := redisc.SlaveOf(addr, "NO ONE", passwd, RedisTimeout); err != nil {
				return errorf(op, addr, undoAfterRedis(ctx, store, undo, res, err))
			}
			g.Servers = servers
			return NewAction(ctx, store, g.ProductName, ACTION_TYPE_SERVER_GROUP_CHANGED, g, "", true)
		}
	})
}

// undoAfterRedis sets back nodes a transaction wrote (res) when the Redis
// command that was to follow failed (redisErr): each op of undo restores
// one node, if it has not changed since. It returns the error to report.
func undoAfterRedis(ctx context.Context, store coord.Store, undo []coord.Op, res []coord.OpResult, redisErr error) error {
	for i := range undo {
		undo[i].Version = res[i].Stat.Version
	}
	if _, err := store.Txn(context.WithoutCancel(ctx), undo...); err != nil {
		return fmt.Errorf("%w: %v; the store change could not be set back: %v", ErrRedis, redisErr, err)
	}
	return fmt.Errorf("%w: %v (the store change was set back)", ErrRedis, redisErr)
}

// RepointSlaves tells every slave of the group to replicate the current
// master (what Codis 2 left to the operator after Promote).
func (g *ServerGroup) RepointSlaves(ctx context.Context, store coord.Store, passwd string) error {
	const op = "ServerGroup.RepointSlaves"
	return locked(ctx, store, g.ProductName, op, func(ctx context.Context, store coord.Store) error {
		servers, err := g.GetServers(ctx, store)
		if err != nil {
			return err
		}
		var master string
		for _, s := range servers {
			if s.Type == SERVER_TYPE_MASTER {
				master = s.Addr
			}
		}
		if master == "" {
			return errorf(op, g.path(), fmt.Errorf("%w: no master", ErrServerNotFound))
		}
		for _, s := range servers {
			if s.Type == SERVER_TYPE_SLAVE {
				if err := redisc.SlaveOf(s.Addr, master, passwd, RedisTimeout); err != nil {
					return errorf(op, s.Addr, fmt.Errorf("%w: %v", ErrRedis, err))
				}
			}
		}
		return nil
	})
}

// Remove deletes the group and its servers in one transaction, unless a
// slot uses it or migrates from it (ErrGroupInUse). Announces group_remove
// (not confirmed).
func (g *ServerGroup) Remove(ctx context.Context, store coord.Store) error {
	const op = "ServerGroup.Remove"
	if err := g.check(op); err != nil {
		return err
	}
	return locked(ctx, store, g.ProductName, op, func(ctx context.Context, store coord.Store) error {
		slots, err := Slots(ctx, store, g.ProductName)
		if err != nil {
			return errorf(op, g.path(), err)
		}
		for _, s := range slots {
			if s.GroupId == g.Id {
				return errorf(op, g.path(), fmt.Errorf("%w: slot %d", ErrGroupInUse, s.Id))
			}
			migrating := s.State.Status == SLOT_STATUS_MIGRATE || s.State.Status == SLOT_STATUS_PRE_MIGRATE
			if migrating && s.State.MigrateStatus.From == g.Id {
				return errorf(op, g.path(), fmt.Errorf("%w: slot %d is migrating from it", ErrGroupInUse, s.Id))
			}
		}
		for {
			groupVersion, _, versions, err := g.snapshot(ctx, store, op)
			if err != nil {
				return err
			}
			var ops []coord.Op
			for addr, v := range versions {
				ops = append(ops, coord.DeleteOp(coord.Join(g.path(), addr), v))
			}
			ops = append(ops, coord.DeleteOp(g.path(), groupVersion))
			err = applyBatches(ctx, store, ops)
			if errors.Is(err, coord.ErrBadVersion) || errors.Is(err, coord.ErrNotEmpty) || errors.Is(err, coord.ErrNoNode) {
				continue
			}
			if err != nil {
				return errorf(op, g.path(), err)
			}
			break
		}
		return NewAction(ctx, store, g.ProductName, ACTION_TYPE_SERVER_GROUP_REMOVE, g, "", false)
	})
}

// GetServer reads the server whose node is at path (a
// R/servers/group_<id>/<addr> path). Data that is not a server, or that
// names another address than its node, is ErrMalformed.
func GetServer(ctx context.Context, store coord.Store, path string) (*Server, error) {
	const op = "GetServer"
	if err := coord.ValidatePath(path); err != nil {
		return nil, errorf(op, path, err)
	}
	data, _, err := store.Get(ctx, path)
	if err != nil {
		return nil, errorf(op, path, err)
	}
	var s Server
	if err := decode(path, data, &s); err != nil {
		return nil, err
	}
	if s.Addr != coord.Base(path) {
		return nil, errorf(op, path, fmt.Errorf("%w: the node holds server %q", ErrMalformed, s.Addr))
	}
	return &s, nil
}
