package consulstore_test

import (
	"testing"

	"github.com/coordkit/coord/internal/testenv"
)

// TestMain stops the shared ensemble and fails the run if a test leaves a
// goroutine running.
func TestMain(m *testing.M) { testenv.Main(m, testenv.StopShared) }
