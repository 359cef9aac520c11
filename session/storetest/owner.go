package storetest

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/raftsession/raftsession/session"
)

var ownerTests = []contractTest{
	{name: "ListOwner", fn: testListOwner},
	{name: "ListOwnerFollowsChanges", fn: testListOwnerFollowsChanges},
	{name: "DestroyOwner", fn: testDestroyOwner},
	{name: "DestroyOwnerExcept", fn: testDestroyOwnerExcept},
}

var countTests = []contractTest{
	{name: "Count", fn: testCount},
}

// wantOwned lists owner's sessions and checks that they are exactly ids,
// oldest first.
func (h *harness) wantOwned(owner string, ids ...string) []session.Info {
	h.Helper()
	infos, err := h.ownerStore().ListOwner(h.ctx, owner, session.LoadOptions{})
	if err != nil {
		h.Fatalf("ListOwner(%q): got error %v, want nil", owner, err)
	}
	if err := checkOwned(infos, owner, ids); err != nil {
		h.Fatalf("ListOwner(%q): %v", owner, err)
	}
	return infos
}

func checkOwned(infos []session.Info, owner string, ids []string) error {
	var got, want []session.Key
	for _, in := range infos {
		got = append(got, in.Key)
		if in.Owner != owner {
			return fmt.Errorf("Info.Owner: got %q, want %q", in.Owner, owner)
		}
	}
	for _, id := range ids {
		want = append(want, session.KeyOf(id))
	}
	// Sessions created at the same instant (a coarse real clock) may come
	// in either order; otherwise the oldest comes first.
	for i := 1; i < len(infos); i++ {
		if infos[i].Created.Before(infos[i-1].Created) {
			return fmt.Errorf("Created of entry %d: got %v, want not before %v (oldest first)",
				i, infos[i].Created, infos[i-1].Created)
		}
	}
	slices.SortFunc(got, compareKeys)
	slices.SortFunc(want, compareKeys)
	if !slices.Equal(got, want) {
		return fmt.Errorf("got keys %v, want %v", got, want)
	}
	return nil
}

func compareKeys(a, b session.Key) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func testListOwner(h *harness) {
	os := h.ownerStore()
	a, b, c := session.NewID(), session.NewID(), session.NewID()
	h.createOwned(a, "user:1")
	h.clock.Advance(time.Second)
	h.createOwned(b, "user:2")
	h.clock.Advance(time.Second)
	h.createOwned(c, "user:1")
	h.create(session.NewID()) // no owner

	infos := h.wantOwned("user:1", a, c)
	recA := h.mustLoad(a)
	want := session.InfoOf(session.KeyOf(a), recA)
	i := slices.IndexFunc(infos, func(in session.Info) bool { return in.Key == want.Key })
	if got := infos[i]; !sameInfo(got, want) {
		h.Errorf("Info: got %+v, want %+v", got, want)
	}
	if infos[0].Created.Before(infos[1].Created) && infos[0].Key != session.KeyOf(a) {
		h.Errorf("first entry: got %v, want %v (the oldest)", infos[0].Key, session.KeyOf(a))
	}
	h.wantOwned("user:2", b)
	h.wantOwned("user:nobody")

	infos, err := os.ListOwner(h.ctx, "user:1", session.LoadOptions{Level: session.Linearizable})
	if err != nil || len(infos) != 2 {
		h.Errorf("ListOwner(Linearizable): got (%d sessions, %v), want (2, nil)", len(infos), err)
	}
}

func sameInfo(a, b session.Info) bool {
	return a.Key == b.Key && a.Owner == b.Owner && a.Created.Equal(b.Created) && a.LastSeen.Equal(b.LastSeen) &&
		a.IdleDeadline.Equal(b.IdleDeadline) && a.AbsoluteDeadline.Equal(b.AbsoluteDeadline)
}

// testListOwnerFollowsChanges: the owner index follows owner changes,
// renames and destroys.
func testListOwnerFollowsChanges(h *harness) {
	h.ownerStore()
	a, b := session.NewID(), session.NewID()
	h.create(a) // anonymous, then logs in
	h.createOwned(b, "user:1")
	h.wantOwned("user:1", b)

	h.mustCommit(session.Change{ID: a, Delta: session.Delta{SetOwner: true, Owner: "user:1"}})
	h.wantOwned("user:1", a, b)

	renamed := session.NewID()
	h.mustCommit(session.Change{ID: a, RenameTo: renamed})
	h.wantOwned("user:1", renamed, b)

	h.mustCommit(session.Change{ID: b, Delta: session.Delta{SetOwner: true, Owner: "user:2"}})
	h.wantOwned("user:1", renamed)
	h.wantOwned("user:2", b)

	h.mustCommit(session.Change{ID: renamed, Delta: session.Delta{SetOwner: true}}) // removes the owner
	h.wantOwned("user:1")

	h.mustCommit(session.Change{ID: b, Destroy: true})
	h.wantOwned("user:2")

	// A rejected change leaves the index alone.
	c := session.NewID()
	h.createOwned(c, "user:3")
	h.wantReject(session.Change{ID: c, Delta: session.Delta{SetOwner: true, Owner: "user:4",
		Ops: []session.Op{cas("k", []byte("x"), []byte("y"))}}}, session.ErrCASFailed)
	h.wantOwned("user:3", c)
	h.wantOwned("user:4")
}

