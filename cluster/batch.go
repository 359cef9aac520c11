package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/session"
)

// Bounds of one coalesced log entry. The byte bound keeps a large change
// from holding small ones back: a command that would push a batch past it
// waits for the next entry, and a queue past either bound is committed at
// once even while another entry is in flight. The count bound keeps one
// entry's apply short for the reads waiting behind it.
const (
	maxBatchBytes = 256 << 10
	maxBatchCount = 128
	// maxBatchesInFlight caps the entries the batcher has in raft at once;
	// raft pipelines them to the followers.
	maxBatchesInFlight = 4
)

// maxHoldBackoff caps how many holds in a row are skipped after holds
// kept missing (see commitBatcher.holdLocked).
const maxHoldBackoff = 64

// commitBatcher coalesces commits on the leader (group commit): the first
// command goes to raft at once; commands that arrive while an entry is in
// flight queue up and go together in one fsm batch entry when it is done,
// each caller getting its own fsm.Result. Forwarded commits reach it too,
// through applyLocal.
//
// When an entry is done, the queue may hold fewer commands than the entry
// saw (those it carried and those that queued meanwhile): the callers it
// just answered are often about to commit again. The queue is then held
// until it has as many, but no longer than that entry's commit time
// (capped at wait) after the entry was done. Without it, a few clients
// that each commit again soon after their answer split into two groups,
// one in flight while the other queues, and every entry carries half of
// them: twice the entries, each with its fsyncs, for the same commands. A
// hold that runs out before half of the commands it waited for came is a
// miss, and misses in a row skip 1, 2, 4 ... up to maxHoldBackoff holds.
//
// Its only goroutine is a hold's timer, which starts the held queue: the
// caller whose command heads a batch applies that batch for everyone in
// it, then hands the next batch to the head of that one and returns.
type commitBatcher struct {
	apply func(cmd []byte, timeout time.Duration) (any, error)
	// wait bounds a hold; 0 holds nothing back.
	wait time.Duration
	// clock and afterFunc are time.Now and time.AfterFunc's Stop (tests
	// replace them).
	clock     func() time.Time
	afterFunc func(time.Duration, func()) (stop func() bool)

	mu       sync.Mutex
	queue    []*proposal
	queued   int // bytes in queue
	inFlight int

	// expect is how many commands the last entry saw: those it carried and
	// those that queued while it was in flight; 0 once that entry is too
	// long ago to predict the next. lastCommit is how long it took, and
	// lastDone when it was done.
	expect     int
	lastCommit time.Duration
	lastDone   time.Time
	// A held queue has nothing in flight. hold stops the hold's timer; nil
	// when the queue is not held. holdGen tells a stale timer from the
	// current one; holdFrom is the queue's length when the hold began and
	// holdEnd when it runs out.
	hold     func() bool
	holdGen  uint64
	holdFrom int
	holdEnd  time.Time
	// skip counts the coming holds to skip; backoff is what the next miss
	// sets it to (doubled each time, reset by a hold that pays).
	skip, backoff int

	// m counts entries, their commands, holds and misses.
	m *Metrics
}

// proposal is one caller's command waiting in a commitBatcher.
type proposal struct {
	cmd      []byte
	deadline time.Time
	// wake receives the batch this proposal heads, which its caller must
	// apply, or nil once resp and err are set. It receives exactly once.
	wake chan []*proposal
	resp any
	err  error
}

func newCommitBatcher(apply func([]byte, time.Duration) (any, error), wait time.Duration, m *Metrics) *commitBatcher {
	return &commitBatcher{apply: apply, wait: max(wait, 0), m: m, clock: time.Now,
		afterFunc: func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }}
}

