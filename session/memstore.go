package session

import (
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// MemoryOptions configure a [MemoryStore]. The zero value is ready to use.
type MemoryOptions struct {
	// Limits bound what one session may hold. Zero fields take the values
	// of [DefaultLimits]. [MemoryStore.Limits] reports them, and the
	// middleware takes them as its own.
	Limits Limits
	// JanitorInterval is how often expired records are removed from
	// memory. Expired records are never returned before then; the janitor
	// only gives their memory back. Default 1 minute.
	JanitorInterval time.Duration
	// Now is the clock. Default [time.Now]; tests inject a fake clock.
	// Times are stored without their monotonic reading, as a replicated
	// store would hold them.
	Now func() time.Time
}

// sweepBatch bounds how many expired records one hold of the write lock
// removes, so a mass expiry never stalls readers for long.
const sweepBatch = 4096

// MemoryStore is a [Store] that keeps sessions in the memory of one process.
// It implements the full semantics of the replicated store (see [Change]),
// so an application can start on it and move to a cluster unchanged; it
// also implements [OwnerStore] and [CountStore].
//
// A MemoryStore is safe for concurrent use. Loads share a read lock;
// commits are serialised. Every successful commit gets the next index, so
// [LoadOptions] are always satisfied: there is only one replica and it is
// never behind.
//
// Memory stays bounded by the live sessions plus those expired since the
// last janitor run: each record has exactly one entry in an expiry heap,
// updated in place when the record is touched, and the janitor removes
// expired records at a cost proportional to their number.
type MemoryStore struct {
	lim      Limits
	now      func() time.Time
	interval time.Duration

	mu      sync.RWMutex
	closed  bool
	index   uint64
	records map[Key]*memEntry
	owners  map[string]map[Key]struct{} // owner ("" excluded) → keys
	expiry  expiryHeap                  // one entry per record, earliest deadline first

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var (
	_ OwnerStore = (*MemoryStore)(nil)
	_ CountStore = (*MemoryStore)(nil)
	_ LimitStore = (*MemoryStore)(nil)
)

// memEntry is one stored record and its place in the expiry heap. The
// record it points to is immutable; a commit swaps in a new one.
type memEntry struct {
	key      Key
	rec      *Record
	deadline time.Time // rec.Deadline(), cached for the heap
	pos      int       // index in MemoryStore.expiry
}

// NewMemoryStore returns an empty store and starts its janitor goroutine,
// which [MemoryStore.Close] stops.
func NewMemoryStore(opt MemoryOptions) *MemoryStore {
	s := &MemoryStore{
		lim:      opt.Limits.WithDefaults(),
		now:      opt.Now,
		interval: opt.JanitorInterval,
		records:  make(map[Key]*memEntry),
		owners:   make(map[string]map[Key]struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.interval <= 0 {
		s.interval = time.Minute
	}
	go s.janitor()
	return s
}

// Limits implements [LimitStore]: the limits every commit is checked
// against, from [MemoryOptions.Limits].
func (s *MemoryStore) Limits() Limits { return s.lim }

// Load returns the live record of id. A session that never existed, was
// destroyed or has expired returns an error wrapping [ErrNotFound]; a closed
// store returns one wrapping [ErrClosed]. opt is always satisfied: the only
// replica is never behind. The record and its Values are shared with other
// callers and must not be modified.
func (s *MemoryStore) Load(ctx context.Context, id string, opt LoadOptions) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory store: load: %w", err)
	}
	k := KeyOf(id)
	now := s.now()
	s.mu.RLock()
	closed := s.closed
	var rec *Record
	if e := s.records[k]; e != nil {
		rec = e.rec
	}
	s.mu.RUnlock()
	switch {
	case closed:
		return nil, fmt.Errorf("memory store: load: %w", ErrClosed)
	case rec == nil || !rec.Live(now):
		return nil, fmt.Errorf("memory store: load %s: %w", k, ErrNotFound)
	}
	return rec, nil
}

// Commit applies c atomically and returns the index at which it became
// visible (also the new record's Version). A rejected change (see [Change])
// returns an error wrapping ErrNotFound, ErrExists, ErrTooLarge,
// ErrCASFailed, ErrNotInteger or ErrInvalid and changes nothing; a closed
// store returns one wrapping [ErrClosed]. A record that has expired but not
// yet been swept counts as absent: it cannot be updated, and a Create or a
// rename may take its ID.
func (s *MemoryStore) Commit(ctx context.Context, c *Change) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("memory store: commit: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Result{}, fmt.Errorf("memory store: commit: %w", err)
	}
	k := KeyOf(c.ID)
	var to Key
	if c.RenameTo != "" {
		to = KeyOf(c.RenameTo)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Result{}, fmt.Errorf("memory store: commit: %w", ErrClosed)
	}
	// Reading the clock under the lock keeps times in index order.
	now := s.now().Round(0)
	cur := s.records[k]
	curLive := cur != nil && cur.rec.Live(now)

	switch {
	case c.Destroy:
		if cur != nil {
			s.remove(cur)
		}
		s.index++
		return Result{Index: s.index}, nil

	case c.Create:
		if curLive {
			return Result{}, fmt.Errorf("memory store: create %s: %w", k, ErrExists)
		}
		rec, vals, err := c.Delta.Apply(nil, now, s.index+1, s.lim)
		if err != nil {
			return Result{}, fmt.Errorf("memory store: create %s: %w", k, err)
		}
		if cur != nil {
			s.remove(cur)
		}
		s.index++
		s.insert(k, rec)
		return Result{Index: s.index, Values: vals}, nil
	}

	if !curLive {
		if cur != nil {
			s.remove(cur) // expired: give the memory back now
		}
		return Result{}, fmt.Errorf("memory store: update %s: %w", k, ErrNotFound)
	}
	var target *memEntry
	if c.RenameTo != "" {
		target = s.records[to]
		if target != nil && target.rec.Live(now) {
			return Result{}, fmt.Errorf("memory store: rename %s to %s: %w", k, to, ErrExists)
		}
	}
	rec, vals, err := c.Delta.Apply(cur.rec, now, s.index+1, s.lim)
	if err != nil {
		return Result{}, fmt.Errorf("memory store: update %s: %w", k, err)
	}
	s.index++
	if c.RenameTo == "" {
		s.replace(cur, rec)
		return Result{Index: s.index, Values: vals}, nil
	}
	s.remove(cur)
	if target != nil {
		s.remove(target) // expired, so the ID is free
	}
	s.insert(to, rec)
	return Result{Index: s.index, Values: vals}, nil
}

// ListOwner returns the live sessions of owner, oldest first, in time
// proportional to the owner's number of sessions. An empty owner (which
// means "nobody") is rejected with [ErrInvalid]. The result is never nil.
func (s *MemoryStore) ListOwner(ctx context.Context, owner string, opt LoadOptions) ([]Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory store: list owner: %w", err)
	}
	if owner == "" {
		return nil, fmt.Errorf("memory store: list owner: %w: empty owner", ErrInvalid)
	}
	now := s.now()
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, fmt.Errorf("memory store: list owner: %w", ErrClosed)
	}
	keys := s.owners[owner]
	infos := make([]Info, 0, len(keys))
	for k := range keys {
		if rec := s.records[k].rec; rec.Live(now) {
			infos = append(infos, InfoOf(k, rec))
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(infos, func(a, b Info) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return bytes.Compare(a.Key[:], b.Key[:])
	})
	return infos, nil
}

