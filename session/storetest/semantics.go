package storetest

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/raftsession/raftsession/session"
)

var semanticsTests = []contractTest{
	{name: "CreateAndLoad", fn: testCreateAndLoad},
	{name: "CreateExisting", fn: testCreateExisting},
	{name: "LoadMissing", fn: testLoadMissing},
	{name: "UpdateMissing", fn: testUpdateMissing},
	{name: "UpdateSetDeleteClear", fn: testUpdateSetDeleteClear},
	{name: "UpdateAfterDestroy", fn: testUpdateAfterDestroy},
	{name: "Touch", fn: testTouch},
	{name: "DestroyIdempotent", fn: testDestroyIdempotent},
	{name: "Rename", fn: testRename},
	{name: "RenameTargetExists", fn: testRenameTargetExists},
	{name: "RenameMissingSource", fn: testRenameMissingSource},
	{name: "Incr", fn: testIncr},
	{name: "IncrNotInteger", fn: testIncrNotInteger},
	{name: "CAS", fn: testCAS},
	{name: "CASFailureRejectsWholeChange", fn: testCASFailure},
	{name: "Invalid", fn: testInvalid},
	{name: "RecordsImmutable", fn: testRecordsImmutable},
	{name: "IndexMonotonic", fn: testIndexMonotonic},
	{name: "ReadYourWrites", fn: testReadYourWrites},
}

func testCreateAndLoad(h *harness) {
	id := session.NewID()
	res := h.mustCommit(session.Change{ID: id, Create: true, Delta: session.Delta{
		Ops:      sets("user", "alice", "theme", "dark"),
		SetOwner: true, Owner: "user:1", IdleTimeout: long, Lifetime: 2 * long,
	}})
	if res.Index == 0 {
		h.Errorf("Result.Index: got %d, want > 0", res.Index)
	}
	if got, want := len(res.Values), 2; got != want {
		h.Errorf("len(Result.Values): got %d, want %d", got, want)
	}
	rec := h.wantValues(id, "user", "alice", "theme", "dark")
	if got, want := rec.Owner, "user:1"; got != want {
		h.Errorf("Owner: got %q, want %q", got, want)
	}
	if got, want := rec.Version, res.Index; got != want {
		h.Errorf("Version: got %d, want %d (the commit's index)", got, want)
	}
	if rec.Created.IsZero() {
		h.Errorf("Created: got zero time, want the commit time")
	}
	if got, want := rec.LastSeen, rec.Created; !got.Equal(want) {
		h.Errorf("LastSeen: got %v, want %v (Created)", got, want)
	}
	if got, want := rec.IdleTimeout, long; got != want {
		h.Errorf("IdleTimeout: got %v, want %v", got, want)
	}
	if got, want := rec.IdleDeadline, rec.LastSeen.Add(long); !got.Equal(want) {
		h.Errorf("IdleDeadline: got %v, want %v", got, want)
	}
	if got, want := rec.AbsoluteDeadline, rec.Created.Add(2*long); !got.Equal(want) {
		h.Errorf("AbsoluteDeadline: got %v, want %v", got, want)
	}
}

func testCreateExisting(h *harness) {
	id := session.NewID()
	first := h.create(id, "k", "first")
	h.wantReject(session.Change{ID: id, Create: true, Delta: session.Delta{
		Ops: sets("k", "second"), IdleTimeout: long, Lifetime: long}}, session.ErrExists)
	rec := h.wantValues(id, "k", "first")
	if got, want := rec.Version, first.Index; got != want {
		h.Errorf("Version after rejected create: got %d, want %d", got, want)
	}
}

func testLoadMissing(h *harness) {
	h.wantNotFound(session.NewID())
}

func testUpdateMissing(h *harness) {
	id := session.NewID()
	h.wantReject(session.Change{ID: id, Delta: session.Delta{Ops: sets("k", "v")}}, session.ErrNotFound)
	h.wantReject(session.Change{ID: id}, session.ErrNotFound) // touch
	h.wantNotFound(id)
}

