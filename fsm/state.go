package fsm

import (
	"bytes"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/btree"

	"github.com/raftsession/raftsession/session"
)

// The primary index is split into shards of plain Go maps. A map lookup is
// the cheapest read there is, and sharding gives snapshots their
// copy-on-write granularity: Snapshot marks every shard shared in O(shards),
// and the first write to a shared shard clones just that shard (about 1000
// entries at 1M sessions). Records themselves are immutable, so a captured
// map is a consistent view for as long as Persist needs it.
const (
	shardBits = 10
	nShards   = 1 << shardBits
)

type shard struct {
	// mu guards m against readers while the apply goroutine writes it.
	// The apply goroutine itself reads m without it: it is the only writer.
	mu sync.RWMutex
	m  map[session.Key]entry
	// shared means a snapshot holds m, so it must be cloned before the next
	// write. Only the apply goroutine (Apply, Snapshot) touches it.
	shared bool
	// Readers on different cores lock neighbouring shards; keeping each
	// shard on its own cache line stops them invalidating each other.
	_ [64 - 24 - 8 - 8]byte
}

// entry is what the primary index holds for a key. expAt is the time of
// the record's item in the expiry index, which may be earlier than the
// record's deadline (see state.expiry).
type entry struct {
	rec   *session.Record
	expAt int64
}

type recordMap = map[session.Key]entry

func shardOf(k *session.Key) int {
	// Keys are SHA-256 outputs, so any bits are uniformly distributed.
	return int(uint(k[0])<<8|uint(k[1])) & (nShards - 1)
}

// expItem orders records by deadline for Expire; ties break on the key so
// every record has exactly one item.
type expItem struct {
	at  int64 // deadline or earlier (see state.expiry), Unix ns, clamped (see nanos)
	key session.Key
}

func expLess(a, b expItem) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return bytes.Compare(a.key[:], b.key[:]) < 0
}

// nanos is t in Unix nanoseconds, clamped to the int64 range so that far
// deadlines (a lifetime of centuries) still sort last instead of wrapping.
// Expire re-checks clamped items against the exact time.
func nanos(t time.Time) int64 {
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	s := t.Unix()
	switch {
	case s > maxSec:
		return math.MaxInt64
	case s < -maxSec:
		return math.MinInt64
	}
	return t.UnixNano()
}

// expiryDegree keeps B-tree nodes around 1 KiB: wide enough for a shallow
// tree at 1M records, narrow enough that inserts shift little memory.
const expiryDegree = 16

// state is everything a snapshot restores. Restore builds a new one and
// swaps it in, so readers see either the old state or the new one.
type state struct {
	shards [nShards]shard
	count  atomic.Int64
	// bytes is the sum of Record.Size over every record held, kept in
	// step by put and remove (and summed by Restore), so the MaxBytes
	// quota costs nothing to check.
	bytes atomic.Int64

	// expiry holds one item per record, at or before the record's
	// deadline. An update that pushes a deadline later leaves the item
	// where it is, because moving it on every request would cost two
	// B-tree operations per Apply; Expire re-files the items it finds
	// early instead, so it costs O(expired + re-filed), and a record is
	// re-filed at most once per Expire however often it was updated.
	// Read and written only by the apply goroutine.
	expiry *btree.BTreeG[expItem]

	ownerMu sync.RWMutex
	// owners lists the keys of each owner's records in no particular
	// order; sessions per owner are few, so a slice beats a set in memory.
	owners map[string][]session.Key

	keys atomic.Pointer[[]SigningKey]

	// proposers is the request deduplication table (see request.go).
	// Read and written only by the apply goroutine.
	proposers map[string]*proposerState
}

func newState() *state {
	st := &state{
		expiry:    btree.NewG(expiryDegree, expLess),
		owners:    make(map[string][]session.Key),
		proposers: make(map[string]*proposerState),
	}
	st.keys.Store(&[]SigningKey{})
	return st
}

// get and lookup are for the apply goroutine only (see shard.mu).
func (st *state) get(k *session.Key) *session.Record { return st.lookup(k).rec }

func (st *state) lookup(k *session.Key) entry { return st.shards[shardOf(k)].m[*k] }

// read is for every other goroutine.
func (st *state) read(k *session.Key) *session.Record {
	s := &st.shards[shardOf(k)]
	s.mu.RLock()
	e := s.m[*k]
	s.mu.RUnlock()
	return e.rec
}

