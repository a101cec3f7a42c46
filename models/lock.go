package models

import (
	"context"
	"errors"
	"os"

	"github.com/coordkit/coord/coord"
)

// NewProductLock returns the product's lock: an ephemeral sequential node
// R/LOCK/lock-<seq> holding {"desc","hostname","pid"} (Codis 2 made it
// persistent, so a crashed holder kept the lock until ForceRemoveLock).
func NewProductLock(store coord.Store, productName, desc string) (*coord.Mutex, error) {
	if err := ValidateProductName(productName); err != nil {
		return nil, errorf("NewProductLock", "", err)
	}
	host, _ := os.Hostname()
	data := mustEncode(LockInfo{Desc: desc, Hostname: host, Pid: os.Getpid()})
	return coord.NewMutex(store, GetLockPath(productName), "lock-", data), nil
}

// ForceRemoveLock deletes every node of the product lock.
func ForceRemoveLock(ctx context.Context, store coord.Store, productName string) error {
	const op = "ForceRemoveLock"
	if err := ValidateProductName(productName); err != nil {
		return errorf(op, "", err)
	}
	dir := GetLockPath(productName)
	kids, err := store.Children(ctx, dir)
	if errors.Is(err, coord.ErrNoNode) {
		return nil
	}
	if err != nil {
		return errorf(op, dir, err)
	}
	for _, k := range kids {
		if err := coord.DeleteAll(ctx, store, coord.Join(dir, k)); err != nil {
			return errorf(op, coord.Join(dir, k), err)
		}
	}
	return nil
}