func testUpdateSetDeleteClear(h *harness) {
	id := session.NewID()
	h.create(id, "a", "1", "b", "2", "c", "3")
	h.mustCommit(session.Change{ID: id, Delta: session.Delta{Ops: []session.Op{
		{Kind: session.OpSet, Key: "a", Value: []byte("10")},
		{Kind: session.OpDelete, Key: "b"},
		{Kind: session.OpDelete, Key: "absent"},
		{Kind: session.OpSet, Key: "d", Value: []byte("4")},
	}}})
	h.wantValues(id, "a", "10", "c", "3", "d", "4")

	res := h.mustCommit(session.Change{ID: id, Delta: session.Delta{Clear: true, Ops: sets("e", "5")}})
	rec := h.wantValues(id, "e", "5")
	if got, want := rec.Version, res.Index; got != want {
		h.Errorf("Version: got %d, want %d", got, want)
	}

	h.mustCommit(session.Change{ID: id, Delta: session.Delta{Clear: true}})
	h.wantValues(id)

	h.mustCommit(session.Change{ID: id, Delta: session.Delta{SetOwner: true, Owner: "user:7"}})
	if got, want := h.mustLoad(id).Owner, "user:7"; got != want {
		h.Errorf("Owner: got %q, want %q", got, want)
	}
	h.mustCommit(session.Change{ID: id, Delta: session.Delta{SetOwner: true}})
	if got, want := h.mustLoad(id).Owner, ""; got != want {
		h.Errorf("Owner after removing it: got %q, want %q", got, want)
	}
}

// testUpdateAfterDestroy is the logout race: a request that loaded the
// session before the logout commits after it and must not bring it back.
func testUpdateAfterDestroy(h *harness) {
	id := session.NewID()
	h.create(id, "user", "alice")
	h.mustLoad(id)
	h.mustCommit(session.Change{ID: id, Destroy: true})
	h.wantReject(session.Change{ID: id, Delta: session.Delta{Ops: sets("cart", "1")}}, session.ErrNotFound)
	h.wantReject(session.Change{ID: id}, session.ErrNotFound)
	h.wantReject(session.Change{ID: id, Delta: session.Delta{Ops: []session.Op{
		{Kind: session.OpIncr, Key: "views", Delta: 1}}}}, session.ErrNotFound)
	h.wantReject(session.Change{ID: id, RenameTo: session.NewID()}, session.ErrNotFound)
	h.wantNotFound(id)
}

func testTouch(h *harness) {
	id := session.NewID()
	created := h.create(id, "k", "v")
	before := h.mustLoad(id)
	h.clock.Advance(time.Second)
	res := h.mustCommit(session.Change{ID: id})
	if res.Index <= created.Index {
		h.Errorf("touch index: got %d, want > %d", res.Index, created.Index)
	}
	after := h.wantValues(id, "k", "v")
	if got, want := after.Version, res.Index; got != want {
		h.Errorf("Version after touch: got %d, want %d", got, want)
	}
	if after.LastSeen.Before(before.LastSeen) {
		h.Errorf("LastSeen after touch: got %v, want not before %v", after.LastSeen, before.LastSeen)
	}
	if got, want := after.IdleDeadline, after.LastSeen.Add(after.IdleTimeout); !got.Equal(want) {
		h.Errorf("IdleDeadline after touch: got %v, want %v (LastSeen+IdleTimeout)", got, want)
	}
	if got, want := after.Created, before.Created; !got.Equal(want) {
		h.Errorf("Created after touch: got %v, want %v", got, want)
	}
	if got, want := after.AbsoluteDeadline, before.AbsoluteDeadline; !got.Equal(want) {
		h.Errorf("AbsoluteDeadline after touch: got %v, want %v", got, want)
	}
}

func testDestroyIdempotent(h *harness) {
	id := session.NewID()
	created := h.create(id, "k", "v")
	first := h.mustCommit(session.Change{ID: id, Destroy: true})
	h.wantNotFound(id)
	second := h.mustCommit(session.Change{ID: id, Destroy: true})
	never := h.mustCommit(session.Change{ID: session.NewID(), Destroy: true})
	if !(created.Index < first.Index && first.Index < second.Index && second.Index < never.Index) {
		h.Errorf("indexes of create, destroy, destroy, destroy: got %d, %d, %d, %d, want increasing",
			created.Index, first.Index, second.Index, never.Index)
	}
	h.wantNotFound(id)
}

