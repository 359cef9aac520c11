package storetest

import (
	"errors"
	"fmt"
	"time"

	"github.com/raftsession/raftsession/session"
)

// The expiry tests advance the fake clock past a deadline and then wait,
// with a deadline, until the store no longer returns the session: instant
// for a store on the fake clock, about [short] for one on real time. They
// only check that a session is still alive right after a commit or after
// advancing the fake clock by less than the remaining timeout, which holds
// on real time too, where the clock stands almost still between calls.
var expiryTests = []contractTest{
	{name: "ExpiryIdle", fn: testExpiryIdle, parallel: true},
	{name: "ExpiryTouchExtends", fn: testExpiryTouchExtends, parallel: true},
	{name: "ExpiryAbsolute", fn: testExpiryAbsolute, parallel: true},
	{name: "ExpiryLifetimeExtends", fn: testExpiryLifetimeExtends, parallel: true},
	{name: "ExpiredIsAbsent", fn: testExpiredIsAbsent, parallel: true},
	{name: "ExpiredRenameSourceAndTarget", fn: testExpiredRename, parallel: true},
	{name: "ExpiredOwnerSessions", fn: testExpiredOwnerSessions, parallel: true},
}

// createTimed creates a session with the given owner, idle timeout and lifetime
// and the pairs kv, and returns it as loaded.
func (h *harness) createTimed(id, owner string, idle, lifetime time.Duration, kv ...string) *session.Record {
	h.Helper()
	h.mustCommit(session.Change{ID: id, Create: true, Delta: session.Delta{
		Ops: sets(kv...), SetOwner: owner != "", Owner: owner, IdleTimeout: idle, Lifetime: lifetime}})
	return h.mustLoad(id)
}

func testExpiryIdle(h *harness) {
	id := session.NewID()
	rec := h.createTimed(id, "", short, long, "k", "v")
	if got, want := rec.IdleDeadline, rec.LastSeen.Add(short); !got.Equal(want) {
		h.Errorf("IdleDeadline: got %v, want %v", got, want)
	}
	if got, want := rec.Deadline(), rec.IdleDeadline; !got.Equal(want) {
		h.Errorf("Deadline: got %v, want %v (the idle deadline)", got, want)
	}
	h.clock.Advance(short / 2)
	h.wantValues(id, "k", "v")
	h.clock.Advance(short)
	h.eventuallyGone(id)
}

func testExpiryTouchExtends(h *harness) {
	id := session.NewID()
	before := h.createTimed(id, "", short, long, "k", "v")
	h.clock.Advance(short * 2 / 3)
	h.mustCommit(session.Change{ID: id}) // touch
	after := h.wantValues(id, "k", "v")
	if after.IdleDeadline.Before(before.IdleDeadline) {
		h.Errorf("IdleDeadline after touch: got %v, want not before %v", after.IdleDeadline, before.IdleDeadline)
	}
	// Past the first idle deadline, within the one the touch set.
	h.clock.Advance(short * 2 / 3)
	h.wantValues(id, "k", "v")
	// An update touches too.
	h.mustCommit(session.Change{ID: id, Delta: session.Delta{Ops: sets("k", "w")}})
	h.clock.Advance(short * 2 / 3)
	h.wantValues(id, "k", "w")
	h.clock.Advance(short)
	h.eventuallyGone(id)
}

func testExpiryAbsolute(h *harness) {
	id := session.NewID()
	rec := h.createTimed(id, "", long, short, "k", "v")
	if got, want := rec.IdleDeadline, rec.AbsoluteDeadline; !got.Equal(want) {
		h.Errorf("IdleDeadline: got %v, want %v (capped at the absolute deadline)", got, want)
	}
	if got, want := rec.AbsoluteDeadline, rec.Created.Add(short); !got.Equal(want) {
		h.Errorf("AbsoluteDeadline: got %v, want %v", got, want)
	}
	// However active the session is, it ends at its absolute deadline.
	h.clock.Advance(short / 2)
	h.mustCommit(session.Change{ID: id})
	touched := h.wantValues(id, "k", "v")
	if got, want := touched.AbsoluteDeadline, rec.AbsoluteDeadline; !got.Equal(want) {
		h.Errorf("AbsoluteDeadline after touch: got %v, want %v", got, want)
	}
	if touched.IdleDeadline.After(touched.AbsoluteDeadline) {
		h.Errorf("IdleDeadline after touch: got %v, want not after %v", touched.IdleDeadline, touched.AbsoluteDeadline)
	}
	h.clock.Advance(short)
	h.eventuallyGone(id)
	h.wantReject(session.Change{ID: id}, session.ErrNotFound)
}

