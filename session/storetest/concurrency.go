package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/raftsession/raftsession/session"
)

var concurrencyTests = []contractTest{
	{name: "ConcurrentDifferentKeys", fn: testConcurrentDifferentKeys},
	{name: "ConcurrentIncr", fn: testConcurrentIncr},
	{name: "ConcurrentCreateSameID", fn: testConcurrentCreateSameID},
	{name: "ConcurrentRenameSameSource", fn: testConcurrentRenameSameSource},
	{name: "ConcurrentSessions", fn: testConcurrentSessions},
}

// parallel runs fn(0) … fn(n-1) in n goroutines released together, and
// returns their errors.
func parallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// testConcurrentDifferentKeys is the lost-update race of whole-session
// saves: concurrent requests that set different keys all survive.
func testConcurrentDifferentKeys(h *harness) {
	const rounds = 8
	n := suiteLimits.MaxKeys - 1 // writers per round, plus one key set at creation
	for range rounds {
		id := session.NewID()
		h.create(id, "base", "0")
		errs := parallel(n, func(i int) error {
			k := "k" + strconv.Itoa(i)
			_, err := h.store.Commit(h.ctx, &session.Change{ID: id, Delta: session.Delta{Ops: sets(k, k)}})
			return err
		})
		want := []string{"base", "0"}
		for i, err := range errs {
			if err != nil {
				h.Fatalf("commit %d: got error %v, want nil", i, err)
			}
			k := "k" + strconv.Itoa(i)
			want = append(want, k, k)
		}
		h.wantValues(id, want...)
	}
}

// testConcurrentIncr: 64 concurrent increments of one counter give exactly
// 64, each commit sees a distinct count, and counts follow index order.
// Concurrent commits may share an index (a store may apply them in one log
// entry), so among equal indexes any order of counts is allowed.
func testConcurrentIncr(h *harness) {
	id := session.NewID()
	h.create(id)
	const n = 64
	results := make([]session.Result, n)
	errs := parallel(n, func(i int) error {
		res, err := h.store.Commit(h.ctx, &session.Change{ID: id, Delta: session.Delta{
			Ops: []session.Op{incr("views", 1)}}})
		results[i] = res
		return err
	})
	for i, err := range errs {
		if err != nil {
			h.Fatalf("incr %d: got error %v, want nil", i, err)
		}
	}
	rec := h.wantValues(id, "views", strconv.Itoa(n))
	for i, res := range results {
		if len(res.Values) != 1 {
			h.Fatalf("increment %d: got values %v, want one", i, res.Values)
		}
	}
	slices.SortFunc(results, func(a, b session.Result) int {
		if c := cmp.Compare(a.Index, b.Index); c != 0 {
			return c
		}
		return cmp.Compare(a.Values[0], b.Values[0])
	})
	for i, res := range results {
		if got, want := res.Values, []int64{int64(i + 1)}; !slices.Equal(got, want) {
			h.Errorf("increment at index %d (%d-th by index, then count): got %v, want %v", res.Index, i+1, got, want)
		}
	}
	if got, want := rec.Version, results[n-1].Index; got != want {
		h.Errorf("Version: got %d, want %d (the last increment's index)", got, want)
	}
}

func testConcurrentCreateSameID(h *harness) {
	id := session.NewID()
	const n = 16
	errs := parallel(n, func(i int) error {
		_, err := h.store.Commit(h.ctx, &session.Change{ID: id, Create: true, Delta: session.Delta{
			Ops: sets("winner", strconv.Itoa(i)), IdleTimeout: long, Lifetime: long}})
		return err
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			h.Errorf("creates %d and %d both succeeded, want exactly one", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, session.ErrExists):
			h.Errorf("create %d: got error %v, want nil or %v", i, err, session.ErrExists)
		}
	}
	if winner < 0 {
		h.Fatalf("no create succeeded, want exactly one")
	}
	h.wantValues(id, "winner", strconv.Itoa(winner))
}

// testConcurrentRenameSameSource: a session regenerated twice at once ends
// up under exactly one new ID, with its data.
func testConcurrentRenameSameSource(h *harness) {
	from := session.NewID()
	h.create(from, "cart", "3 items")
	const n = 8
	targets := make([]string, n)
	for i := range targets {
		targets[i] = session.NewID()
	}
	errs := parallel(n, func(i int) error {
		_, err := h.store.Commit(h.ctx, &session.Change{ID: from, RenameTo: targets[i], Delta: session.Delta{
			Ops: sets("renamer", strconv.Itoa(i))}})
		return err
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			h.Errorf("renames %d and %d both succeeded, want exactly one", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, session.ErrNotFound):
			h.Errorf("rename %d: got error %v, want nil or %v", i, err, session.ErrNotFound)
		}
	}
	if winner < 0 {
		h.Fatalf("no rename succeeded, want exactly one")
	}
	h.wantNotFound(from)
	for i, to := range targets {
		if i == winner {
			h.wantValues(to, "cart", "3 items", "renamer", strconv.Itoa(i))
		} else {
			h.wantNotFound(to)
		}
	}
}

// testConcurrentSessions commits to many sessions from many goroutines:
// no change to one session leaks into another.
func testConcurrentSessions(h *harness) {
	const sessions, writes = 8, 6 // writes+1 keys per session, within suiteLimits.MaxKeys
	ids := make([]string, sessions)
	for i := range ids {
		ids[i] = session.NewID()
		h.create(ids[i])
	}
	errs := parallel(sessions*writes, func(i int) error {
		s, w := i%sessions, i/sessions
		k := "w" + strconv.Itoa(w)
		_, err := h.store.Commit(h.ctx, &session.Change{ID: ids[s], Delta: session.Delta{
			Ops: append(sets(k, strconv.Itoa(s)), incr("n", 1))}})
		if err != nil {
			return fmt.Errorf("session %d write %d: %w", s, w, err)
		}
		_, err = h.store.Load(h.ctx, ids[s], session.LoadOptions{})
		return err
	})
	for _, err := range errs {
		if err != nil {
			h.Fatalf("got error %v, want nil", err)
		}
	}
	for s, id := range ids {
		want := []string{"n", strconv.Itoa(writes)}
		for w := range writes {
			want = append(want, "w"+strconv.Itoa(w), strconv.Itoa(s))
		}
		h.wantValues(id, want...)
	}
}
