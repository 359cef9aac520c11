package session_test

import (
	"context"
	"fmt"

	"github.com/raftsession/raftsession/session"
)

// A request-scoped handle records a delta; Save (or the middleware, before
// the response) commits it. Handlers normally get their Session from
// httpmw.FromContext; Open is what the middleware calls.
func ExampleSession() {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	cfg := &session.Config{Store: store}
	ctx := context.Background()

	// First request: no cookie, a new session.
	s := session.Open(cfg, "", nil, 0)
	s.Set("user", "alice")
	s.Set("theme", "dark")
	if err := s.Save(ctx); err != nil {
		fmt.Println(err)
		return
	}

	// Next request: load by the ID (and index) the cookie carries.
	rec, _ := store.Load(ctx, s.ID(), session.LoadOptions{MinIndex: s.Index()})
	next := session.Open(cfg, s.ID(), rec, s.Index())
	fmt.Println(next.GetString("user"), next.Keys())
	// Output: alice [theme user]
}

// Incr is evaluated by the store, so concurrent requests never lose a
// count; it commits at once and returns the new value.
func ExampleSession_Incr() {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	s := session.Open(&session.Config{Store: store}, "", nil, 0)
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
	s := session.Open(&session.Config{Store: store}, "", nil, 0)
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
		*p = session.Open(cfg, "", nil, 0)
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
