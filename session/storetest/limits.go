package storetest

import (
	"strings"

	"github.com/raftsession/raftsession/session"
)

var limitTests = []contractTest{
	{name: "AtLimits", fn: testAtLimits},
	{name: "TooLarge", fn: testTooLarge},
	{name: "ReportedLimits", fn: testReportedLimits},
}

// testReportedLimits: a store that reports its limits reports the ones it
// enforces, since the middleware checks a handler's values against them.
func testReportedLimits(h *harness) {
	ls, ok := h.raw.(session.LimitStore)
	if !ok {
		h.Skip("the store does not implement session.LimitStore")
	}
	if got := ls.Limits(); got != suiteLimits {
		h.Errorf("Limits(): got %+v, want %+v", got, suiteLimits)
	}
}

// testAtLimits fills a session exactly to each limit: nothing is rejected.
func testAtLimits(h *harness) {
	id := session.NewID()
	h.mustCommit(session.Change{ID: id, Create: true, Delta: session.Delta{
		Ops:      sets(strings.Repeat("k", suiteLimits.MaxKeyBytes), strings.Repeat("v", suiteLimits.MaxValueBytes)),
		SetOwner: true, Owner: strings.Repeat("o", suiteLimits.MaxKeyBytes), IdleTimeout: long, Lifetime: long,
	}})
	// MaxKeys keys.
	id = session.NewID()
	var keys []string
	for i := range suiteLimits.MaxKeys {
		keys = append(keys, string(rune('a'+i)), "v")
	}
	h.create(id, keys...)
	if got, want := h.mustLoad(id).Values.Len(), suiteLimits.MaxKeys; got != want {
		h.Errorf("number of keys: got %d, want %d", got, want)
	}
	// Values whose sizes add up to exactly MaxBytes.
	id = session.NewID()
	kv := fill(suiteLimits.MaxBytes)
	h.create(id)
	h.mustCommit(session.Change{ID: id, Delta: session.Delta{Ops: sets(kv...)}})
	if got, want := h.mustLoad(id).Size(), suiteLimits.MaxBytes; got != want {
		h.Errorf("Size: got %d, want %d", got, want)
	}
}

func testTooLarge(h *harness) {
	existing := session.NewID()
	created := h.create(existing, "keep", "me")
	manyKeys := func(n int) []session.Op {
		var kv []string
		for i := range n {
			kv = append(kv, string(rune('a'+i)), "v")
		}
		return sets(kv...)
	}
	// Values that each fit but together exceed MaxBytes, in fewer than
	// MaxKeys keys.
	full := strings.Repeat("v", suiteLimits.MaxValueBytes)
	var tooMany []string
	for i := range suiteLimits.MaxBytes/(suiteLimits.MaxValueBytes+1) + 1 {
		tooMany = append(tooMany, string(rune('a'+i)), full)
	}
	for _, tc := range []struct {
		name  string
		delta session.Delta
	}{
		{"value", session.Delta{Ops: sets("k", full+"v")}},
		{"key", session.Delta{Ops: sets(strings.Repeat("k", suiteLimits.MaxKeyBytes+1), "v")}},
		{"owner", session.Delta{SetOwner: true, Owner: strings.Repeat("o", suiteLimits.MaxKeyBytes+1)}},
		{"keys", session.Delta{Ops: manyKeys(suiteLimits.MaxKeys + 1)}},
		{"bytes", session.Delta{Ops: sets(tooMany...)}},
		// "99" fits exactly; the increment makes it "100", one byte too many.
		{"incr", session.Delta{Ops: append(sets(append(fill(suiteLimits.MaxBytes-len("n99")), "n", "99")...),
			session.Op{Kind: session.OpIncr, Key: "n", Delta: 1})}},
	} {
		h.run(tc.name, func(h *harness) {
			id := session.NewID()
			create := tc.delta
			create.IdleTimeout, create.Lifetime = long, long
			h.wantReject(session.Change{ID: id, Create: true, Delta: create}, session.ErrTooLarge)
			h.wantNotFound(id)
			h.wantReject(session.Change{ID: existing, Delta: tc.delta}, session.ErrTooLarge)
		})
	}
	rec := h.wantValues(existing, "keep", "me")
	if got, want := rec.Version, created.Index; got != want {
		h.Errorf("Version after rejected changes: got %d, want %d", got, want)
	}
	if got, want := rec.Owner, ""; got != want {
		h.Errorf("Owner after rejected changes: got %q, want %q", got, want)
	}
}

// fill returns key/value pairs, with one-byte keys from "a" and values no
// longer than suiteLimits.MaxValueBytes, whose sizes add up to exactly size.
func fill(size int) []string {
	var kv []string
	for i := 0; size > 0; i++ {
		n := min(size, suiteLimits.MaxValueBytes+1)
		kv = append(kv, string(rune('a'+i)), strings.Repeat("v", n-1))
		size -= n
	}
	return kv
}
