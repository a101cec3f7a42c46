package models

import (
	"encoding/json"
	"fmt"
)

// ActionType names what an action announces.
type ActionType string

// Action types.
const (
	ACTION_TYPE_SERVER_GROUP_CHANGED ActionType = "group_changed"
	ACTION_TYPE_SERVER_GROUP_REMOVE  ActionType = "group_remove"
	ACTION_TYPE_SLOT_CHANGED         ActionType = "slot_changed"
	ACTION_TYPE_MULTI_SLOT_CHANGED   ActionType = "multi_slot_changed"
	ACTION_TYPE_SLOT_MIGRATE         ActionType = "slot_migrate"
	ACTION_TYPE_SLOT_PREMIGRATE      ActionType = "slot_premigrate"
)

// Action is a change that proxies must apply (and, when confirmed, answer).
type Action struct {
	Type      ActionType  `json:"type"`
	Desc      string      `json:"desc"`
	Target    interface{} `json:"target"`
	Ts        string      `json:"ts"`        // unix seconds, as text
	Receivers []string    `json:"receivers"` // ProxyInfo JSON of each receiver, as a string (or a bare proxy id)
}

// receiverInfo decodes one entry of Action.Receivers: a ProxyInfo as JSON
// (full), or a bare proxy id, as old writers put it.
func receiverInfo(r string) (pi ProxyInfo, full bool) {
	if json.Unmarshal([]byte(r), &pi) != nil {
		return ProxyInfo{Id: r}, false
	}
	return pi, true
}

// IsReceiver reports whether the action names the proxy pi among its
// receivers: as a ProxyInfo with the same id, pid and start time, or by its
// bare id. It is the test a Codis 2 proxy applies before it answers.
func (a *Action) IsReceiver(pi ProxyInfo) bool {
	for _, r := range a.Receivers {
		got, full := receiverInfo(r)
		if got.Id == pi.Id && (!full || (got.Pid == pi.Pid && got.StartAt == pi.StartAt)) {
			return true
		}
	}
	return false
}

// ReceiverIDs returns the ids of the proxies the action names as its
// receivers, in its order, whichever form each entry has.
func (a *Action) ReceiverIDs() []string {
	ids := make([]string, len(a.Receivers))
	for i, r := range a.Receivers {
		pi, _ := receiverInfo(r)
		ids[i] = pi.Id
	}
	return ids
}

// ProxyInfo is what a proxy publishes about itself.
type ProxyInfo struct {
	Id           string `json:"id"`
	Addr         string `json:"addr"`
	LastEvent    string `json:"last_event"`
	LastEventTs  int64  `json:"last_event_ts"`
	State        string `json:"state"`
	Description  string `json:"description"`
	DebugVarAddr string `json:"debug_var_addr"`
	Pid          int    `json:"pid"`
	StartAt      string `json:"start_at"`
}

// Server is a Redis server of a group.
type Server struct {
	Type    string `json:"type"` // master, slave or offline
	GroupId int    `json:"group_id"`
	Addr    string `json:"addr"`
}

// NewServer returns a server of the given type at addr.
func NewServer(serverType string, addr string) *Server {
	return &Server{Type: serverType, GroupId: INVALID_ID, Addr: addr}
}

// String is the server's JSON, indented, as Codis 2 prints it.
func (s Server) String() string {
	b, _ := json.MarshalIndent(s, "", "  ")
	return string(b)
}

// ServerGroup is a master and its slaves. Its node holds nothing; the JSON
// form appears only inside actions.
type ServerGroup struct {
	Id          int       `json:"id"`
	ProductName string    `json:"product_name"`
	Servers     []*Server `json:"servers"`
}

// NewServerGroup returns a group value; Create stores it.
func NewServerGroup(productName string, id int) *ServerGroup {
	return &ServerGroup{Id: id, ProductName: productName}
}

func (g *ServerGroup) String() string {
	b, _ := json.MarshalIndent(g, "", "  ")
	return string(b) + "\n"
}

// SlotStatus is the state of a slot.
type SlotStatus string

// Slot states.
const (
	SLOT_STATUS_ONLINE      SlotStatus = "online"
	SLOT_STATUS_OFFLINE     SlotStatus = "offline"
	SLOT_STATUS_MIGRATE     SlotStatus = "migrate"
	SLOT_STATUS_PRE_MIGRATE SlotStatus = "pre_migrate"
)

func (s SlotStatus) valid() bool {
	switch s {
	case SLOT_STATUS_ONLINE, SLOT_STATUS_OFFLINE, SLOT_STATUS_MIGRATE, SLOT_STATUS_PRE_MIGRATE:
		return true
	}
	return false
}

// SlotMigrateStatus says from which group to which a slot migrates.
type SlotMigrateStatus struct {
	From int `json:"from"`
	To   int `json:"to"`
}

// SlotState is the state of a slot.
type SlotState struct {
	Status        SlotStatus        `json:"status"`
	MigrateStatus SlotMigrateStatus `json:"migrate_status"`
	LastOpTs      string            `json:"last_op_ts"`
}

// Slot is one of the product's 1024 slots.
type Slot struct {
	ProductName string    `json:"product_name"`
	Id          int       `json:"id"`
	GroupId     int       `json:"group_id"`
	State       SlotState `json:"state"`

	// version of the node this value was read from (-1: not read), so
	// that Update is a compare-and-set.
	version int64
}

// String is the slot's JSON, indented, as Codis 2 prints it.
func (s *Slot) String() string {
	b, _ := json.MarshalIndent(s, "", "  ")
	return string(b)
}

// SlotMultiSetParam is the target of a multi_slot_changed action.
type SlotMultiSetParam struct {
	From    int        `json:"from"`
	To      int        `json:"to"`
	Status  SlotStatus `json:"status"`
	GroupId int        `json:"group_id"`
}

// LockInfo is what the holder of the product lock writes in its node.
type LockInfo struct {
	Desc     string `json:"desc"`
	Hostname string `json:"hostname"`
	Pid      int    `json:"pid"`
}

// String names the holder for people: "<desc>" on <host>, pid <n>.
func (l *LockInfo) String() string {
	return fmt.Sprintf("%q on %s, pid %d", l.Desc, l.Hostname, l.Pid)
}

// decode unmarshals the data of the node at path, naming the path when the
// data is not what it should be.
func decode(path string, data []byte, v interface{}) error {
	if err := json.Unmarshal(data, v); err != nil {
		return &Error{Op: "decode", What: path, Err: fmt.Errorf("%w: %v", ErrMalformed, err)}
	}
	return nil
}

func mustEncode(v interface{}) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("models: encoding %T: %v", v, err)) // only our own types are encoded
	}
	return b
}