// writable returns s's map ready for a write, cloning it if a snapshot
// holds it. The clone happens outside the lock: concurrent readers only
// read the old map, and the lock is held just to publish the new one.
func (s *shard) writable() recordMap {
	if s.m != nil && !s.shared {
		return s.m
	}
	var m recordMap
	if s.m == nil {
		m = make(recordMap)
	} else {
		m = maps.Clone(s.m)
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
	s.shared = false
	return m
}

// put stores rec under k, where prev is what k held before (a zero entry
// if nothing), and keeps the indexes in step.
func (st *state) put(k *session.Key, prev entry, rec *session.Record) {
	s := &st.shards[shardOf(k)]
	m := s.writable()
	at := nanos(rec.Deadline())
	old := prev.rec
	st.bytes.Add(int64(rec.Size() - sizeOf(old)))
	if old == nil {
		st.count.Add(1)
		st.expiry.ReplaceOrInsert(expItem{at, *k})
	} else if prevAt := prev.expAt; at < prevAt {
		// The item must never be later than the deadline, or Expire would
		// miss the record; later is fine and left alone.
		st.expiry.Delete(expItem{prevAt, *k})
		st.expiry.ReplaceOrInsert(expItem{at, *k})
	} else {
		at = prevAt
	}
	s.mu.Lock()
	m[*k] = entry{rec, at}
	s.mu.Unlock()
	switch {
	case old == nil:
		st.addOwner(rec.Owner, k)
	case old.Owner != rec.Owner:
		st.ownerMu.Lock()
		st.removeOwnerLocked(old.Owner, k)
		st.addOwnerLocked(rec.Owner, k)
		st.ownerMu.Unlock()
	}
}

// remove deletes k, which holds prev. inExpiry is false when the caller
// already took the expiry item out.
func (st *state) remove(k *session.Key, prev entry, inExpiry bool) {
	s := &st.shards[shardOf(k)]
	m := s.writable()
	old, at := prev.rec, prev.expAt
	s.mu.Lock()
	delete(m, *k)
	s.mu.Unlock()
	st.count.Add(-1)
	st.bytes.Add(-int64(old.Size()))
	if inExpiry {
		st.expiry.Delete(expItem{at, *k})
	}
	if old.Owner != "" {
		st.ownerMu.Lock()
		st.removeOwnerLocked(old.Owner, k)
		st.ownerMu.Unlock()
	}
}

// sizeOf is r.Size(), or 0 for no record.
func sizeOf(r *session.Record) int {
	if r == nil {
		return 0
	}
	return r.Size()
}

// held is 1 when e holds a record (live or expired), else 0.
func held(e entry) int64 {
	if e.rec == nil {
		return 0
	}
	return 1
}

// reclaim removes every record expired at now, exactly as an Expire
// command with that time would, and returns how many it removed.
func (st *state) reclaim(now time.Time) int {
	keys, recs := st.expired(now)
	for i := range keys {
		st.remove(&keys[i], recs[i], false)
	}
	return len(keys)
}

func (st *state) addOwner(owner string, k *session.Key) {
	if owner == "" {
		return
	}
	st.ownerMu.Lock()
	st.addOwnerLocked(owner, k)
	st.ownerMu.Unlock()
}

func (st *state) addOwnerLocked(owner string, k *session.Key) {
	if owner != "" {
		st.owners[owner] = append(st.owners[owner], *k)
	}
}

func (st *state) removeOwnerLocked(owner string, k *session.Key) {
	if owner == "" {
		return
	}
	keys := st.owners[owner]
	i := slices.Index(keys, *k)
	if i < 0 {
		return
	}
	if len(keys) == 1 {
		delete(st.owners, owner)
		return
	}
	// Readers copy the slice under the read lock, so it may be edited in
	// place here under the write lock.
	keys[i] = keys[len(keys)-1]
	st.owners[owner] = keys[:len(keys)-1]
}

func (st *state) ownerKeys(owner string) []session.Key {
	st.ownerMu.RLock()
	keys := slices.Clone(st.owners[owner])
	st.ownerMu.RUnlock()
	return keys
}

// expired takes out of the expiry index every item not after now and
// returns the keys and records of those that have expired; items filed
// early (see state.expiry) are re-filed at their record's deadline.
func (st *state) expired(now time.Time) ([]session.Key, []entry) {
	cut := nanos(now)
	var keys []session.Key
	var recs []entry
	var drop, refile []expItem
	st.expiry.Ascend(func(it expItem) bool {
		if it.at > cut {
			return false
		}
		e := st.lookup(&it.key)
		rec := e.rec
		if !rec.Deadline().After(now) {
			drop = append(drop, it)
			keys = append(keys, it.key)
			recs = append(recs, e)
		} else if at := nanos(rec.Deadline()); at != it.at {
			drop = append(drop, it)
			refile = append(refile, expItem{at, it.key})
		}
		// Otherwise the item is exact but clamped together with now at
		// the far end of time, and stays.
		return true
	})
	for _, it := range drop {
		st.expiry.Delete(it)
	}
	for _, it := range refile {
		st.expiry.ReplaceOrInsert(it)
		s := &st.shards[shardOf(&it.key)]
		m := s.writable()
		s.mu.Lock()
		m[it.key] = entry{m[it.key].rec, it.at}
		s.mu.Unlock()
	}
	return keys, recs
}