func testRename(h *harness) {
	from, to := session.NewID(), session.NewID()
	h.createOwned(from, "user:1", "cart", "3 items")
	before := h.mustLoad(from)
	h.clock.Advance(time.Second)
	// Regenerate at login: new ID, data kept, changes applied in the same step.
	res := h.mustCommit(session.Change{ID: from, RenameTo: to, Delta: session.Delta{
		Ops: sets("user", "alice")}})
	h.wantNotFound(from)
	rec := h.wantValues(to, "cart", "3 items", "user", "alice")
	if got, want := rec.Version, res.Index; got != want {
		h.Errorf("Version: got %d, want %d", got, want)
	}
	if got, want := rec.Created, before.Created; !got.Equal(want) {
		h.Errorf("Created after rename: got %v, want %v", got, want)
	}
	if got, want := rec.Owner, "user:1"; got != want {
		h.Errorf("Owner after rename: got %q, want %q", got, want)
	}
	if got, want := rec.AbsoluteDeadline, before.AbsoluteDeadline; !got.Equal(want) {
		h.Errorf("AbsoluteDeadline after rename: got %v, want %v", got, want)
	}
	// The old ID is dead for writes too: a request still holding it
	// cannot recreate or change the session.
	h.wantReject(session.Change{ID: from, Delta: session.Delta{Ops: sets("k", "v")}}, session.ErrNotFound)
	h.wantReject(session.Change{ID: from}, session.ErrNotFound)
	h.wantNotFound(from)
	h.wantValues(to, "cart", "3 items", "user", "alice")
}

func testRenameTargetExists(h *harness) {
	from, to := session.NewID(), session.NewID()
	fromRes := h.create(from, "who", "from")
	toRes := h.create(to, "who", "to")
	h.wantReject(session.Change{ID: from, RenameTo: to, Delta: session.Delta{Ops: sets("x", "y")}}, session.ErrExists)
	if got := h.wantValues(from, "who", "from"); got.Version != fromRes.Index {
		h.Errorf("source Version: got %d, want %d", got.Version, fromRes.Index)
	}
	if got := h.wantValues(to, "who", "to"); got.Version != toRes.Index {
		h.Errorf("target Version: got %d, want %d", got.Version, toRes.Index)
	}
}

func testRenameMissingSource(h *harness) {
	from, to := session.NewID(), session.NewID()
	h.wantReject(session.Change{ID: from, RenameTo: to}, session.ErrNotFound)
	h.wantNotFound(from)
	h.wantNotFound(to)
}

func incr(key string, delta int64) session.Op {
	return session.Op{Kind: session.OpIncr, Key: key, Delta: delta}
}

func testIncr(h *harness) {
	id := session.NewID()
	res := h.mustCommit(session.Change{ID: id, Create: true, Delta: session.Delta{
		Ops: []session.Op{incr("views", 1)}, IdleTimeout: long, Lifetime: long}})
	if got, want := res.Values, []int64{1}; !equalInts(got, want) {
		h.Errorf("Result.Values of create: got %v, want %v", got, want)
	}
	res = h.mustCommit(session.Change{ID: id, Delta: session.Delta{Ops: []session.Op{
		incr("views", 41),
		{Kind: session.OpSet, Key: "other", Value: []byte("x")},
		incr("credit", -5),
		incr("views", -2),
	}}})
	if got, want := res.Values, []int64{42, 0, -5, 40}; !equalInts(got, want) {
		h.Errorf("Result.Values: got %v, want %v", got, want)
	}
	h.wantValues(id, "views", "40", "other", "x", "credit", "-5")

	// A value set as JSON-encoded integer text can be incremented.
	h.mustCommit(session.Change{ID: id, Delta: session.Delta{Ops: sets("n", "7")}})
	res = h.mustCommit(session.Change{ID: id, Delta: session.Delta{Ops: []session.Op{incr("n", 0)}}})
	if got, want := res.Values, []int64{7}; !equalInts(got, want) {
		h.Errorf("Result.Values of incr by 0: got %v, want %v", got, want)
	}
}

