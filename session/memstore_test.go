package session

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"
)

// memTestClock is a fake clock for MemoryOptions.Now.
type memTestClock struct {
	mu  sync.Mutex
	now time.Time
}

func newMemTestClock() *memTestClock {
	return &memTestClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *memTestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *memTestClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestMemoryStore(t testing.TB, opt MemoryOptions) *MemoryStore {
	t.Helper()
	s := NewMemoryStore(opt)
	t.Cleanup(func() { s.Close() })
	return s
}

func memCreate(t testing.TB, s *MemoryStore, id, owner string, idle time.Duration) Result {
	t.Helper()
	res, err := s.Commit(context.Background(), &Change{ID: id, Create: true, Delta: Delta{
		Ops:      []Op{{Kind: OpSet, Key: "k", Value: []byte("v")}},
		SetOwner: owner != "", Owner: owner, IdleTimeout: idle, Lifetime: 24 * time.Hour,
	}})
	if err != nil {
		t.Fatalf("create: got error %v, want nil", err)
	}
	return res
}

// memShape is what the store holds, counted from its indexes.
type memShape struct {
	records, heap int
	owners        map[string]int
}

func (s *MemoryStore) shape() memShape {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sh := memShape{records: len(s.records), heap: len(s.expiry), owners: map[string]int{}}
	for o, set := range s.owners {
		sh.owners[o] = len(set)
	}
	return sh
}

func (sh memShape) String() string {
	return fmt.Sprintf("{records: %d, heap: %d, owners: %v}", sh.records, sh.heap, sh.owners)
}

// checkInvariants verifies that the expiry heap and the owner index
// describe exactly the stored records.
func (s *MemoryStore) checkInvariants() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.expiry) != len(s.records) {
		return fmt.Errorf("heap has %d entries, want %d (one per record)", len(s.expiry), len(s.records))
	}
	owned := 0
	for k, e := range s.records {
		if e.key != k {
			return fmt.Errorf("entry under %v has key %v", k, e.key)
		}
		if e.pos < 0 || e.pos >= len(s.expiry) || s.expiry[e.pos] != e {
			return fmt.Errorf("entry %v: heap position %d is stale", k, e.pos)
		}
		if !e.deadline.Equal(e.rec.Deadline()) {
			return fmt.Errorf("entry %v: heap deadline %v, record deadline %v", k, e.deadline, e.rec.Deadline())
		}
		if e.rec.Owner != "" {
			owned++
			if _, ok := s.owners[e.rec.Owner][k]; !ok {
				return fmt.Errorf("entry %v: missing from the index of owner %q", k, e.rec.Owner)
			}
		}
	}
	n := 0
	for o, set := range s.owners {
		if o == "" || len(set) == 0 {
			return fmt.Errorf("owner index holds %q with %d keys", o, len(set))
		}
		for k := range set {
			if e := s.records[k]; e == nil || e.rec.Owner != o {
				return fmt.Errorf("owner index of %q holds %v, which is not that owner's record", o, k)
			}
		}
		n += len(set)
	}
	if n != owned {
		return fmt.Errorf("owner index holds %d keys, want %d", n, owned)
	}
	for i := 1; i < len(s.expiry); i++ {
		if p := (i - 1) / 2; s.expiry[i].deadline.Before(s.expiry[p].deadline) {
			return fmt.Errorf("heap order broken at %d", i)
		}
	}
	return nil
}

