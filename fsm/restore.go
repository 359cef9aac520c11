package fsm

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/raftsession/raftsession/session"
)

var errDuplicateKey = errors.New("duplicate record key")

// shardHint is how many records Restore sizes a shard's map for when it
// puts the first one in it: the snapshot's count spread over the shards,
// with room to grow. It is capped, because a forged count must fail at the
// first missing record, not at allocation; the cap still holds 4M
// sessions without a map growing during the restore.
func shardHint(count uint64) int {
	return int(min(count/nShards+count/(4*nShards), 1<<12))
}

// insertRestored puts a record read from a snapshot into its shard and
// returns its expiry item, or false if the key is already there. Restore
// calls it from several goroutines before the state is published, so the
// shard's lock is the only synchronisation needed.
func (st *state) insertRestored(k *session.Key, rec *session.Record, hint int) (expItem, bool) {
	s := &st.shards[shardOf(k)]
	at := nanos(rec.Deadline())
	s.mu.Lock()
	if s.m == nil {
		s.m = make(recordMap, hint)
	}
	_, dup := s.m[*k]
	if !dup {
		s.m[*k] = entry{rec, at}
	}
	s.mu.Unlock()
	return expItem{at, *k}, !dup
}

// A restore hands records to its decoding goroutines in chunks of about
// restoreChunkBytes, at most restoreChunkRecords records each; a few
// chunks in flight are all the snapshot held in memory at once besides
// the state being built.
const (
	restoreChunkBytes   = 1 << 20
	restoreChunkRecords = 4096
)

type restoreChunk struct {
	data []byte // key and record encoding, record after record
	ends []int  // where each record ends in data
}

// restoreWorker is one decoding goroutine's share of the restored state,
// merged once every chunk is decoded.
type restoreWorker struct {
	items  []expItem
	owners []ownedKey
	size   int64
	err    error
}

type ownedKey struct {
	owner string
	key   session.Key
}

// recordBlobs reads count records of a version 3 snapshot: this goroutine
// reads and checksums the stream and cuts it into chunks, and one
// goroutine per core decodes chunks and files their records into st's
// shards. It returns the expiry items, which the caller indexes once the
// checksum has proved the snapshot intact. It stops at the first error,
// left in r.err.
func (r *snapReader) recordBlobs(st *state, count uint64) []expItem {
	nworkers := min(runtime.GOMAXPROCS(0), 8)
	hint := shardHint(count)
	work := make(chan *restoreChunk)
	free := make(chan *restoreChunk, 2*nworkers)
	for range cap(free) {
		free <- &restoreChunk{data: make([]byte, 0, restoreChunkBytes+64<<10)}
	}
	workers := make([]restoreWorker, nworkers)
	var failed atomic.Bool
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.items = make([]expItem, 0, min(count/uint64(nworkers)+1, 1<<16))
		wg.Go(func() {
			for c := range work {
				if w.err == nil {
					w.decode(st, c, hint)
					if w.err != nil {
						failed.Store(true)
					}
				}
				free <- c
			}
		})
	}
	c := <-free
	c.data, c.ends = c.data[:0], c.ends[:0]
	for i := uint64(0); i < count && r.err == nil && !failed.Load(); i++ {
		// The key is copied before the next read moves the buffer.
		c.data = append(c.data, r.fixed(len(session.Key{}))...)
		c.data = append(c.data, r.field()...)
		c.ends = append(c.ends, len(c.data))
		if len(c.data) >= restoreChunkBytes || len(c.ends) == restoreChunkRecords {
			work <- c
			c = <-free
			c.data, c.ends = c.data[:0], c.ends[:0]
		}
	}
	if r.err == nil && len(c.ends) > 0 {
		work <- c
	}
	close(work)
	wg.Wait()

	var items []expItem
	var size int64
	for i := range workers {
		w := &workers[i]
		if w.err != nil {
			r.fail(w.err)
		}
		if items == nil {
			items = w.items
		} else {
			items = append(items, w.items...)
		}
		size += w.size
		for _, o := range w.owners {
			st.addOwnerLocked(o.owner, &o.key)
		}
	}
	st.bytes.Store(size)
	return items
}

// decode files the records of c into st.
func (w *restoreWorker) decode(st *state, c *restoreChunk, hint int) {
	start := 0
	for _, end := range c.ends {
		var k session.Key
		if end-start < len(k) {
			w.err = errTruncated
			return
		}
		copy(k[:], c.data[start:end])
		rec, err := DecodeRecord(c.data[start+len(k) : end])
		start = end
		if err != nil {
			w.err = err
			return
		}
		it, ok := st.insertRestored(&k, rec, hint)
		if !ok {
			w.err = errDuplicateKey
			return
		}
		w.items = append(w.items, it)
		w.size += int64(rec.Size())
		if rec.Owner != "" {
			w.owners = append(w.owners, ownedKey{rec.Owner, k})
		}
	}
}