func testIncrNotInteger(h *harness) {
	id := session.NewID()
	kv := []string{"name", `"alice"`, "max", "9223372036854775807", "min", "-9223372036854775808"}
	created := h.create(id, kv...)
	for _, tc := range []struct {
		name string
		ops  []session.Op
	}{
		{"string", []session.Op{incr("name", 1)}},
		{"overflow", []session.Op{incr("max", 1)}},
		{"underflow", []session.Op{incr("min", -1)}},
		{"overflow from absent", []session.Op{incr("absent", math.MinInt64), incr("absent", -1)}},
	} {
		h.run(tc.name, func(h *harness) {
			// The set before the failing increment must not survive either.
			ops := append(sets("before", "x"), tc.ops...)
			h.wantReject(session.Change{ID: id, Delta: session.Delta{Ops: ops}}, session.ErrNotInteger)
		})
	}
	rec := h.wantValues(id, kv...)
	if got, want := rec.Version, created.Index; got != want {
		h.Errorf("Version after rejected increments: got %d, want %d", got, want)
	}
}

func cas(key string, old, value []byte) session.Op {
	return session.Op{Kind: session.OpCAS, Key: key, Old: old, Value: value}
}

func testCAS(h *harness) {
	id := session.NewID()
	h.create(id, "state", "a")
	h.mustCommit(session.Change{ID: id, Delta: session.Delta{Ops: []session.Op{
		cas("state", []byte("a"), []byte("b")),
		cas("lock", nil, []byte("mine")), // nil Old: only if absent
	}}})
	h.wantValues(id, "state", "b", "lock", "mine")
	// Old is compared as bytes: the empty value is present, not absent.
	h.mustCommit(session.Change{ID: id, Delta: session.Delta{Ops: []session.Op{
		cas("state", []byte("b"), []byte{}),
		cas("state", []byte{}, []byte("c")),
	}}})
	h.wantValues(id, "state", "c", "lock", "mine")
}

func testCASFailure(h *harness) {
	id := session.NewID()
	created := h.create(id, "state", "a", "lock", "theirs")
	for _, tc := range []struct {
		name string
		op   session.Op
	}{
		{"value differs", cas("state", []byte("x"), []byte("b"))},
		{"absent expected, present", cas("lock", nil, []byte("mine"))},
		{"present expected, absent", cas("absent", []byte("a"), []byte("b"))},
	} {
		h.run(tc.name, func(h *harness) {
			ops := []session.Op{
				{Kind: session.OpSet, Key: "before", Value: []byte("x")},
				incr("counter", 1),
				tc.op,
				{Kind: session.OpSet, Key: "after", Value: []byte("y")},
			}
			h.wantReject(session.Change{ID: id, Delta: session.Delta{Ops: ops, SetOwner: true, Owner: "user:9"}},
				session.ErrCASFailed)
		})
	}
	rec := h.wantValues(id, "state", "a", "lock", "theirs")
	if got, want := rec.Version, created.Index; got != want {
		h.Errorf("Version after failed CAS: got %d, want %d", got, want)
	}
	if got, want := rec.Owner, ""; got != want {
		h.Errorf("Owner after failed CAS: got %q, want %q", got, want)
	}
}

func testInvalid(h *harness) {
	id := session.NewID()
	created := h.create(id, "k", "v")
	for _, tc := range []struct {
		name string
		c    session.Change
	}{
		{"empty ID", session.Change{Delta: session.Delta{Ops: sets("k", "v")}}},
		{"create and destroy", session.Change{ID: id, Create: true, Destroy: true,
			Delta: session.Delta{IdleTimeout: long, Lifetime: long}}},
		{"destroy with ops", session.Change{ID: id, Destroy: true, Delta: session.Delta{Ops: sets("k", "v")}}},
		{"destroy with rename", session.Change{ID: id, Destroy: true, RenameTo: session.NewID()}},
		{"rename to itself", session.Change{ID: id, RenameTo: id}},
		{"create without timeouts", session.Change{ID: session.NewID(), Create: true}},
		{"create and rename", session.Change{ID: session.NewID(), Create: true, RenameTo: session.NewID(),
			Delta: session.Delta{IdleTimeout: long, Lifetime: long}}},
		{"empty key", session.Change{ID: id, Delta: session.Delta{Ops: sets("", "v")}}},
		{"unknown op", session.Change{ID: id, Delta: session.Delta{Ops: []session.Op{{Kind: 99, Key: "k"}}}}},
		{"negative timeout", session.Change{ID: id, Delta: session.Delta{IdleTimeout: -time.Second}}},
	} {
		h.run(tc.name, func(h *harness) {
			h.wantReject(tc.c, session.ErrInvalid)
		})
	}
	rec := h.wantValues(id, "k", "v")
	if got, want := rec.Version, created.Index; got != want {
		h.Errorf("Version after invalid changes: got %d, want %d", got, want)
	}
}