// waitFor polls cond until it is true or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func TestMemoryStoreJanitor(t *testing.T) {
	clock := newMemTestClock()
	s := newTestMemoryStore(t, MemoryOptions{JanitorInterval: time.Millisecond, Now: clock.Now})
	for range 3 {
		memCreate(t, s, NewID(), "user:1", time.Minute)
	}
	memCreate(t, s, NewID(), "user:2", time.Minute)
	memCreate(t, s, NewID(), "", time.Minute)
	kept := NewID()
	memCreate(t, s, kept, "user:1", time.Hour)
	if got, want := s.shape().String(), (memShape{records: 6, heap: 6, owners: map[string]int{"user:1": 4, "user:2": 1}}).String(); got != want {
		t.Fatalf("before expiry: got %s, want %s", got, want)
	}

	clock.Advance(2 * time.Minute)
	want := memShape{records: 1, heap: 1, owners: map[string]int{"user:1": 1}}.String()
	waitFor(t, "the janitor to remove expired records", func() bool { return s.shape().String() == want })
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(context.Background(), kept, LoadOptions{}); err != nil {
		t.Fatalf("Load of the live session: got error %v, want nil", err)
	}

	clock.Advance(2 * time.Hour)
	want = memShape{records: 0, heap: 0, owners: map[string]int{}}.String()
	waitFor(t, "the janitor to remove the last record", func() bool { return s.shape().String() == want })
	s.mu.RLock()
	owners := len(s.owners)
	s.mu.RUnlock()
	if owners != 0 {
		t.Errorf("owner index entries: got %d, want 0", owners)
	}
}

func TestMemoryStoreSweepInBatches(t *testing.T) {
	clock := newMemTestClock()
	s := newTestMemoryStore(t, MemoryOptions{JanitorInterval: time.Hour, Now: clock.Now})
	n := 2*sweepBatch + 10
	for i := range n {
		memCreate(t, s, NewID(), "user:"+strconv.Itoa(i%7), time.Minute)
	}
	live := NewID()
	memCreate(t, s, live, "user:1", time.Hour)
	clock.Advance(2 * time.Minute)
	s.sweep()
	if got, want := s.shape().String(), (memShape{records: 1, heap: 1, owners: map[string]int{"user:1": 1}}).String(); got != want {
		t.Fatalf("after sweep: got %s, want %s", got, want)
	}
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}

// TestMemoryStoreTouchKeepsHeapBounded: a touch moves the record's heap
// entry; it never adds one.
func TestMemoryStoreTouchKeepsHeapBounded(t *testing.T) {
	clock := newMemTestClock()
	s := newTestMemoryStore(t, MemoryOptions{Now: clock.Now})
	ids := make([]string, 16)
	for i := range ids {
		ids[i] = NewID()
		memCreate(t, s, ids[i], "", time.Minute)
	}
	ctx := context.Background()
	for i := range 10000 {
		clock.Advance(time.Millisecond)
		if _, err := s.Commit(ctx, &Change{ID: ids[i%len(ids)]}); err != nil {
			t.Fatalf("touch %d: got error %v, want nil", i, err)
		}
	}
	if got, want := s.shape().heap, len(ids); got != want {
		t.Errorf("heap entries: got %d, want %d", got, want)
	}
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
}

// TestMemoryStoreRandomOps runs a random mix of every operation on a few
// IDs and owners, with a moving clock, checking the indexes after each.
func TestMemoryStoreRandomOps(t *testing.T) {
	clock := newMemTestClock()
	s := newTestMemoryStore(t, MemoryOptions{JanitorInterval: time.Hour, Now: clock.Now})
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, 12)
	for i := range ids {
		ids[i] = NewID()
	}
	owners := []string{"", "user:1", "user:2", "user:3"}
	ctx := context.Background()
	var last uint64
	for step := range 3000 {
		id := ids[rng.IntN(len(ids))]
		owner := owners[rng.IntN(len(owners))]
		idle := time.Duration(1+rng.IntN(60)) * time.Second
		var (
			idx uint64
			err error
			res Result
		)
		switch op := rng.IntN(10); op {
		case 0, 1:
			res, err = s.Commit(ctx, &Change{ID: id, Create: true, Delta: Delta{
				SetOwner: owner != "", Owner: owner, IdleTimeout: idle, Lifetime: time.Duration(1+rng.IntN(90)) * time.Second}})
		case 2:
			res, err = s.Commit(ctx, &Change{ID: id, Delta: Delta{SetOwner: true, Owner: owner, IdleTimeout: idle}})
		case 3:
			res, err = s.Commit(ctx, &Change{ID: id, Delta: Delta{Ops: []Op{{Kind: OpIncr, Key: "n", Delta: 1}}}})
		case 4:
			res, err = s.Commit(ctx, &Change{ID: id})
		case 5:
			res, err = s.Commit(ctx, &Change{ID: id, Destroy: true})
		case 6, 7:
			to := ids[rng.IntN(len(ids))]
			if to == id {
				continue
			}
			res, err = s.Commit(ctx, &Change{ID: id, RenameTo: to, Delta: Delta{Lifetime: time.Minute}})
		case 8:
			if owner == "" {
				continue
			}
			_, idx, err = s.DestroyOwner(ctx, owner, ids[rng.IntN(len(ids))])
			res.Index = idx
		case 9:
			if rng.IntN(4) == 0 {
				s.sweep()
			}
			clock.Advance(time.Duration(rng.IntN(10)) * time.Second)
			continue
		}
		switch {
		case err == nil:
			if res.Index <= last {
				t.Fatalf("step %d: index %d, want > %d", step, res.Index, last)
			}
			last = res.Index
		case !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExists):
			t.Fatalf("step %d: unexpected error %v", step, err)
		}
		if err := s.checkInvariants(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
}

