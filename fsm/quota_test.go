package fsm

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

func newQuotaNode(tb testing.TB, cfg Config) *node {
	return &node{tb: tb, f: New(cfg), now: t0}
}

func wantQuota(tb testing.TB, what string, r *Result) {
	tb.Helper()
	if !errors.Is(r.Err, session.ErrQuota) {
		tb.Fatalf("%s: got error %v, want ErrQuota", what, r.Err)
	}
}

// TestQuotaSessions: a create beyond MaxSessions is refused; existing
// sessions keep working; a destroy or an expiry makes room again.
func TestQuotaSessions(t *testing.T) {
	n := newQuotaNode(t, Config{MaxSessions: 2})
	mustOK(t, n.change(create("a", set("k", "v"))))
	mustOK(t, n.change(create("b")))
	r := n.change(create("c", set("k", "v")))
	wantQuota(t, "third create", r)
	if _, ok := n.get("c"); ok || n.f.Len() != 2 {
		t.Fatalf("refused create left a record: Len %d", n.f.Len())
	}
	// Existing sessions: update, touch, rename (regenerate) all work.
	mustOK(t, n.change(&session.Change{ID: "a", Delta: session.Delta{Ops: []session.Op{set("more", strings.Repeat("x", 100))}}}))
	mustOK(t, n.change(&session.Change{ID: "a"}))
	mustOK(t, n.change(&session.Change{ID: "a", RenameTo: "a2", Delta: session.Delta{Ops: []session.Op{set("user", "alice")}}}))
	if rec, ok := n.get("a2"); !ok || string(rec.Values.Get("user")) != "alice" {
		t.Fatalf("renamed session: %+v, %v", rec, ok)
	}
	mustOK(t, n.change(&session.Change{ID: "b", Destroy: true}))
	mustOK(t, n.change(create("c")))
	wantQuota(t, "create at the cap again", n.change(create("d")))

	// Both sessions run out (idle timeout one hour); no Expire has run,
	// yet they no longer count: the quota check removes them.
	n.now = n.now.Add(2 * time.Hour)
	mustOK(t, n.change(create("d")))
	mustOK(t, n.change(create("e")))
	if n.f.Len() != 2 {
		t.Fatalf("Len = %d after the expired records were reclaimed, want 2", n.f.Len())
	}
	wantQuota(t, "create at the cap after reclaiming", n.change(create("f")))
	checkIndexes(t, n.f)
}

// TestQuotaBytes: any change that would raise the byte total above
// MaxBytes is refused, creates and growing updates alike; changes that do
// not grow it always pass, and destroys, DestroyOwner and Expire make
// room.
func TestQuotaBytes(t *testing.T) {
	n := newQuotaNode(t, Config{MaxBytes: 20})
	setK := func(id, v string) *session.Change {
		return &session.Change{ID: id, Delta: session.Delta{Ops: []session.Op{set("k", v)}}}
	}
	mustOK(t, n.change(create("a", set("k", "123456789")))) // 10 bytes
	mustOK(t, n.change(create("b", set("k", "1234"))))      // 5: 15
	wantQuota(t, "create to 21 bytes", n.change(create("c", set("k", "12345"))))
	wantQuota(t, "update to 22 bytes", n.change(setK("a", strings.Repeat("x", 16))))
	if rec, _ := n.get("a"); string(rec.Values.Get("k")) != "123456789" {
		t.Fatalf("refused update changed the record: %q", rec.Values.Get("k"))
	}
	mustOK(t, n.change(setK("a", "1"))) // 2: 7
	wantQuota(t, "create to 21 bytes", n.change(create("c", set("k", strings.Repeat("x", 13)))))
	mustOK(t, n.change(create("c", set("k", strings.Repeat("x", 12))))) // 13: 20, at the cap
	// At the cap: same-size update, touch, owner change and rename pass.
	mustOK(t, n.change(setK("c", strings.Repeat("y", 12))))
	mustOK(t, n.change(&session.Change{ID: "c"}))
	mustOK(t, n.change(&session.Change{ID: "b", Delta: session.Delta{SetOwner: true, Owner: "u"}}))
	mustOK(t, n.change(&session.Change{ID: "c", RenameTo: "c2"}))
	if got := n.f.Bytes(); got != 20 {
		t.Fatalf("Bytes = %d, want 20", got)
	}
	mustOK(t, n.apply(EncodeDestroyOwner("u", "")))
	if got := n.f.Bytes(); got != 15 {
		t.Fatalf("Bytes after DestroyOwner = %d, want 15", got)
	}
	n.now = n.now.Add(2 * time.Hour)
	mustOK(t, n.apply(EncodeExpire(n.now)))
	if n.f.Bytes() != 0 || n.f.Len() != 0 {
		t.Fatalf("after Expire: Len %d, Bytes %d; want 0, 0", n.f.Len(), n.f.Bytes())
	}
	checkIndexes(t, n.f)
}

