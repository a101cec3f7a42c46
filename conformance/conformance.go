// Package conformance is the test suite every coord.Store backend passes,
// case for case. A backend's tests call Run with a Backend that opens stores;
// a third party checks its own backend the same way:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, conformance.Backend{Open: ..., Expire: ...})
//	}
package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coordkit/coord/coord"
)

// Backend opens stores of the backend under test.
type Backend struct {
	// Open returns a new, connected store on namespace ns (a prefix, a
	// chroot...). Each case uses a fresh ns; stores opened with the same ns
	// see the same nodes, and the namespace starts empty. The suite closes
	// the stores it opens (Close must be idempotent).
	Open func(t testing.TB, ns string) coord.Store
	// Expire ends the current session of s the way the server ends a
	// session whose owner stopped answering (not through s.Close).
	Expire func(t testing.TB, s coord.Store)
	// OpenFaulty, when set, opens a store on ns, with the given session
	// timeout (TTL), whose connections to the server pass through something
	// the test can stall and cut (this project's backends use a loopback TCP
	// proxy). The Fault cases need it and skip without it.
	OpenFaulty func(t testing.TB, ns string, sessionTimeout time.Duration) (coord.Store, Faults)
	// KeepAlive, when set, renews the session with ID id once through
	// other, another store of the backend, as a second client holding the
	// session's credentials could. Fault/LostSessionReleases then keeps the
	// session alive on the server all along, so that only the store's own
	// ending of a session it gave up on can release its nodes.
	KeepAlive func(ctx context.Context, other coord.Store, id string) error
	// Restartable, when set, returns a server of the backend of the suite's
	// own, running, that a case may stop and start again (the Restart cases
	// need it and skip without it). Cases run one at a time, so one server
	// may serve them all.
	Restartable func(t testing.TB) Server
	// Cluster, when set, returns a cluster of the backend's servers of the
	// suite's own, all running, whose members a case may stop and start
	// again (the Cluster cases need it and skip without it).
	Cluster func(t testing.TB) Cluster
	// ServerFuncs, when set, are prefixes of the names of functions that
	// only a server running in the test process runs (an embedded etcd: its
	// packages, gRPC's and net/http's server sides). A goroutine with such a
	// function on its stack is the server's, which starts goroutines when
	// it likes (members reconnecting after a restart), not the store's:
	// Close/NoGoroutinesLeft leaves it out. A store is a client, so no
	// prefix may name client code.
	ServerFuncs []string
}

// Timeout bounds every wait of the suite for something that must happen
// (an event, a session ending). It is a liveness bound, not a speed target.
var Timeout = 20 * time.Second

type suite struct {
	b  Backend
	ns string
}

// Run runs every case as a subtest of t. A case whose need the backend does
// not offer (OpenFaulty, Restartable, Cluster) is skipped, saying which.
func Run(t *testing.T, b Backend) { run(t, b, false) }

// RunBasic runs the cases that need only Open and Expire: not the Fault
// cases (OpenFaulty), the Restart cases (Restartable), the Cluster cases or
// the Scale cases (ManyChildren nodes, which take a minute). It is for a
// second deployment of a backend whose Run covers those, such as its stores
// on a cluster, so that nothing is skipped.
func RunBasic(t *testing.T, b Backend) { run(t, b, true) }