// DestroyOwner destroys every session of owner except the one with ID
// except ("" keeps none), in time proportional to the owner's number of
// sessions, and returns how many live sessions it destroyed and the index
// at which that became visible. An empty owner is rejected with
// [ErrInvalid].
func (s *MemoryStore) DestroyOwner(ctx context.Context, owner, except string) (int, uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, fmt.Errorf("memory store: destroy owner: %w", err)
	}
	if owner == "" {
		return 0, 0, fmt.Errorf("memory store: destroy owner: %w: empty owner", ErrInvalid)
	}
	var keep Key
	if except != "" {
		keep = KeyOf(except)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, 0, fmt.Errorf("memory store: destroy owner: %w", ErrClosed)
	}
	now := s.now().Round(0)
	n := 0
	// remove deletes from this set (and may drop it from s.owners); deleting
	// during range is well defined.
	for k := range s.owners[owner] {
		if except != "" && k == keep {
			continue
		}
		e := s.records[k]
		if e.rec.Live(now) {
			n++
		}
		s.remove(e)
	}
	s.index++
	return n, s.index, nil
}

// Count returns the number of live sessions. It first removes expired
// records, at a cost proportional to their number.
func (s *MemoryStore) Count(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memory store: count: %w", err)
	}
	s.sweep()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, fmt.Errorf("memory store: count: %w", ErrClosed)
	}
	return len(s.records), nil
}