func testDestroyOwner(h *harness) {
	os := h.ownerStore()
	ids := []string{session.NewID(), session.NewID(), session.NewID()}
	var last uint64
	for _, id := range ids {
		last = h.createOwned(id, "user:1", "k", "v").Index
	}
	other := session.NewID()
	h.createOwned(other, "user:2", "k", "v")
	anon := session.NewID()
	h.create(anon, "k", "v")

	n, idx, err := os.DestroyOwner(h.ctx, "user:1", "")
	if err != nil {
		h.Fatalf("DestroyOwner: got error %v, want nil", err)
	}
	if n != len(ids) {
		h.Errorf("destroyed: got %d, want %d", n, len(ids))
	}
	if idx <= last {
		h.Errorf("index: got %d, want > %d", idx, last)
	}
	for _, id := range ids {
		if _, err := h.store.Load(h.ctx, id, session.LoadOptions{MinIndex: idx}); !errors.Is(err, session.ErrNotFound) {
			h.Errorf("Load(MinIndex %d) of a destroyed session: got error %v, want %v", idx, err, session.ErrNotFound)
		}
		// "Log out everywhere" must stick: in-flight requests cannot
		// bring a session back.
		h.wantReject(session.Change{ID: id, Delta: session.Delta{Ops: sets("k", "late")}}, session.ErrNotFound)
	}
	h.wantOwned("user:1")
	h.wantValues(other, "k", "v")
	h.wantValues(anon, "k", "v")

	n, idx2, err := os.DestroyOwner(h.ctx, "user:1", "")
	if err != nil || n != 0 {
		h.Errorf("second DestroyOwner: got (%d, %v), want (0, nil)", n, err)
	}
	if idx2 < idx {
		h.Errorf("second DestroyOwner index: got %d, want >= %d", idx2, idx)
	}
}

func testDestroyOwnerExcept(h *harness) {
	os := h.ownerStore()
	current, a, b := session.NewID(), session.NewID(), session.NewID()
	for _, id := range []string{current, a, b} {
		h.createOwned(id, "user:1", "k", "v")
	}
	other := session.NewID()
	h.createOwned(other, "user:2", "k", "v")

	// "Log out my other devices".
	n, _, err := os.DestroyOwner(h.ctx, "user:1", current)
	if err != nil || n != 2 {
		h.Fatalf("DestroyOwner(except current): got (%d, %v), want (2, nil)", n, err)
	}
	h.wantValues(current, "k", "v")
	h.wantNotFound(a)
	h.wantNotFound(b)
	h.wantOwned("user:1", current)

	// Again: nothing left to destroy.
	n, _, err = os.DestroyOwner(h.ctx, "user:1", current)
	if err != nil || n != 0 {
		h.Errorf("DestroyOwner again: got (%d, %v), want (0, nil)", n, err)
	}
	h.wantOwned("user:1", current)

	// An exception that belongs to someone else protects nothing of
	// this owner and destroys nothing of the other.
	n, _, err = os.DestroyOwner(h.ctx, "user:1", other)
	if err != nil || n != 1 {
		h.Errorf("DestroyOwner(except another owner's session): got (%d, %v), want (1, nil)", n, err)
	}
	h.wantNotFound(current)
	h.wantValues(other, "k", "v")
	h.wantOwned("user:2", other)
}

func testCount(h *harness) {
	cs := h.countStore()
	want := func(n int) {
		h.Helper()
		got, err := cs.Count(h.ctx)
		if err != nil || got != n {
			h.Fatalf("Count: got (%d, %v), want (%d, nil)", got, err, n)
		}
	}
	want(0)
	a, b, c := session.NewID(), session.NewID(), session.NewID()
	h.create(a)
	h.createOwned(b, "user:1")
	h.createOwned(c, "user:1")
	want(3)
	h.wantReject(session.Change{ID: a, Create: true, Delta: session.Delta{IdleTimeout: long, Lifetime: long}},
		session.ErrExists)
	want(3)
	h.mustCommit(session.Change{ID: a, RenameTo: session.NewID()})
	want(3)
	h.mustCommit(session.Change{ID: b, Destroy: true})
	h.mustCommit(session.Change{ID: b, Destroy: true})
	want(2)
	if os, ok := h.store.(session.OwnerStore); ok {
		if _, _, err := os.DestroyOwner(h.ctx, "user:1", ""); err != nil {
			h.Fatalf("DestroyOwner: got error %v, want nil", err)
		}
		want(1)
	}
}