// testExpiryLifetimeExtends: a change with a Lifetime (remember me at
// login) moves the absolute deadline.
func testExpiryLifetimeExtends(h *harness) {
	id := session.NewID()
	before := h.createTimed(id, "", long, short, "k", "v")
	res := h.mustCommit(session.Change{ID: id, Delta: session.Delta{Lifetime: long, IdleTimeout: long}})
	after := h.wantValues(id, "k", "v")
	if !after.AbsoluteDeadline.After(before.AbsoluteDeadline) {
		h.Errorf("AbsoluteDeadline: got %v, want after %v", after.AbsoluteDeadline, before.AbsoluteDeadline)
	}
	if got, want := after.AbsoluteDeadline, after.LastSeen.Add(long); !got.Equal(want) {
		h.Errorf("AbsoluteDeadline: got %v, want %v (LastSeen+Lifetime)", got, want)
	}
	if got, want := after.Version, res.Index; got != want {
		h.Errorf("Version: got %d, want %d", got, want)
	}
	h.clock.Advance(2 * short)
	h.wantValues(id, "k", "v")
}

// testExpiredIsAbsent: an expired session cannot be changed, touched or
// renamed, and its ID is free for a new session, which starts empty,
// whether or not the store has removed the old record yet.
func testExpiredIsAbsent(h *harness) {
	reused, stale := session.NewID(), session.NewID()
	h.createTimed(reused, "user:1", short, long, "old", "data")
	h.createTimed(stale, "user:1", short, long, "old", "data")
	h.clock.Advance(2 * short)
	h.eventuallyGone(reused)
	h.eventuallyGone(stale)

	// Reuse first: nothing but the expiry itself has happened to the old
	// record, so a store that sweeps lazily still holds it.
	res := h.mustCommit(session.Change{ID: reused, Create: true, Delta: session.Delta{
		Ops: sets("new", "data"), IdleTimeout: long, Lifetime: long}})
	rec := h.wantValues(reused, "new", "data")
	if got, want := rec.Owner, ""; got != want {
		h.Errorf("Owner of the new session: got %q, want %q", got, want)
	}
	if got, want := rec.Version, res.Index; got != want {
		h.Errorf("Version: got %d, want %d", got, want)
	}

	h.wantReject(session.Change{ID: stale, Delta: session.Delta{Ops: sets("k", "v")}}, session.ErrNotFound)
	h.wantReject(session.Change{ID: stale}, session.ErrNotFound)
	h.wantReject(session.Change{ID: stale, Delta: session.Delta{Ops: []session.Op{incr("n", 1)}}}, session.ErrNotFound)
	h.wantNotFound(stale)

	if os, ok := h.store.(session.OwnerStore); ok {
		infos, err := os.ListOwner(h.ctx, "user:1", session.LoadOptions{})
		if err != nil || len(infos) != 0 {
			h.Errorf("ListOwner of the expired sessions' owner: got (%v, %v), want ([], nil)", infos, err)
		}
	}
}

func testExpiredRename(h *harness) {
	src, dst := session.NewID(), session.NewID()
	h.createTimed(src, "", short, long, "from", "src")
	h.createTimed(dst, "", short, long, "from", "dst")
	alive := session.NewID()
	h.createTimed(alive, "", long, long, "from", "alive")
	h.clock.Advance(2 * short)
	h.eventuallyGone(src)
	h.eventuallyGone(dst)

	// An expired source is missing.
	h.wantReject(session.Change{ID: src, RenameTo: session.NewID()}, session.ErrNotFound)
	// An expired target is free.
	h.mustCommit(session.Change{ID: alive, RenameTo: dst})
	h.wantNotFound(alive)
	h.wantValues(dst, "from", "alive")
}

func testExpiredOwnerSessions(h *harness) {
	os := h.ownerStore()
	gone, kept := session.NewID(), session.NewID()
	h.createTimed(gone, "user:1", short, long)
	h.createTimed(kept, "user:1", long, long)
	h.wantOwned("user:1", gone, kept)
	h.clock.Advance(2 * short)
	h.eventually(func() error {
		infos, err := os.ListOwner(h.ctx, "user:1", session.LoadOptions{})
		if err != nil {
			return fmt.Errorf("ListOwner: got error %v, want nil", err)
		}
		return checkOwned(infos, "user:1", []string{kept})
	})
	// Expired sessions are not counted as destroyed.
	n, _, err := os.DestroyOwner(h.ctx, "user:1", "")
	if err != nil || n != 1 {
		h.Errorf("DestroyOwner: got (%d, %v), want (1, nil)", n, err)
	}
	h.wantNotFound(kept)
	if _, err := h.load(gone); !errors.Is(err, session.ErrNotFound) {
		h.Errorf("Load of the expired session: got error %v, want %v", err, session.ErrNotFound)
	}
}
