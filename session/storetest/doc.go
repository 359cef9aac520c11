// Package storetest is the contract every [session.Store] must pass.
//
// [Run] exercises a store through its exported interface only: the
// semantics of [session.Change] (create, update, touch, destroy, rename),
// per-key increments and compare-and-set, size limits, idle and absolute
// expiry, read-your-writes, index monotonicity and the concurrency
// guarantees that make raftsession safe for concurrent requests (changes
// to different keys both survive; increments are never lost; a destroyed
// session is never resurrected). The optional [session.OwnerStore],
// [session.CountStore] and [session.LimitStore] abilities are tested when
// the store has them.
//
// A store package calls it from an ordinary test:
//
//	func TestStoreContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, cfg storetest.Config) session.Store {
//			s := session.NewMemoryStore(session.MemoryOptions{Limits: cfg.Limits, Now: cfg.Clock.Now})
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite behaves as one client of the store, as the middleware does for
// one browser: every read-your-writes read carries the index of the
// suite's latest commit ([session.LoadOptions].MinIndex), so a replicated
// store may answer from a replica that has caught up with it.
//
// Stores that cannot take an injected clock, such as a replicated store
// whose times come from the raft leader's log, pass the same suite on real
// time: the expiry tests use timeouts of a few hundred milliseconds and wait
// for expiry with a deadline instead of expecting it at an exact instant.
package storetest
