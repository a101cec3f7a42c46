package zkstore

import (
	"context"
	"errors"
	"sync"

	"github.com/go-zookeeper/zk"

	"github.com/coordkit/coord/coord"
)

// Txn implements coord.Store with a ZooKeeper multi-op.
func (s *Store) Txn(ctx context.Context, ops ...coord.Op) ([]coord.OpResult, error) {
	if err := coord.CheckTxn(ctx, ops, s.Limits()); err != nil {
		return nil, err
	}
	reqs := make([]interface{}, len(ops))
	size := 64
	for i, op := range ops {
		p := s.abs(op.Path)
		size += len(p) + len(op.Data) + 48
		data := op.Data
		if data == nil {
			data = []byte{}
		}
		switch op.Kind {
		case coord.OpCreate:
			reqs[i] = &zk.CreateRequest{Path: p, Data: data, Acl: s.aclFor(op.Path), Flags: zkFlags(op.Mode)}
		case coord.OpSet:
			reqs[i] = &zk.SetDataRequest{Path: p, Data: data, Version: zkVersion(op.Version)}
		case coord.OpDelete:
			reqs[i] = &zk.DeleteRequest{Path: p, Version: zkVersion(op.Version)}
		case coord.OpCheck:
			reqs[i] = &zk.CheckVersionRequest{Path: p, Version: zkVersion(op.Version)}
		}
	}
	if err := checkPacket("txn", ops[0].Path, size); err != nil {
		return nil, err
	}
	var resp []zk.MultiResponse
	var sid int64          // the session the multi ran in: it owns the ephemeral nodes made
	var multiConn *zk.Conn // the connection it ran on
multi:
	for try := 0; ; try++ {
		err := s.do(ctx, func() error {
			if err := s.dropped(); err != nil {
				return err
			}
			var err error
			conn := s.zk()
			resp, err = conn.Multi(reqs...)
			sid, multiConn = conn.SessionID(), conn
			return err
		})
		// The failing op is the first with an error: those before it
		// report no error (rolled back), those after it a runtime
		// inconsistency.
		failed := -1
		for i, r := range resp {
			if r.Error != nil {
				failed = i
				break
			}
		}
		if err == nil && failed >= 0 {
			err = resp[failed].Error
		}
		if err == nil {
			break
		}
		if i := failed; i >= 0 {
			if ops[i].Kind == coord.OpCreate && ops[i].Mode&coord.Sequential != 0 && errors.Is(resp[i].Error, zk.ErrNodeExists) && try < maxSeqSkips {
				// A sequential name taken by a node created by name
				// (see skipSeq): nothing was applied; skip it, retry.
				if err := s.skipSeq(ctx, coord.Parent(ops[i].Path)); err != nil {
					return nil, coord.Errorf("txn", ops[i].Path, mapErr(err))
				}
				continue multi
			}
			return nil, &coord.TxnError{Index: i, Op: ops[i], Err: mapErr(resp[i].Error)}
		}
		return nil, coord.Errorf("txn", ops[0].Path, mapErr(err))
	}
	res := make([]coord.OpResult, len(ops))
	for i, op := range ops {
		res[i].Path = op.Path
		switch op.Kind {
		case coord.OpCreate:
			res[i].Path = s.rel(resp[i].String)
			if op.Mode&coord.Ephemeral != 0 {
				res[i].Stat = coord.Stat{Ephemeral: true, Owner: owner(sid)}
			}
		case coord.OpSet:
			res[i].Stat = writeStat(resp[i].Stat)
		}
	}
	// ZooKeeper's multi does not return the Stat of a checked node; a check
	// leaves it as it was, and whether a node is ephemeral, and whose, never
	// changes: read them back, all at once. No sync is needed on the
	// connection the multi ran on: the server answers its reads after its
	// multi. (A connection made since may have reached a server that lags.)
	// The version is the one checked, when given.
	if s.zk() != multiConn {
		_ = s.sync(ctx)
	}
	var wg sync.WaitGroup
	for i, op := range ops {
		if op.Kind != coord.OpCheck {
			continue
		}
		res[i].Stat = coord.Stat{Version: op.Version}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, ok, err := s.exists(ctx, op.Path); err == nil && ok {
				if op.Version != coord.AnyVersion {
					st.Version = op.Version
				}
				st.Created = 0 // as a write's Stat
				res[i].Stat = st
			}
		}()
	}
	wg.Wait()
	return res, nil
}
