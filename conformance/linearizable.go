package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/coordkit/coord/coord"
)

// The linearizability check: clients do random Get, Set and compare-and-set
// (Set at an expected version) on a few nodes, each through its own store,
// some of them while faults are injected; their history is checked with
// porcupine (github.com/anishathalye/porcupine, the checker of etcd's own
// robustness tests) against a model of versioned registers. A write whose
// outcome is unknown (the call failed with ErrUnavailable or its deadline)
// may or may not have been applied, at any time after it was made; a read
// that failed says nothing and is left out.

// regState is one node: its data and version.
type regState struct {
	val string
	ver int64
}

type regInput struct {
	key string
	op  string // "get", "set", "cas"
	val string // set, cas
	ver int64  // cas: the expected version
}

type regOutput struct {
	unknown bool // the write's outcome is unknown
	ok      bool // the write was applied (false: ErrBadVersion)
	val     string
	ver     int64 // get: the version read; set and cas: the new version
}

var registerModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(regInput).key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{regState{val: "init", ver: 0}} },
	Step: func(state, input, output interface{}) []interface{} {
		st, in, out := state.(regState), input.(regInput), output.(regOutput)
		applied := regState{val: in.val, ver: st.ver + 1}
		switch in.op {
		case "get":
			if out.val == st.val && out.ver == st.ver {
				return []interface{}{st}
			}
			return nil
		case "set":
			switch {
			case out.unknown:
				return []interface{}{st, applied}
			case out.ok && out.ver == st.ver+1:
				return []interface{}{applied}
			}
			return nil
		default: // cas
			match := st.ver == in.ver
			switch {
			case out.unknown && match:
				return []interface{}{st, applied}
			case out.unknown:
				return []interface{}{st}
			case out.ok && match && out.ver == st.ver+1:
				return []interface{}{applied}
			case !out.ok && !match:
				return []interface{}{st}
			}
			return nil
		}
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(regInput), output.(regOutput)
		return fmt.Sprintf("%s %s %q v%d -> %+v", in.op, in.key, in.val, in.ver, out)
	},
}

// LinearizabilityRun describes one run of the check.
type LinearizabilityRun struct {
	// Stores are the clients, one goroutine each; they share a namespace.
	Stores []coord.Store
	// Faults are injected in turn (stall, cut, block) while the clients run;
	// nil entries are clients without faults.
	Faults []Faults
	// Ops is how many operations each client makes (200 when 0); a client
	// pauses up to 10ms between them, so a run lasts a few seconds.
	Ops int
	// Keys is how many nodes the clients share (2 when 0).
	Keys int
}

// CheckLinearizable runs the clients and checks their history. It returns
// porcupine's verdict and the number of operations in the history, and logs
// how many faults were injected and how many writes had an unknown outcome. Use it
// to check a store of your own, or, as this project's tests do, to show that
// the check finds a store that serves stale reads.
func CheckLinearizable(t testing.TB, r LinearizabilityRun) (porcupine.CheckResult, int) {
	t.Helper()
	if r.Ops == 0 {
		r.Ops = 200
	}
	if r.Keys == 0 {
		r.Keys = 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*Timeout)
	defer cancel()
	keys := make([]string, r.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("/reg%d", i)
		if _, err := r.Stores[0].Create(ctx, keys[i], []byte("init"), coord.Persistent); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	stamp := func() int64 { return int64(time.Since(start)) }
	var mu sync.Mutex
	var history []porcupine.Operation
	record := func(op porcupine.Operation) {
		mu.Lock()
		history = append(history, op)
		mu.Unlock()
	}
	var injected, unknown atomic.Int32
	stop := make(chan struct{})
	var faultsDone sync.WaitGroup
	for _, f := range r.Faults {
		if f == nil {
			continue
		}
		faultsDone.Add(1)
		go func(f Faults) {
			defer faultsDone.Done()
			inject := []func(){f.Stall, f.Cut, func() { f.Block(); f.Cut() }}
			for i := 0; ; i++ {
				select {
				case <-stop:
					_ = f.Resume()
					return
				case <-time.After(150 * time.Millisecond):
				}
				inject[i%len(inject)]()
				injected.Add(1)
				select {
				case <-stop:
				case <-time.After(200 * time.Millisecond):
				}
				if err := f.Resume(); err != nil {
					t.Error(err)
				}
			}
		}(f)
	}
	var clients sync.WaitGroup
	for c, st := range r.Stores {
		clients.Add(1)
		go func(c int, st coord.Store) {
			defer clients.Done()
			rng := rand.New(rand.NewSource(int64(c) + 1))
			lastVer := map[string]int64{}
			for i := 0; i < r.Ops; i++ {
				key := keys[rng.Intn(len(keys))]
				in := regInput{key: key}
				octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
				call := stamp()
				var out regOutput
				var err error
				switch p := rng.Intn(10); {
				case p < 4:
					in.op = "get"
					var data []byte
					var stat coord.Stat
					data, stat, err = st.Get(octx, key)
					out.val, out.ver = string(data), stat.Version
					if err == nil {
						lastVer[key] = stat.Version
					}
				default:
					in.val = fmt.Sprintf("c%d-%d", c, i)
					want := coord.AnyVersion
					in.op = "set"
					if p >= 7 {
						in.op, in.ver, want = "cas", lastVer[key], lastVer[key]
					}
					var stat coord.Stat
					stat, err = st.Set(octx, key, []byte(in.val), want)
					switch {
					case err == nil:
						out.ok, out.ver = true, stat.Version
						lastVer[key] = stat.Version
					case errors.Is(err, coord.ErrBadVersion) && in.op == "cas":
						err = nil // a definite refusal
					default:
						out.unknown = true
					}
				}
				ocancel()
				ret := stamp()
				if err != nil && !errors.Is(err, coord.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("client %d: %s %s: %v", c, in.op, key, err)
				}
				switch {
				case err == nil:
					record(porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
				case out.unknown:
					unknown.Add(1)
					// May take effect at any time after the call.
					record(porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: math.MaxInt64})
				}
				time.Sleep(time.Duration(rng.Intn(10)) * time.Millisecond)
			}
		}(c, st)
	}
	clients.Wait()
	close(stop)
	faultsDone.Wait()
	res := porcupine.CheckOperationsTimeout(registerModel.ToModel(), history, 60*time.Second)
	t.Logf("%d operations in %v, %d faults injected, %d writes with an unknown outcome",
		len(history), time.Since(start).Round(time.Millisecond), injected.Load(), unknown.Load())
	return res, len(history)
}

// Three clients, one of them through faults when the backend offers them,
// make a linearizable history.
func testLinearizable(t *testing.T, s *suite) {
	stores := []coord.Store{s.open(t), s.open(t)}
	faults := []Faults{nil, nil}
	if s.b.OpenFaulty != nil {
		st, f := s.openFaulty(t)
		stores, faults = append(stores, st), append(faults, f)
	} else {
		stores, faults = append(stores, s.open(t)), append(faults, nil)
	}
	res, n := CheckLinearizable(t, LinearizabilityRun{Stores: stores, Faults: faults})
	if res != porcupine.Ok {
		t.Fatalf("history of %d operations: %s", n, res)
	}
	t.Logf("history of %d operations: linearizable", n)
}
