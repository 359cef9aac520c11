package session_test

import (
	"context"
	"fmt"

	"github.com/raftsession/raftsession/session"
)

// A handler's Session records a delta; Save (or the middleware, before
// the response) commits it. Handlers normally get their Session from
// httpmw.FromContext; Open is what the middleware calls.
func ExampleSession() {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	cfg := &session.Config{Store: store}
	ctx := context.Background()

	// First request: no cookie, a new session.
	first := session.Open(cfg, "", nil, 0)
	s := first.Session()
	s.Set("user", "alice")
	s.Set("theme", "dark")
	if err := s.Save(ctx); err != nil {
		fmt.Println(err)
		return
	}

	// Next request: load by the ID and index the cookie carries.
	id, index := s.ID(), first.Index()
	rec, _ := store.Load(ctx, id, session.LoadOptions{MinIndex: index})
	next := session.Open(cfg, id, rec, index).Session()
	fmt.Println(next.GetString("user"), next.Keys())
	// Output: alice [theme user]
}

// What a middleware does with a Handle around one request: open it, give
// the handler its Session, commit before the response starts, and build
// the cookie from what the Handle reports.
func ExampleHandle() {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	cfg := &session.Config{Store: store}
	ctx := context.Background()

	h := session.Open(cfg, "", nil, 0) // no cookie: a new session
	handler := func(s *session.Session) { s.Set("cart", 3) }
	handler(h.Session())

	committed, err := h.CommitForResponse(ctx, false, false)
	fmt.Println("committed:", committed, err)
	fmt.Println("status:", h.Status(), "used:", h.Used(), "modified:", h.Modified())
	if h.Status() == session.StatusStored {
		// The cookie carries the ID and the index of this write, so the
		// next request reads its own write on any replica.
		fmt.Println("cookie index > 0:", h.Index() > 0, "persistent:", h.Persistent())
	}
	// Output:
	// committed: true <nil>
	// status: stored used: true modified: false
	// cookie index > 0: true persistent: false
}

// Incr is evaluated by the store, so concurrent requests never lose a
// count; it commits at once and returns the new value.
func ExampleSession_Incr() {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	s := session.Open(&session.Config{Store: store}, "", nil, 0).Session()
	ctx := context.Background()
	for range 3 {
		n, err := s.Incr(ctx, "views", 1)
		fmt.Println(n, err)
	}
	// Output:
	// 1 <nil>
	// 2 <nil>
	// 3 <nil>
}

// Pop reads a one-time ("flash") message and removes it.
func ExampleSession_PopString() {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	s := session.Open(&session.Config{Store: store}, "", nil, 0).Session()
	s.Set("flash", "Profile saved")
	fmt.Printf("%q\n", s.PopString("flash"))
	fmt.Printf("%q\n", s.PopString("flash"))
	// Output:
	// "Profile saved"
	// ""
}

// Log out everywhere else: every session of the owner but this one.
func ExampleSession_DestroyOwned() {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	cfg := &session.Config{Store: store}
	ctx := context.Background()
	var phone, laptop *session.Session
	for _, p := range []**session.Session{&phone, &laptop} {
		*p = session.Open(cfg, "", nil, 0).Session()
		(*p).SetOwner("user:42")
		(*p).Save(ctx)
	}
	list, _ := laptop.ListOwned(ctx)
	fmt.Println("sessions:", len(list))
	n, err := laptop.DestroyOwned(ctx, true)
	fmt.Println("destroyed:", n, err)
	list, _ = laptop.ListOwned(ctx)
	fmt.Println("left:", len(list), "current:", list[0].Current)
	// Output:
	// sessions: 2
	// destroyed: 1 <nil>
	// left: 1 current: true
}
