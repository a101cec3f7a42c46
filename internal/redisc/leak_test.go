package redisc_test

import (
	"testing"

	"github.com/coordkit/coord/internal/testenv"
)

// TestMain fails the run if a test leaves a goroutine running.
func TestMain(m *testing.M) { testenv.Main(m, nil) }
