package session

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them, such
// as a MemoryStore janitor that Close did not stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