// testRecordsImmutable checks that a returned record is a snapshot: later
// commits do not change it under the caller.
func testRecordsImmutable(h *harness) {
	id := session.NewID()
	h.create(id, "a", "1", "b", "2")
	old := h.mustLoad(id)
	oldVersion := old.Version
	h.mustCommit(session.Change{ID: id, Delta: session.Delta{Ops: []session.Op{
		{Kind: session.OpSet, Key: "a", Value: []byte("10")},
		{Kind: session.OpDelete, Key: "b"},
		{Kind: session.OpSet, Key: "c", Value: []byte("3")},
	}}})
	if got, want := old.Values, valueMap("a", "1", "b", "2"); !equalValues(got, want) {
		h.Errorf("earlier record's values after a commit: got %s, want %s", valuesString(got), valuesString(want))
	}
	if got, want := old.Version, oldVersion; got != want {
		h.Errorf("earlier record's Version after a commit: got %d, want %d", got, want)
	}
	h.wantValues(id, "a", "10", "c", "3")
}

func testIndexMonotonic(h *harness) {
	a, b, c := session.NewID(), session.NewID(), session.NewID()
	var last uint64
	step := func(what string, res session.Result) {
		h.Helper()
		if res.Index <= last {
			h.Fatalf("index of %s: got %d, want > %d", what, res.Index, last)
		}
		last = res.Index
	}
	step("create a", h.create(a))
	step("create b", h.createOwned(b, "user:1"))
	step("update a", h.mustCommit(session.Change{ID: a, Delta: session.Delta{Ops: sets("k", "v")}}))
	step("touch b", h.mustCommit(session.Change{ID: b}))
	step("incr a", h.mustCommit(session.Change{ID: a, Delta: session.Delta{Ops: []session.Op{incr("n", 1)}}}))
	step("rename a", h.mustCommit(session.Change{ID: a, RenameTo: c}))
	if got, want := h.mustLoad(c).Version, last; got != want {
		h.Errorf("Version after rename: got %d, want %d", got, want)
	}
	step("destroy c", h.mustCommit(session.Change{ID: c, Destroy: true}))
	if os, ok := h.store.(session.OwnerStore); ok {
		_, idx, err := os.DestroyOwner(h.ctx, "user:1", "")
		if err != nil {
			h.Fatalf("DestroyOwner: got error %v, want nil", err)
		}
		step("destroy owner", session.Result{Index: idx})
	}
	step("destroy b", h.mustCommit(session.Change{ID: b, Destroy: true}))
}

// testReadYourWrites loads, after each write, with MinIndex set to the
// write's index, as httpmw does with the index in the client's cookie.
func testReadYourWrites(h *harness) {
	id := session.NewID()
	res := h.create(id)
	for i := range 20 {
		v := strconv.Itoa(i)
		res = h.mustCommit(session.Change{ID: id, Delta: session.Delta{Ops: sets("n", v)}})
		for _, level := range []session.Level{session.ReadYourWrites, session.Linearizable} {
			rec, err := h.store.Load(h.ctx, id, session.LoadOptions{Level: level, MinIndex: res.Index})
			if err != nil {
				h.Fatalf("Load(%v, MinIndex %d): got error %v, want nil", level, res.Index, err)
			}
			if got := string(rec.Values.Get("n")); got != v {
				h.Fatalf("Load(%v, MinIndex %d): got n=%q, want %q", level, res.Index, got, v)
			}
			if rec.Version != res.Index {
				h.Fatalf("Load(%v, MinIndex %d): got Version %d, want %d", level, res.Index, rec.Version, res.Index)
			}
		}
	}
	res = h.mustCommit(session.Change{ID: id, Destroy: true})
	_, err := h.store.Load(h.ctx, id, session.LoadOptions{MinIndex: res.Index})
	if !errors.Is(err, session.ErrNotFound) {
		h.Fatalf("Load(MinIndex %d) after destroy: got error %v, want %v", res.Index, err, session.ErrNotFound)
	}
}

func equalInts(a, b []int64) bool { return slices.Equal(a, b) }
