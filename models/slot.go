package models

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/coordkit/coord/coord"
	"github.com/coordkit/coord/internal/fanout"
)

// NewSlot returns slot id of a product: offline, in no group.
func NewSlot(productName string, id int) *Slot {
	return &Slot{
		ProductName: productName,
		Id:          id,
		GroupId:     INVALID_ID,
		State: SlotState{
			Status:        SLOT_STATUS_OFFLINE,
			MigrateStatus: SlotMigrateStatus{From: INVALID_ID, To: INVALID_ID},
			LastOpTs:      "0",
		},
	}
}

// GetSlot reads slot id.
func GetSlot(ctx context.Context, store coord.Store, productName string, id int) (*Slot, error) {
	const op = "GetSlot"
	if err := ValidateProductName(productName); err != nil {
		return nil, errorf(op, "", err)
	}
	if err := validSlot(id); err != nil {
		return nil, errorf(op, productName, err)
	}
	p := GetSlotPath(productName, id)
	data, st, err := store.Get(ctx, p)
	if err != nil {
		return nil, errorf(op, p, err)
	}
	return decodeSlot(p, data, st.Version)
}

func decodeSlot(p string, data []byte, version int64) (*Slot, error) {
	var s Slot
	if err := decode(p, data, &s); err != nil {
		return nil, err
	}
	if !s.State.Status.valid() {
		return nil, errorf("decode", p, fmt.Errorf("%w: %w: %q", ErrMalformed, ErrUnknownSlotStatus, s.State.Status))
	}
	if want := coord.Base(p); want != "slot_"+strconv.Itoa(s.Id) || ProductPath(s.ProductName) != coord.Parent(coord.Parent(p)) {
		return nil, errorf("decode", p, fmt.Errorf("%w: the node holds slot %d of product %q", ErrMalformed, s.Id, s.ProductName))
	}
	s.version = version + 1
	return &s, nil
}

