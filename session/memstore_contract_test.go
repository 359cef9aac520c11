package session_test

import (
	"testing"

	"github.com/raftsession/raftsession/session"
	"github.com/raftsession/raftsession/session/storetest"
)

func TestMemoryStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, cfg storetest.Config) session.Store {
		s := session.NewMemoryStore(session.MemoryOptions{Limits: cfg.Limits, Now: cfg.Clock.Now})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// The MemoryStore on real time passes too, as a replicated store must.
func TestMemoryStoreContractRealTime(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for real expiry")
	}
	storetest.Run(t, func(t *testing.T, cfg storetest.Config) session.Store {
		s := session.NewMemoryStore(session.MemoryOptions{Limits: cfg.Limits})
		t.Cleanup(func() { s.Close() })
		return s
	})
}