// Close stops the janitor and drops every session. It is idempotent and
// always returns nil; every other method of a closed store returns an error
// wrapping [ErrClosed].
func (s *MemoryStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.mu.Lock()
		s.closed = true
		s.records, s.owners, s.expiry = nil, nil, nil
		s.mu.Unlock()
	})
	return nil
}

func (s *MemoryStore) janitor() {
	defer close(s.done)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			s.sweep()
		}
	}
}

// sweep removes every record expired at the current time, in batches so
// that loads and commits interleave with a large sweep.
func (s *MemoryStore) sweep() {
	now := s.now()
	for {
		s.mu.Lock()
		n := s.sweepLocked(now, sweepBatch)
		s.mu.Unlock()
		if n < sweepBatch {
			return
		}
	}
}

// sweepLocked removes up to limit records expired at now and returns how
// many it removed. s.mu must be held for writing.
func (s *MemoryStore) sweepLocked(now time.Time, limit int) int {
	n := 0
	for n < limit && len(s.expiry) > 0 && !now.Before(s.expiry[0].deadline) {
		s.remove(s.expiry[0])
		n++
	}
	return n
}

// insert stores rec under k, which must be free. s.mu must be held for
// writing.
func (s *MemoryStore) insert(k Key, rec *Record) {
	e := &memEntry{key: k, rec: rec, deadline: rec.Deadline()}
	s.records[k] = e
	heap.Push(&s.expiry, e)
	s.addOwner(rec.Owner, k)
}

// replace makes rec the record of e, keeping the indexes in step. s.mu
// must be held for writing.
func (s *MemoryStore) replace(e *memEntry, rec *Record) {
	if old := e.rec.Owner; old != rec.Owner {
		s.dropOwner(old, e.key)
		s.addOwner(rec.Owner, e.key)
	}
	e.rec = rec
	if d := rec.Deadline(); !d.Equal(e.deadline) {
		e.deadline = d
		heap.Fix(&s.expiry, e.pos)
	}
}

// remove deletes e from the store and its indexes. s.mu must be held for
// writing.
func (s *MemoryStore) remove(e *memEntry) {
	delete(s.records, e.key)
	heap.Remove(&s.expiry, e.pos)
	s.dropOwner(e.rec.Owner, e.key)
}

func (s *MemoryStore) addOwner(owner string, k Key) {
	if owner == "" {
		return
	}
	set := s.owners[owner]
	if set == nil {
		set = make(map[Key]struct{})
		s.owners[owner] = set
	}
	set[k] = struct{}{}
}

func (s *MemoryStore) dropOwner(owner string, k Key) {
	if owner == "" {
		return
	}
	set := s.owners[owner]
	delete(set, k)
	if len(set) == 0 {
		delete(s.owners, owner)
	}
}

// expiryHeap is a min-heap of entries by deadline that keeps each entry's
// position in it, so a touched record moves with heap.Fix instead of
// leaving a stale entry behind.
type expiryHeap []*memEntry

func (h expiryHeap) Len() int { return len(h) }

func (h expiryHeap) Less(i, j int) bool {
	return h[i].deadline.Before(h[j].deadline)
}

func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos = i
	h[j].pos = j
}

func (h *expiryHeap) Push(x any) {
	e := x.(*memEntry)
	e.pos = len(*h)
	*h = append(*h, e)
}

func (h *expiryHeap) Pop() any {
	old := *h
	n := len(old) - 1
	e := old[n]
	old[n] = nil // let the entry be collected
	e.pos = -1
	*h = old[:n]
	return e
}
