package testenv

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakGrace is how long goroutines on their way out get to finish (an
// embedded etcd cluster's peer connections take a few seconds to close
// after its members stop).
var leakGrace = 10 * time.Second

// Main runs the tests of a package, then after (which may be nil: it stops
// the package's servers), and fails the run if any goroutine the tests
// started is still running (goleak, retried for up to leakGrace so
// goroutines on their way out may finish). Every test package's TestMain calls it.
func Main(m *testing.M, after func()) {
	code := m.Run()
	if after != nil {
		after()
	}
	if code == 0 {
		err := goleak.Find()
		for deadline := time.Now().Add(leakGrace); err != nil && time.Now().Before(deadline); {
			time.Sleep(time.Second)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left running after the tests:\n%v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