// TestQuotaBookkeeping runs every command kind, including the cases that
// replace an expired record, and checks after each that the count and
// byte total match the records held; then that a restored snapshot has
// the same totals, and that a restored state already over a (lowered)
// cap still lets changes that do not grow it through.
func TestQuotaBookkeeping(t *testing.T) {
	n := newNode(t)
	step := func(what string, r *Result) {
		t.Helper()
		if r.Err != nil {
			t.Fatalf("%s: %v", what, r.Err)
		}
		checkIndexes(t, n.f)
	}
	short := func(c *session.Change) *session.Change {
		c.IdleTimeout, c.Lifetime = time.Minute, time.Hour
		return c
	}
	step("create", n.change(create("a", set("x", "1"), set("y", "22"))))
	step("create owned", n.change(&session.Change{ID: "o", Create: true, Delta: session.Delta{
		Ops: []session.Op{set("x", "333")}, SetOwner: true, Owner: "u", IdleTimeout: time.Hour, Lifetime: time.Hour}}))
	step("create short-lived", n.change(short(create("old", set("x", "4444")))))
	step("create short-lived 2", n.change(short(create("old2", set("x", "55555")))))
	step("update grows", n.change(&session.Change{ID: "a", Delta: session.Delta{Ops: []session.Op{set("z", "abc")}}}))
	step("update shrinks", n.change(&session.Change{ID: "a", Delta: session.Delta{Ops: []session.Op{{Kind: session.OpDelete, Key: "y"}}}}))
	step("incr", n.change(&session.Change{ID: "a", Delta: session.Delta{Ops: []session.Op{{Kind: session.OpIncr, Key: "n", Delta: 99}}}}))
	step("clear", n.change(&session.Change{ID: "a", Delta: session.Delta{Clear: true, Ops: []session.Op{set("c", "d")}}}))
	step("touch", n.change(&session.Change{ID: "a"}))
	step("rename", n.change(&session.Change{ID: "a", RenameTo: "b", Delta: session.Delta{Ops: []session.Op{set("r", "1")}}}))
	n.now = n.now.Add(2 * time.Minute) // "old" and "old2" expire, unremoved
	step("create over an expired record", n.change(create("old", set("x", "6"))))
	step("rename onto an expired record", n.change(&session.Change{ID: "b", RenameTo: "old2"}))
	step("destroy", n.change(&session.Change{ID: "old", Destroy: true}))
	step("destroy missing", n.change(&session.Change{ID: "nothing", Destroy: true}))
	step("destroy owner", n.apply(EncodeDestroyOwner("u", "")))
	step("create", n.change(short(create("e", set("x", "7777777")))))
	n.now = n.now.Add(2 * time.Minute)
	step("expire", n.apply(EncodeExpire(n.now)))
	if n.f.Len() != 1 || n.f.Bytes() != 4 {
		t.Fatalf("Len, Bytes = %d, %d; want 1 (old2: r=1, c=d), 4", n.f.Len(), n.f.Bytes())
	}

	step("create big", n.change(create("big", set("v", strings.Repeat("x", 99)))))
	want := n.f.Bytes()
	g := New(Config{MaxBytes: 10, MaxSessions: 1})
	sink := &memSink{}
	snap, _ := n.f.Snapshot()
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if err := g.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	if g.Bytes() != want || g.Len() != 2 {
		t.Fatalf("restored Len, Bytes = %d, %d; want 2, %d", g.Len(), g.Bytes(), want)
	}
	checkIndexes(t, g)
	r := &node{tb: t, f: g, now: n.now, index: n.index}
	step = func(what string, res *Result) {
		t.Helper()
		if res.Err != nil {
			t.Fatalf("%s: %v", what, res.Err)
		}
		checkIndexes(t, g)
	}
	wantQuota(t, "create over the restored totals", r.change(create("new")))
	wantQuota(t, "growing update over the cap", r.change(&session.Change{ID: "big", Delta: session.Delta{Ops: []session.Op{set("w", "1")}}}))
	step("shrinking update over the cap", r.change(&session.Change{ID: "big", Delta: session.Delta{Ops: []session.Op{set("v", "x")}}}))
	step("touch over the cap", r.change(&session.Change{ID: "big"}))
}
