package models

import (
	"context"
	"errors"
	"fmt"

	"github.com/coordkit/coord/coord"
)

// fencedStore makes every write of a models function conditional on the
// product lock it runs under: each Create, Set, Delete and Txn is sent as a
// transaction that first checks the lock's node (coord.Mutex.Fence). A
// writer whose lock was lost meanwhile (its session expired during a stall,
// or an operator removed the lock) writes nothing and gets
// coord.ErrLockLost, so two writers never interleave their changes even when
// one of them does not yet know it lost the lock. Reads and watches pass
// through.
type fencedStore struct {
	coord.Store
	lock *ProductLock
}

// fenced returns store with its writes fenced by lock (store itself when it
// is fenced by lock already).
func fenced(store coord.Store, lock *ProductLock) coord.Store {
	if f, ok := store.(*fencedStore); ok && f.lock == lock {
		return store
	}
	return &fencedStore{Store: store, lock: lock}
}

func (f *fencedStore) txn(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	fence := f.lock.Fence()
	res, err := f.Store.Txn(ctx, append([]coord.Op{fence}, ops...)...)
	var te *coord.TxnError
	if errors.As(err, &te) {
		if te.Index == 0 {
			return nil, coord.Errorf(string(ops[0].Kind), ops[0].Path, fmt.Errorf("%w: the product lock (%s) was lost before this write: %v", coord.ErrLockLost, fence.Path, te.Err))
		}
		return nil, &coord.TxnError{Index: te.Index - 1, Op: te.Op, Err: te.Err}
	}
	if err != nil {
		return nil, err
	}
	return res[1:], nil
}

// singleErr turns the TxnError of a one-op transaction into the error the
// plain call would have returned.
func singleErr(op coord.Op, err error) error {
	var te *coord.TxnError
	if errors.As(err, &te) {
		return coord.Errorf(string(op.Kind), op.Path, te.Err)
	}
	return err
}

func (f *fencedStore) Create(ctx context.Context, path string, data []byte, mode coord.Mode) (string, error) {
	op := coord.CreateOp(path, data, mode)
	res, err := f.txn(ctx, op)
	if err != nil {
		return "", singleErr(op, err)
	}
	return res[0].Path, nil
}

func (f *fencedStore) Set(ctx context.Context, path string, data []byte, version int64) (coord.Stat, error) {
	op := coord.SetOp(path, data, version)
	res, err := f.txn(ctx, op)
	if err != nil {
		return coord.Stat{}, singleErr(op, err)
	}
	return res[0].Stat, nil
}

func (f *fencedStore) Delete(ctx context.Context, path string, version int64) error {
	op := coord.DeleteOp(path, version)
	_, err := f.txn(ctx, op)
	return singleErr(op, err)
}

func (f *fencedStore) Txn(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	if len(ops) == 0 {
		return f.Store.Txn(ctx)
	}
	return f.txn(ctx, ops...)
}

// Limits leaves room for the fence in every transaction.
func (f *fencedStore) Limits() coord.Limits {
	lim := f.Store.Limits()
	if lim.MaxTxnOps > 1 {
		lim.MaxTxnOps--
	}
	if lim.MaxTxnSetOps > 1 {
		lim.MaxTxnSetOps-- // the fence is a check: sets stay sets only
	}
	if lim.MaxTxnDeleteOps > 1 {
		lim.MaxTxnDeleteOps-- // and deletes deletes only
	}
	if lim.MaxTxnBytes > lim.TxnOpBytes {
		lim.MaxTxnBytes -= lim.TxnOpBytes
	}
	return lim
}