// TestMemoryStoreExpiredUnswept: a record past its deadline that the
// janitor has not removed yet behaves as absent, and reusing its ID
// replaces it in every index.
func TestMemoryStoreExpiredUnswept(t *testing.T) {
	clock := newMemTestClock()
	s := newTestMemoryStore(t, MemoryOptions{JanitorInterval: time.Hour, Now: clock.Now})
	ctx := context.Background()
	id := NewID()
	memCreate(t, s, id, "user:1", time.Minute)
	clock.Advance(time.Minute) // exactly at the deadline: expired
	if _, err := s.Load(ctx, id, LoadOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load at the deadline: got error %v, want %v", err, ErrNotFound)
	}
	if infos, err := s.ListOwner(ctx, "user:1", LoadOptions{}); err != nil || len(infos) != 0 {
		t.Fatalf("ListOwner: got (%v, %v), want ([], nil)", infos, err)
	}
	if got, want := s.shape().records, 1; got != want {
		t.Fatalf("records before reuse: got %d, want %d (not swept yet)", got, want)
	}
	memCreate(t, s, id, "user:2", time.Minute)
	if got, want := s.shape().String(), (memShape{records: 1, heap: 1, owners: map[string]int{"user:2": 1}}).String(); got != want {
		t.Errorf("after reuse: got %s, want %s", got, want)
	}
	if err := s.checkInvariants(); err != nil {
		t.Fatal(err)
	}
	// An update of an expired record is rejected and frees it at once.
	clock.Advance(time.Hour)
	if _, err := s.Commit(ctx, &Change{ID: id}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("touch of an expired session: got error %v, want %v", err, ErrNotFound)
	}
	if got, want := s.shape().String(), (memShape{records: 0, heap: 0, owners: map[string]int{}}).String(); got != want {
		t.Errorf("after rejected touch: got %s, want %s", got, want)
	}
}

func TestMemoryStoreCountSweeps(t *testing.T) {
	clock := newMemTestClock()
	s := newTestMemoryStore(t, MemoryOptions{JanitorInterval: time.Hour, Now: clock.Now})
	memCreate(t, s, NewID(), "user:1", time.Minute)
	memCreate(t, s, NewID(), "user:1", time.Hour)
	clock.Advance(2 * time.Minute)
	n, err := s.Count(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Count: got (%d, %v), want (1, nil)", n, err)
	}
	if got, want := s.shape().records, 1; got != want {
		t.Errorf("records after Count: got %d, want %d", got, want)
	}
}

