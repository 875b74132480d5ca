package chaos_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when any goroutine outlives the tests; each test also checks
// for leaks as it ends, so that a leak is blamed on the test that left it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
