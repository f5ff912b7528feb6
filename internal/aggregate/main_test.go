package aggregate

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// ingester must stop when its context ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