func TestMemoryStoreClose(t *testing.T) {
	s := NewMemoryStore(MemoryOptions{JanitorInterval: time.Millisecond})
	ctx := context.Background()
	id := NewID()
	memCreate(t, s, id, "user:1", time.Minute)

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: got error %v, want nil", err)
			}
		})
	}
	wg.Wait()
	select {
	case <-s.done:
	default:
		t.Fatal("janitor still running after Close returned")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close again: got error %v, want nil", err)
	}

	calls := []struct {
		name string
		call func() error
	}{
		{"Load", func() error { _, err := s.Load(ctx, id, LoadOptions{}); return err }},
		{"Commit", func() error { _, err := s.Commit(ctx, &Change{ID: id}); return err }},
		{"ListOwner", func() error { _, err := s.ListOwner(ctx, "user:1", LoadOptions{}); return err }},
		{"DestroyOwner", func() error { _, _, err := s.DestroyOwner(ctx, "user:1", ""); return err }},
		{"Count", func() error { _, err := s.Count(ctx); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: got error %v, want %v", c.name, err, ErrClosed)
		}
	}
}

func TestMemoryStoreArguments(t *testing.T) {
	s := newTestMemoryStore(t, MemoryOptions{})
	ctx := context.Background()
	if _, err := s.ListOwner(ctx, "", LoadOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("ListOwner(\"\"): got error %v, want %v", err, ErrInvalid)
	}
	if _, _, err := s.DestroyOwner(ctx, "", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("DestroyOwner(\"\"): got error %v, want %v", err, ErrInvalid)
	}

	// An index the store never issued (a cookie from before a restart)
	// does not make reads fail: there is no fresher replica to wait for.
	id := NewID()
	memCreate(t, s, id, "", time.Minute)
	if _, err := s.Load(ctx, id, LoadOptions{Level: Linearizable, MinIndex: 1 << 60}); err != nil {
		t.Errorf("Load(MinIndex far ahead): got error %v, want nil", err)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Commit(canceled, &Change{ID: id, Destroy: true}); !errors.Is(err, context.Canceled) {
		t.Errorf("Commit with a canceled context: got error %v, want %v", err, context.Canceled)
	}
	if _, err := s.Load(ctx, id, LoadOptions{}); err != nil {
		t.Errorf("Load after the canceled destroy: got error %v, want nil", err)
	}
	if _, err := s.Load(canceled, id, LoadOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a canceled context: got error %v, want %v", err, context.Canceled)
	}
}

func TestMemoryStoreDefaults(t *testing.T) {
	s := newTestMemoryStore(t, MemoryOptions{})
	if got, want := s.lim, DefaultLimits(); got != want {
		t.Errorf("limits: got %+v, want %+v", got, want)
	}
	if got, want := s.interval, time.Minute; got != want {
		t.Errorf("janitor interval: got %v, want %v", got, want)
	}
	// Stored times carry no monotonic reading, as in a replicated store.
	id := NewID()
	memCreate(t, s, id, "", time.Minute)
	rec, err := s.Load(context.Background(), id, LoadOptions{})
	if err != nil {
		t.Fatalf("Load: got error %v, want nil", err)
	}
	if got, want := rec.Created, rec.Created.Round(0); got != want {
		t.Errorf("Created: got %v, want %v (no monotonic reading)", got, want)
	}
}

func BenchmarkMemoryStoreLoad(b *testing.B) {
	s := newTestMemoryStore(b, MemoryOptions{})
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = NewID()
		memCreate(b, s, ids[i], "", time.Hour)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Load(ctx, ids[i%len(ids)], LoadOptions{}); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func BenchmarkMemoryStoreCommitSet(b *testing.B) {
	s := newTestMemoryStore(b, MemoryOptions{})
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = NewID()
		memCreate(b, s, ids[i], "user:1", time.Hour)
	}
	ctx := context.Background()
	value := []byte(`"dark"`)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c := Change{ID: ids[i%len(ids)], Delta: Delta{Ops: []Op{{Kind: OpSet, Key: "theme", Value: value}}}}
			if _, err := s.Commit(ctx, &c); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkMemoryStoreIncrOneSession is the worst case: every commit
// contends for one session.
func BenchmarkMemoryStoreIncrOneSession(b *testing.B) {
	s := newTestMemoryStore(b, MemoryOptions{})
	id := NewID()
	memCreate(b, s, id, "", time.Hour)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := Change{ID: id, Delta: Delta{Ops: []Op{{Kind: OpIncr, Key: "views", Delta: 1}}}}
			if _, err := s.Commit(ctx, &c); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