// Slots reads every slot of the product, ordered by id. A slot deleted
// during the scan fails it (coord.ErrNoNode), as does a child of R/slots that
// is not a slot node or a slot node holding another slot (ErrMalformed).
func Slots(ctx context.Context, store coord.Store, productName string) ([]*Slot, error) {
	const op = "Slots"
	if err := ValidateProductName(productName); err != nil {
		return nil, errorf(op, "", err)
	}
	base := GetSlotBasePath(productName)
	kids, err := store.Children(ctx, base)
	if errors.Is(err, coord.ErrNoNode) {
		return []*Slot{}, nil
	}
	if err != nil {
		return nil, errorf(op, base, err)
	}
	paths := make([]string, len(kids))
	for i, kid := range kids {
		paths[i] = coord.Join(base, kid)
		if id, err := strconv.Atoi(strings.TrimPrefix(kid, "slot_")); err != nil || !strings.HasPrefix(kid, "slot_") || validSlot(id) != nil {
			return nil, errorf(op, paths[i], fmt.Errorf("%w: not a slot node", ErrMalformed))
		}
	}
	res, err := store.GetMany(ctx, paths...)
	if err != nil {
		return nil, errorf(op, base, err)
	}
	slots := make([]*Slot, len(kids))
	for i, r := range res {
		if errors.Is(r.Err, coord.ErrNoNode) {
			// Codis 2 fails too: a slot table with a hole is no slot table.
			return nil, errorf(op, paths[i], fmt.Errorf("%w: the slot vanished while the slots were read", coord.ErrNoNode))
		}
		if r.Err != nil {
			return nil, errorf(op, paths[i], r.Err)
		}
		if slots[i], err = decodeSlot(paths[i], r.Data, r.Stat.Version); err != nil {
			return nil, err
		}
	}
	out := slots[:0]
	for _, s := range slots {
		if s != nil {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out, nil
}

// GetMigratingSlots returns the slots in migrate or pre_migrate.
func GetMigratingSlots(ctx context.Context, store coord.Store, productName string) ([]*Slot, error) {
	slots, err := Slots(ctx, store, productName)
	if err != nil {
		return nil, errorf("GetMigratingSlots", productName, err)
	}
	var out []*Slot
	for _, s := range slots {
		if s.State.Status == SLOT_STATUS_MIGRATE || s.State.Status == SLOT_STATUS_PRE_MIGRATE {
			out = append(out, s)
		}
	}
	return out, nil
}

// Update writes the slot and announces it (slot_migrate, slot_premigrate or
// slot_changed, confirmed). A slot read with GetSlot or Slots is written
// only if its node has not changed since (coord.ErrBadVersion otherwise); a
// slot made with NewSlot is created or overwritten.
func (s *Slot) Update(ctx context.Context, store coord.Store) error {
	const op = "Slot.Update"
	if err := ValidateProductName(s.ProductName); err != nil {
		return errorf(op, "", err)
	}
	if err := validSlot(s.Id); err != nil {
		return errorf(op, s.ProductName, err)
	}
	if !s.State.Status.valid() {
		return errorf(op, fmt.Sprintf("slot %d", s.Id), fmt.Errorf("%w: %q", ErrUnknownSlotStatus, s.State.Status))
	}
	groups, err := s.groups()
	if err != nil {
		return errorf(op, fmt.Sprintf("slot %d", s.Id), err)
	}
	return locked(ctx, store, s.ProductName, op, func(ctx context.Context, store coord.Store) error {
		// Refuse before writing what could not be announced.
		if err := checkFences(ctx, store, s.ProductName); err != nil {
			return errorf(op, fmt.Sprintf("slot %d", s.Id), err)
		}
		p := GetSlotPath(s.ProductName, s.Id)
		data := mustEncode(s)
		// The groups the slot names must exist when it is written (a proxy
		// exits on a slot of a missing group): checked in the same
		// transaction, so that a group removed meanwhile refuses the write.
		var checks []coord.Op
		for _, g := range groups {
			checks = append(checks, coord.CheckOp(GetGroupPath(s.ProductName, g), coord.AnyVersion))
		}
		version := coord.AnyVersion
		if s.version > 0 {
			version = s.version - 1
		}
		res, err := store.Txn(ctx, append(checks, coord.SetOp(p, data, version))...)
		if errors.Is(err, coord.ErrNoNode) && s.version <= 0 && !groupMissing(err, len(checks)) {
			if err = coord.MkdirAll(ctx, store, GetSlotBasePath(s.ProductName)); err == nil {
				res, err = store.Txn(ctx, append(checks, coord.CreateOp(p, data, coord.Persistent))...)
			}
		}
		if groupMissing(err, len(checks)) {
			return errorf(op, fmt.Sprintf("slot %d", s.Id), fmt.Errorf("%w: %d", ErrGroupNotFound, groups[txnIndex(err)]))
		}
		if err != nil {
			return errorf(op, p, err)
		}
		s.version = res[len(checks)].Stat.Version + 1
		typ := ACTION_TYPE_SLOT_CHANGED
		switch s.State.Status {
		case SLOT_STATUS_MIGRATE:
			typ = ACTION_TYPE_SLOT_MIGRATE
		case SLOT_STATUS_PRE_MIGRATE:
			typ = ACTION_TYPE_SLOT_PREMIGRATE
		}
		return NewAction(ctx, store, s.ProductName, typ, s, "", true)
	})
}

// groups returns the groups the slot names (its group, and the two of a
// migration), checking that its state can be served: a slot that is not
// offline needs a group, and a migration two different groups.
func (s *Slot) groups() ([]int, error) {
	var out []int
	add := func(g int) {
		if g >= 0 && !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	add(s.GroupId)
	if s.State.Status != SLOT_STATUS_OFFLINE && s.GroupId < 0 {
		return nil, fmt.Errorf("%w: a slot %s needs a group, not %d", ErrInvalidGroupId, s.State.Status, s.GroupId)
	}
	if s.State.Status == SLOT_STATUS_MIGRATE {
		m := s.State.MigrateStatus
		if m.From < 0 || m.To < 0 || m.From == m.To {
			return nil, fmt.Errorf("%w: a migration from group %d to group %d", ErrInvalidGroupId, m.From, m.To)
		}
		add(m.From)
		add(m.To)
	}
	return out, nil
}

// groupMissing reports whether err is a transaction failing at one of its
// first n ops (the group checks) with ErrNoNode.
func groupMissing(err error, n int) bool {
	return errors.Is(err, coord.ErrNoNode) && txnIndex(err) >= 0 && txnIndex(err) < n
}

// txnIndex is the index of the failing op of a *coord.TxnError, else -1.
func txnIndex(err error) int {
	var te *coord.TxnError
	if errors.As(err, &te) {
		return te.Index
	}
	return -1
}

// SetMigrateStatus starts migrating the slot from group fromGroup to
// toGroup: pre_migrate (confirmed by the proxies, which then hold requests
// for the slot), then migrate with the new group (confirmed). A slot
// already migrating skips pre_migrate, as in Codis 2: a resumed migration
// must not hold the slot's requests again.
func (s *Slot) SetMigrateStatus(ctx context.Context, store coord.Store, fromGroup, toGroup int) error {
	const op = "Slot.SetMigrateStatus"
	if fromGroup < 0 || toGroup < 0 {
		return errorf(op, fmt.Sprintf("slot %d", s.Id), fmt.Errorf("%w: from %d, to %d", ErrInvalidGroupId, fromGroup, toGroup))
	}
	return locked(ctx, store, s.ProductName, op, func(ctx context.Context, store coord.Store) error {
		if ok, err := GroupExists(ctx, store, s.ProductName, toGroup); err != nil {
			return errorf(op, fmt.Sprintf("slot %d", s.Id), err)
		} else if !ok {
			return errorf(op, fmt.Sprintf("slot %d", s.Id), fmt.Errorf("%w: %d", ErrGroupNotFound, toGroup))
		}
		if s.State.Status != SLOT_STATUS_MIGRATE {
			s.State.Status = SLOT_STATUS_PRE_MIGRATE
			if err := s.Update(ctx, store); err != nil {
				return err
			}
		}
		s.State.Status = SLOT_STATUS_MIGRATE
		s.State.MigrateStatus.From = fromGroup
		s.State.MigrateStatus.To = toGroup
		s.GroupId = toGroup
		return s.Update(ctx, store)
	})
}

// InitSlotSet (a dangerous operation) overwrites slots 0..totalSlotNum-1 as
// offline and in no group, in as few transactions as the store's limits
// allow, then announces them with one multi_slot_changed action (confirmed).
// Codis 2 wrote and announced each slot on its own.
func InitSlotSet(ctx context.Context, store coord.Store, productName string, totalSlotNum int) error {
	const op = "InitSlotSet"
	if err := ValidateProductName(productName); err != nil {
		return errorf(op, "", err)
	}
	if totalSlotNum <= 0 || totalSlotNum > DEFAULT_SLOT_NUM {
		return errorf(op, productName, fmt.Errorf("%w: %d slots, want 1..%d", ErrInvalidSlotId, totalSlotNum, DEFAULT_SLOT_NUM))
	}
	return locked(ctx, store, productName, op, func(ctx context.Context, store coord.Store) error {
		if err := checkFences(ctx, store, productName); err != nil {
			return errorf(op, productName, err)
		}
		base := GetSlotBasePath(productName)
		if err := coord.MkdirAll(ctx, store, base); err != nil {
			return errorf(op, base, err)
		}
		for {
			kids, err := store.Children(ctx, base)
			if err != nil {
				return errorf(op, base, err)
			}
			have := map[string]bool{}
			for _, k := range kids {
				have[k] = true
			}
			ops := make([]coord.Op, totalSlotNum)
			for i := range ops {
				p := GetSlotPath(productName, i)
				if have[coord.Base(p)] {
					ops[i] = coord.SetOp(p, mustEncode(NewSlot(productName, i)), coord.AnyVersion)
				} else {
					ops[i] = coord.CreateOp(p, mustEncode(NewSlot(productName, i)), coord.Persistent)
				}
			}
			err = applyBatches(ctx, store, ops)
			if errors.Is(err, coord.ErrNodeExists) || errors.Is(err, coord.ErrNoNode) {
				continue // a slot appeared or vanished meanwhile: look again
			}
			if err != nil {
				return errorf(op, productName, err)
			}
			break
		}
		param := SlotMultiSetParam{From: 0, To: totalSlotNum - 1, Status: SLOT_STATUS_OFFLINE, GroupId: INVALID_ID}
		return NewAction(ctx, store, productName, ACTION_TYPE_MULTI_SLOT_CHANGED, param, "", true)
	})
}

// applyBatches applies ops in transactions that fit the store's limits.
func applyBatches(ctx context.Context, store coord.Store, ops []coord.Op) error {
	batches, err := coord.Batches(ops, store.Limits())
	if err != nil {
		return err
	}
	for _, b := range batches {
		if _, err := store.Txn(ctx, b...); err != nil {
			return err
		}
	}
	return nil
}

// SetSlotRange assigns slots fromSlot..toSlot to group groupId with status
// online or offline, then announces one multi_slot_changed action
// (confirmed). Every check comes first (status, group, slot ids, every slot
// offline); then the slots are written with compare-and-set, in one
// transaction where the store's limits allow (ZooKeeper; etcd with
// --max-txn-ops of 2048 or more, which the embedded server has) and in as few
// as they allow otherwise (Consul: 32 slots per transaction). A conflict
// with a concurrent writer re-reads and re-checks the slots not written yet.
func SetSlotRange(ctx context.Context, store coord.Store, productName string, fromSlot, toSlot, groupId int, status SlotStatus) error {
	const op = "SetSlotRange"
	if err := ValidateProductName(productName); err != nil {
		return errorf(op, "", err)
	}
	if status != SLOT_STATUS_OFFLINE && status != SLOT_STATUS_ONLINE {
		return errorf(op, productName, fmt.Errorf("%w: %q (online or offline)", ErrUnknownSlotStatus, status))
	}
	if err := validSlot(fromSlot); err != nil {
		return errorf(op, productName, err)
	}
	if err := validSlot(toSlot); err != nil {
		return errorf(op, productName, err)
	}
	if fromSlot > toSlot {
		return errorf(op, productName, fmt.Errorf("%w: from %d > to %d", ErrInvalidSlotId, fromSlot, toSlot))
	}
	if groupId < 0 {
		return errorf(op, productName, fmt.Errorf("%w: %d", ErrInvalidGroupId, groupId))
	}
	return locked(ctx, store, productName, op, func(ctx context.Context, store coord.Store) error {
		// The group, the fences and the slots are read at once: none
		// depends on another, and each is a round trip.
		var (
			checks       sync.WaitGroup
			groupOK      bool
			gerr, fences error
		)
		checks.Go(func() { groupOK, gerr = GroupExists(ctx, store, productName, groupId) })
		checks.Go(func() { fences = checkFences(ctx, store, productName) })
		checked := func() error {
			checks.Wait()
			switch {
			case gerr != nil:
				return errorf(op, productName, gerr)
			case !groupOK:
				return errorf(op, productName, fmt.Errorf("%w: %d", ErrGroupNotFound, groupId))
			case fences != nil:
				return errorf(op, productName, fences)
			}
			return nil
		}
		written := map[int]bool{}
		for first := true; ; first = false {
			var paths []string
			for id := fromSlot; id <= toSlot; id++ {
				if !written[id] {
					paths = append(paths, GetSlotPath(productName, id))
				}
			}
			res, err := store.GetMany(ctx, paths...)
			if first {
				if err := checked(); err != nil {
					return err
				}
			}
			if err != nil {
				return errorf(op, productName, err)
			}
			slots := make([]*Slot, len(paths))
			for i, r := range res {
				if r.Err != nil {
					return errorf(op, productName, r.Err)
				}
				if slots[i], err = decodeSlot(paths[i], r.Data, r.Stat.Version); err != nil {
					return errorf(op, productName, err)
				}
			}
			var ops []coord.Op
			var ids []int
			for _, s := range slots {
				if s == nil {
					continue
				}
				if s.State.Status != SLOT_STATUS_OFFLINE {
					return errorf(op, productName, fmt.Errorf("%w: slot %d is %s; to move a slot to another group, migrate it", ErrSlotNotOffline, s.Id, s.State.Status))
				}
				s.GroupId = groupId
				s.State.Status = status
				ops = append(ops, coord.SetOp(GetSlotPath(productName, s.Id), mustEncode(s), s.version-1))
				ids = append(ids, s.Id)
			}
			// Each transaction also checks that the group still exists.
			lim := store.Limits()
			if lim.MaxTxnOps > 0 {
				lim.MaxTxnOps--
			}
			if lim.MaxTxnSetOps > 0 {
				lim.MaxTxnSetOps--
			}
			if lim.MaxTxnBytes > lim.TxnOpBytes {
				lim.MaxTxnBytes -= lim.TxnOpBytes
			}
			batches, err := coord.Batches(ops, lim)
			if err != nil {
				return errorf(op, productName, err)
			}
			// The batches go a few at once (the server commits concurrent
			// transactions together). Each is atomic; one refused because a
			// slot changed since it was read leaves the others applied, and
			// the slots not yet written are read and written again.
			from := make([]int, len(batches)+1)
			for i, b := range batches {
				from[i+1] = from[i] + len(b)
			}
			var mu sync.Mutex
			conflict := false
			check := coord.CheckOp(GetGroupPath(productName, groupId), coord.AnyVersion)
			err = fanout.Each(ctx, len(batches), slotTxnsInFlight, func(_ context.Context, i int) error {
				// The parent ctx: a batch in flight is not cut short when
				// another fails (its outcome would be unknown).
				_, err := store.Txn(ctx, append([]coord.Op{check}, batches[i]...)...)
				switch {
				case groupMissing(err, 1):
					return fmt.Errorf("%w: %d (removed while slots were written)", ErrGroupNotFound, groupId)
				case errors.Is(err, coord.ErrBadVersion) || errors.Is(err, coord.ErrNoNode):
					mu.Lock()
					conflict = true
					mu.Unlock()
					return nil
				case err != nil:
					return err
				}
				mu.Lock()
				for _, id := range ids[from[i]:from[i+1]] {
					written[id] = true
				}
				mu.Unlock()
				return nil
			})
			if err != nil {
				return errorf(op, productName, err)
			}
			if !conflict {
				break
			}
		}
		param := SlotMultiSetParam{From: fromSlot, To: toSlot, Status: status, GroupId: groupId}
		return NewAction(ctx, store, productName, ACTION_TYPE_MULTI_SLOT_CHANGED, param, "", true)
	})
}

// slotTxnsInFlight bounds the transactions of one SetSlotRange in flight
// at once.
const slotTxnsInFlight = 4

// checkFences fails with ErrFenceWithoutProxy when a fence has no online
// proxy behind it, as a confirmed action would, so that callers refuse
// before they write.
func checkFences(ctx context.Context, store coord.Store, productName string) error {
	_, dead, err := onlineAndDead(ctx, store, productName)
	if err != nil || len(dead) == 0 {
		return err
	}
	return fenceError(dead)
}
