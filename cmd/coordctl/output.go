package main

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/coordkit/coord/models"
)

// jsonVersion is the version of the --json shapes below, printed as "v" in
// every object. It goes up when a field changes meaning or goes away; a new
// field does not change it (scripts should ignore fields they do not know).
const jsonVersion = 1

// Header starts every object --json prints.
type Header struct {
	V  int  `json:"v"`  // jsonVersion
	OK bool `json:"ok"` // the command did what it was asked
}

func (h *Header) header() *Header { return h }

// output is what a command prints with --json: a struct embedding Header.
type output interface{ header() *Header }

// ErrorOut is what --json prints on stdout when a command fails (the
// message is also on stderr).
type ErrorOut struct {
	Header
	Error string `json:"error"`          // one line, as on stderr
	Exit  int    `json:"exit"`           // the exit status: 1 failed, 2 bad usage, 130 interrupted
	Done  string `json:"done,omitempty"` // interrupted: what was done before
}

// SlotOut is a slot. MigrateFrom and MigrateTo are -1 unless it migrates.
type SlotOut struct {
	ID          int    `json:"id"`
	Group       int    `json:"group"`
	Status      string `json:"status"`
	MigrateFrom int    `json:"migrate_from"`
	MigrateTo   int    `json:"migrate_to"`
}

func slotOut(s *models.Slot) SlotOut {
	return SlotOut{ID: s.Id, Group: s.GroupId, Status: string(s.State.Status), MigrateFrom: s.State.MigrateStatus.From, MigrateTo: s.State.MigrateStatus.To}
}

// ServerOut is a Redis server of a group.
type ServerOut struct {
	Addr string `json:"addr"`
	Type string `json:"type"` // master, slave or offline
}

// GroupOut is a server group.
type GroupOut struct {
	ID      int         `json:"id"`
	Servers []ServerOut `json:"servers"`
}

func groupOut(g *models.ServerGroup) GroupOut {
	out := GroupOut{ID: g.Id, Servers: []ServerOut{}}
	for _, s := range g.Servers {
		out.Servers = append(out.Servers, ServerOut{Addr: s.Addr, Type: s.Type})
	}
	return out
}

// ProxyOut is a registered proxy.
type ProxyOut struct {
	ID      string `json:"id"`
	Addr    string `json:"addr"`
	State   string `json:"state"`
	Pid     int    `json:"pid"`
	StartAt string `json:"start_at"`
	Fence   bool   `json:"fence"` // its fence node exists
}