// submit commits cmd and returns its own response and error with the
// meaning raft.Apply gives them: an error from raft concerns the whole
// entry cmd travelled in, so ErrNotLeader still means "never appended". A
// command whose timeout runs out while queued is never appended and fails
// with session.ErrTimeout.
func (b *commitBatcher) submit(cmd []byte, timeout time.Duration) (any, error) {
	p := &proposal{cmd: cmd, deadline: b.clock().Add(timeout), wake: make(chan []*proposal, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	b.queued += len(cmd)
	b.dispatchLocked()
	b.mu.Unlock()
	if batch := <-p.wake; batch != nil {
		b.run(batch)
	}
	return p.resp, p.err
}

// dispatchLocked starts as many batches as the queue and the bounds
// allow: one when nothing is in flight (unless the queue is held), more
// while the queue holds a full batch. Each goes to the goroutine of its
// first proposal.
func (b *commitBatcher) dispatchLocked() {
	for len(b.queue) > 0 {
		full := len(b.queue) >= maxBatchCount || b.queued >= maxBatchBytes
		if b.inFlight > 0 && !(full && b.inFlight < maxBatchesInFlight) {
			return
		}
		if b.holdLocked(full) {
			return
		}
		n, size := 0, 0
		for n < len(b.queue) && n < maxBatchCount {
			c := len(b.queue[n].cmd)
			if n > 0 && size+c > maxBatchBytes {
				break
			}
			size += c
			n++
		}
		batch := make([]*proposal, n)
		copy(batch, b.queue)
		b.queue = append(b.queue[:0], b.queue[n:]...)
		b.queued -= size
		b.inFlight++
		batch[0].wake <- batch
	}
}

// holdLocked says whether the queue waits for more commands before its
// entry goes to raft; nothing is in flight unless the queue is full. It
// ends a hold when the queue has what it waited for (or is full), or when
// the command that just came could not wait; it starts one when the queue
// is short of what the last entry saw, that entry was done less than its
// commit time (capped at b.wait) ago, and no queued command's deadline is
// near.
func (b *commitBatcher) holdLocked(full bool) bool {
	if b.hold != nil {
		last := b.queue[len(b.queue)-1]
		switch {
		case full || len(b.queue) >= b.expect:
			b.endHoldLocked()
			b.backoff = 0 // the hold paid
			return false
		case b.soon(last, b.holdEnd):
			b.endHoldLocked()
			return false
		}
		return true
	}
	if full || len(b.queue) >= b.expect || b.wait <= 0 {
		return false
	}
	now := b.clock()
	end := b.lastDone.Add(min(b.lastCommit, b.wait))
	if !now.Before(end) {
		b.expect = 0 // too long ago to predict this queue
		return false
	}
	if slices.ContainsFunc(b.queue, func(p *proposal) bool { return b.soon(p, end) }) {
		return false
	}
	if b.skip > 0 {
		b.skip--
		return false
	}
	b.m.Holds.Add(1)
	b.holdGen++
	b.holdFrom, b.holdEnd = len(b.queue), end
	gen := b.holdGen
	b.hold = b.afterFunc(end.Sub(now), func() { b.holdRanOut(gen) })
	return true
}

// soon says whether p's deadline is too near for a hold that ends at
// end: held, it might not commit in time.
func (b *commitBatcher) soon(p *proposal, end time.Time) bool {
	return p.deadline.Before(end.Add(b.lastCommit))
}

// holdRanOut starts a held queue whose hold gen ran out. A hold that
// gained less than half the commands it waited for missed: the last
// entry's count no longer predicts the next.
func (b *commitBatcher) holdRanOut(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hold == nil || gen != b.holdGen {
		return // ended by a later command
	}
	b.endHoldLocked()
	gained, short := len(b.queue)-b.holdFrom, b.expect-b.holdFrom
	b.expect = len(b.queue) // what came is what goes: no second hold
	if 2*gained < short {
		b.m.HoldMisses.Add(1)
		b.backoff = min(max(2*b.backoff, 1), maxHoldBackoff)
		b.skip = b.backoff
	} else {
		b.backoff = 0
	}
	b.dispatchLocked()
}

func (b *commitBatcher) endHoldLocked() {
	b.hold()
	b.hold = nil
	b.holdGen++
}

// run commits batch, starts whatever queued meanwhile, and wakes the
// batch's other callers.
func (b *commitBatcher) run(batch []*proposal) {
	start := b.clock()
	b.commit(batch)
	done := b.clock()
	b.mu.Lock()
	b.lastCommit, b.lastDone = done.Sub(start), done
	b.expect = len(batch) + len(b.queue)
	b.inFlight--
	b.dispatchLocked()
	b.mu.Unlock()
	for _, p := range batch[1:] {
		p.wake <- nil
	}
}

// commit applies batch's live proposals as one entry (a lone command as
// itself) and gives each its response or error.
func (b *commitBatcher) commit(batch []*proposal) {
	now := b.clock()
	live := make([]*proposal, 0, len(batch))
	var timeout time.Duration
	for _, p := range batch {
		left := p.deadline.Sub(now)
		if left <= 0 {
			p.err = fmt.Errorf("%w: %w", session.ErrTimeout, context.DeadlineExceeded)
			continue
		}
		if len(live) == 0 || left < timeout {
			timeout = left
		}
		live = append(live, p)
	}
	if len(live) == 1 {
		b.applyOne(live[0], timeout)
		return
	}
	if len(live) == 0 {
		return
	}
	cmds := make([][]byte, len(live))
	for i, p := range live {
		cmds[i] = p.cmd
	}
	data, err := fsm.EncodeBatch(cmds)
	if err != nil {
		// A command the batch refuses (malformed, or itself a batch) goes
		// to raft alone, as it would without batching, so the FSM rejects
		// just that one.
		for _, p := range live {
			b.applyOne(p, timeout)
		}
		return
	}
	b.m.Entries.Add(1)
	b.m.EntryCommands.Add(uint64(len(live)))
	resp, err := b.apply(data, timeout)
	r, ok := resp.(*fsm.Result)
	for i, p := range live {
		switch {
		case err != nil:
			p.err = err
		case !ok:
			p.err = fmt.Errorf("cluster: unexpected apply response %T", resp)
		case r.Err != nil:
			p.resp = &fsm.Result{Index: r.Index, Err: r.Err}
		case len(r.Batch) != len(live):
			p.err = fmt.Errorf("cluster: a batch of %d commands got %d results", len(live), len(r.Batch))
		default:
			p.resp = &r.Batch[i]
		}
	}
}

func (b *commitBatcher) applyOne(p *proposal, timeout time.Duration) {
	b.m.Entries.Add(1)
	b.m.EntryCommands.Add(1)
	p.resp, p.err = b.apply(p.cmd, timeout)
}