// basic says whether a case needs only Open and Expire.
func basic(name string) bool {
	for _, p := range []string{"Fault/", "Restart/", "Cluster/", "Scale/"} {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	return true
}

func run(t *testing.T, b Backend, basicOnly bool) {
	cases := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"Paths/Invalid", testInvalidPaths},
		{"Paths/Root", testRoot},
		{"RoundTrip/Empty", testRoundTripEmpty},
		{"RoundTrip/Binary", testRoundTripBinary},
		{"RoundTrip/MaxSize", testRoundTripMaxSize},
		{"RoundTrip/TooLarge", testTooLarge},
		{"Create/Exists", testCreateExists},
		{"Create/MissingParent", testMissingParent},
		{"Create/EphemeralParent", testEphemeralParent},
		{"Create/All", testCreateAll},
		{"Version/Sequence", testVersions},
		{"Version/CASConflict", testCASConflict},
		{"Version/Huge", testHugeVersions},
		{"Version/ConcurrentWriters", testConcurrentCAS},
		{"Create/ConcurrentCreators", testConcurrentCreate},
		{"Delete/Missing", testDeleteMissing},
		{"Delete/Gone", testDeleteGone},
		{"Delete/NotEmpty", testDeleteNotEmpty},
		{"Delete/All", testDeleteAll},
		{"Delete/AllBatched", testDeleteAllBatched},
		{"Delete/RacesChildCreate", testDeleteRacesChildCreate},
		{"Get/Many", testGetMany},
		{"Children/Order", testChildrenOrder},
		{"Children/Missing", testChildrenMissing},
		{"Children/Scan", testChildrenScan},
		{"Children/ScanChanging", testChildrenScanChanging},
		{"Sequential/Format", testSequentialFormat},
		{"Sequential/Concurrent", testSequentialConcurrent},
		{"Sequential/AfterDelete", testSequentialAfterDelete},
		{"Sequential/Planted", testSequentialPlanted},
		{"Sequential/ParentRecreated", testSequentialParentRecreated},
		{"Ephemeral/Close", testEphemeralClose},
		{"Ephemeral/Expire", testEphemeralExpire},
		{"Session/Close", testSessionClose},
		{"Session/Shared", testSessionShared},
		{"Session/ExpiredWrite", testSessionExpiredWrite},
		{"Session/ExpiredTxn", testSessionExpiredTxn},
		{"Ephemeral/Owner", testEphemeralOwner},
		{"Stat/Created", testStatCreated},
		{"Watch/Data", testWatchData},
		{"Watch/DataNoMiss", testWatchDataNoMiss},
		{"Watch/Children", testWatchChildren},
		{"Watch/ChildrenMissing", testWatchChildrenMissing},
		{"Watch/ChildrenRecreated", testWatchChildrenRecreated},
		{"Watch/ChildrenIgnoresData", testWatchChildrenIgnoresData},
		{"Watch/Cancel", testWatchCancel},
		{"Watch/LastState", testWatchLastState},
		{"Watch/StoreClosed", testWatchStoreClosed},
		{"Watch/Ephemeral", testWatchEphemeral},
		{"Close/NoGoroutinesLeft", testNoGoroutinesLeft},
		{"Txn/Commit", testTxnCommit},
		{"Txn/Atomic", testTxnAtomic},
		{"Txn/Order", testTxnOrder},
		{"Txn/DeleteSubtree", testTxnDeleteSubtree},
		{"Txn/Sequential", testTxnSequential},
		{"Txn/Limit", testTxnLimit},
		{"Txn/SetLimit", testTxnSetLimit},
		{"Txn/DeleteLimit", testTxnDeleteLimit},
		{"Txn/LongPaths", testTxnLongPaths},
		{"Txn/Invalid", testTxnInvalid},
		{"Context/Canceled", testContextCanceled},
		{"Closed/Calls", testClosedCalls},
		{"Recipe/Mutex", testMutex},
		{"Recipe/MutexLost", testMutexLost},
		{"Recipe/MutexWaiterSessionEnds", testMutexWaiterSessionEnds},
		{"Recipe/MutexNodeDeleted", testMutexNodeDeleted},
		{"Recipe/MutexWaiterNodeDeleted", testMutexWaiterNodeDeleted},
		{"Recipe/MutexMiddleWaiterGivesUp", testMutexMiddleWaiterGivesUp},
		{"Recipe/TryLock", testTryLock},
		{"Recipe/Fence", testMutexFence},
		{"Recipe/Election", testElection},
		{"Recipe/EmptyPrefix", testRecipeEmptyPrefix},
		{"Fault/SessionLostFirst", testFaultSessionLostFirst},
		{"Fault/ShortStall", testFaultShortStall},
		{"Fault/WatchRecreatedInStall", testFaultWatchRecreatedInStall},
		{"Fault/WatchRecreatedWhileCut", testFaultWatchRecreatedWhileCut},
		{"Fault/Suspended", testFaultSuspended},
		{"Fault/MutexNoOverlap", testFaultMutexNoOverlap},
		{"Fault/ElectionNoOverlap", testFaultElectionNoOverlap},
		{"Fault/LockCancelledInFlight", testFaultLockCancelledInFlight},
		{"Fault/LockCancelledReplyLost", testFaultLockCancelledReplyLost},
		{"Fault/WaiterStalled", testFaultWaiterStalled},
		{"Fault/OutageRiddenOut", testFaultOutageRiddenOut},
		{"Fault/BackPromptly", testFaultBackPromptly},
		{"Fault/LostCreateReply", testFaultLostCreateReply},
		{"Fault/LostCreateReplyExisting", testFaultLostCreateReplyExisting},
		{"Fault/LostWriteReply", testFaultLostWriteReply},
		{"Fault/CreateCutBeforeServer", testFaultCreateCutBeforeServer},
		{"Fault/WriteDropped", testFaultWriteDropped},
		{"Fault/ReadCutInFlight", testFaultReadCutInFlight},
		{"Fault/DeadlineInFlight", testFaultDeadlineInFlight},
		{"Fault/LostSessionReleases", testFaultLostSessionReleases},
		{"Fault/Linearizable", testLinearizable},
		{"Restart/RiddenOut", testRestartRiddenOut},
		{"Restart/PastSession", testRestartPastSession},
		{"Cluster/MemberLoss", testClusterMemberLoss},
		{"Scale/ManyChildren", testScaleManyChildren},
	}
	for _, c := range cases {
		if basicOnly && !basic(c.name) {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, &suite{b: b, ns: namespace(t)})
		})
	}
}

var nsClean = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)

func namespace(t *testing.T) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := strings.ToLower(nsClean.ReplaceAllString(t.Name(), "-"))
	if len(name) > 60 {
		name = name[len(name)-60:]
	}
	return "t-" + hex.EncodeToString(r[:]) + "-" + strings.Trim(name, "-")
}

// open opens a store on the case's namespace and closes it at the end.
func (s *suite) open(t *testing.T) coord.Store {
	t.Helper()
	st := s.b.Open(t, s.ns)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*Timeout)
	t.Cleanup(cancel)
	return ctx
}