// HolderOut is what the holder of the product lock wrote in its node.
type HolderOut struct {
	Node     string `json:"node"`
	Desc     string `json:"desc,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Pid      int    `json:"pid,omitempty"`
	Readable bool   `json:"readable"` // the node's data could be decoded
}

func holderOut(info *models.LockInfo, node string) *HolderOut {
	if node == "" {
		return nil
	}
	h := &HolderOut{Node: node}
	if info != nil {
		h.Desc, h.Hostname, h.Pid, h.Readable = info.Desc, info.Hostname, info.Pid, true
	}
	return h
}

// ActionOut is an action and who has answered it.
type ActionOut struct {
	Seq       int         `json:"seq"`
	Type      string      `json:"type"`
	Desc      string      `json:"desc"`
	Ts        int64       `json:"ts"` // unix seconds
	Target    interface{} `json:"target,omitempty"`
	Receivers []string    `json:"receivers"` // proxy ids
	Answered  []string    `json:"answered"`  // proxy ids
}

// NodeOut is a node of the store as the raw commands print it.
type NodeOut struct {
	Path      string `json:"path"`
	Data      string `json:"data,omitempty"`
	Binary    bool   `json:"binary,omitempty"` // the data is not UTF-8 and was left out
	Bytes     int    `json:"bytes"`
	Version   int64  `json:"version"`
	Ephemeral bool   `json:"ephemeral"`
	Owner     string `json:"owner,omitempty"`
	Absent    bool   `json:"absent,omitempty"` // raw watch: the node does not exist
}

// StepOut is a step of the demo.
type StepOut struct {
	Name    string `json:"name"`
	Actions int    `json:"confirmed_actions"`
	Micros  int64  `json:"took_us"`
}

func micros(d time.Duration) int64 { return d.Microseconds() }

// The command outputs, one type per command (shapes lists them).
type (
	// CountOut is printed by slot init, slot migrate and migrate-done,
	// load: how many slots (or nodes) the command changed.
	CountOut struct {
		Header
		Product string `json:"product"`
		Count   int    `json:"count"`
	}
	// RangeOut is printed by slot range-set.
	RangeOut struct {
		Header
		Product string `json:"product"`
		From    int    `json:"from"`
		To      int    `json:"to"`
		Group   int    `json:"group"`
		Status  string `json:"status"`
		Micros  int64  `json:"took_us"`
	}
	// SlotsOut is printed by slot list and slot set.
	SlotsOut struct {
		Header
		Product string    `json:"product"`
		Slots   []SlotOut `json:"slots"`
	}
	// SlotInfoOut is printed by slot info.
	SlotInfoOut struct {
		Header
		Product string    `json:"product"`
		Slot    SlotOut   `json:"slot"`
		Group   *GroupOut `json:"group"` // null: the slot has no group, or its group is missing
		// Keys is how many keys of the slot the group's master holds; null
		// when it could not be counted (KeysError says why).
		Keys      *int64 `json:"keys"`
		KeysError string `json:"keys_error,omitempty"`
		// SourceKeys is, while the slot migrates, how many of its keys are
		// still on the source group's master (null when not counted).
		SourceKeys      *int64 `json:"source_keys,omitempty"`
		SourceKeysError string `json:"source_keys_error,omitempty"`
	}
	// GroupsOut is printed by group list and group remove (every group, or
	// every group left), and by create, add-server, remove-server and
	// promote (the group changed, as it now is).
	GroupsOut struct {
		Header
		Product string     `json:"product"`
		Groups  []GroupOut `json:"groups"`
	}
	// ProxiesOut is printed by proxy list, online and offline.
	ProxiesOut struct {
		Header
		Product string     `json:"product"`
		Proxies []ProxyOut `json:"proxies"`
		// DeadFences are fences with no registered proxy behind them.
		DeadFences []string `json:"dead_fences"`
	}
	// ActionsOut is printed by action list and action show.
	ActionsOut struct {
		Header
		Product string      `json:"product"`
		Actions []ActionOut `json:"actions"`
	}
	// GCOut is printed by action gc.
	GCOut struct {
		Header
		Product string `json:"product"`
		Deleted int    `json:"deleted"`
		Left    int    `json:"left"`
	}
	// LockOut is printed by lock show and lock force-remove.
	LockOut struct {
		Header
		Product string     `json:"product"`
		Holder  *HolderOut `json:"holder"`  // null: the lock is free (show) or was (force-remove)
		Removed bool       `json:"removed"` // force-remove deleted a lock node
	}
	// ProductsOut is printed by product list.
	ProductsOut struct {
		Header
		Products []string `json:"products"`
	}
	// RemovedOut is printed by product remove.
	RemovedOut struct {
		Header
		Product string `json:"product"`
		Nodes   int    `json:"nodes"`
	}
	// CopyOut is printed by copy.
	CopyOut struct {
		Header
		Product string `json:"product"`
		Nodes   int    `json:"nodes"`
		// LiveFencesLeft is how many fences of proxies live on the source
		// were not copied.
		LiveFencesLeft int `json:"live_fences_left"`
	}
	// NodeReply is printed by raw get, stat, put and rm, and once per
	// state by raw watch.
	NodeReply struct {
		Header
		Node NodeOut `json:"node"`
	}
	// ChildrenOut is printed by raw ls.
	ChildrenOut struct {
		Header
		Path     string   `json:"path"`
		Children []string `json:"children"`
	}
	// DemoOut is printed by demo.
	DemoOut struct {
		Header
		Store   string    `json:"store"`
		Product string    `json:"product"`
		Steps   []StepOut `json:"steps"`
	}
)

// shapes names the --json output of every command. dump is not here: it
// prints the dump format (models.Snapshot), with or without --json.
var shapes = map[string]output{
	"slot init": &CountOut{}, "slot range-set": &RangeOut{}, "slot set": &SlotsOut{}, "slot list": &SlotsOut{},
	"slot info": &SlotInfoOut{}, "slot migrate": &CountOut{}, "slot migrate-done": &CountOut{},
	"group create": &GroupsOut{}, "group remove": &GroupsOut{}, "group add-server": &GroupsOut{},
	"group remove-server": &GroupsOut{}, "group promote": &GroupsOut{}, "group list": &GroupsOut{},
	"proxy list": &ProxiesOut{}, "proxy online": &ProxiesOut{}, "proxy offline": &ProxiesOut{}, "proxy remove-fence": &ProxiesOut{},
	"action list": &ActionsOut{}, "action show": &ActionsOut{}, "action gc": &GCOut{},
	"lock show": &LockOut{}, "lock force-remove": &LockOut{},
	"product list": &ProductsOut{}, "product remove": &RemovedOut{},
	"load": &CountOut{}, "copy": &CopyOut{}, "demo": &DemoOut{},
	"raw get": &NodeReply{}, "raw stat": &NodeReply{}, "raw put": &NodeReply{}, "raw rm": &NodeReply{}, "raw watch": &NodeReply{},
	"raw ls":  &ChildrenOut{},
	"(error)": &ErrorOut{},
}

// shapeDoc describes every --json shape, one command per line, sorted, as
// docs/COORDCTL.md lists them (a test keeps the two the same).
func shapeDoc() string {
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s: %s\n", n, describe(reflect.TypeOf(shapes[n]).Elem()))
	}
	return b.String()
}

// describe writes t as a JSON-like shape: {"field":type,...}, [elem],
// with ? after a field that may be left out and |null after a pointer.
func describe(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Ptr:
		return describe(t.Elem()) + "|null"
	case reflect.Slice:
		return "[" + describe(t.Elem()) + "]"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int64:
		return "int"
	case reflect.Interface:
		return "any"
	case reflect.Struct:
		var fields []string
		var walk func(t reflect.Type)
		walk = func(t reflect.Type) {
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				if f.Anonymous {
					walk(f.Type)
					continue
				}
				name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
				if opts == "omitempty" {
					name += "?"
				}
				fields = append(fields, fmt.Sprintf("%q:%s", name, describe(f.Type)))
			}
		}
		walk(t)
		return "{" + strings.Join(fields, ",") + "}"
	}
	return t.Kind().String()
}
