package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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

// commitBatcher coalesces commits on the leader (group commit): the first
// command goes to raft at once; commands that arrive while an entry is in
// flight queue up and go together in one fsm batch entry when it is done,
// each caller getting its own fsm.Result. Forwarded commits reach it too,
// through applyLocal.
//
// It starts no goroutines: the caller whose command heads a batch applies
// that batch for everyone in it, then hands the next batch to the head of
// that one and returns.
type commitBatcher struct {
	apply func(cmd []byte, timeout time.Duration) (any, error)

	mu       sync.Mutex
	queue    []*proposal
	queued   int // bytes in queue
	inFlight int

	// entries and commands count what went to raft, for benchmarks.
	entries, commands atomic.Uint64
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

func newCommitBatcher(apply func([]byte, time.Duration) (any, error)) *commitBatcher {
	return &commitBatcher{apply: apply}
}

// submit commits cmd and returns its own response and error with the
// meaning raft.Apply gives them: an error from raft concerns the whole
// entry cmd travelled in, so ErrNotLeader still means "never appended". A
// command whose timeout runs out while queued is never appended and fails
// with session.ErrTimeout.
func (b *commitBatcher) submit(cmd []byte, timeout time.Duration) (any, error) {
	p := &proposal{cmd: cmd, deadline: time.Now().Add(timeout), wake: make(chan []*proposal, 1)}
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
// allow: one when nothing is in flight, more while the queue holds a full
// batch. Each goes to the goroutine of its first proposal.
func (b *commitBatcher) dispatchLocked() {
	for len(b.queue) > 0 {
		full := len(b.queue) >= maxBatchCount || b.queued >= maxBatchBytes
		if b.inFlight > 0 && !(full && b.inFlight < maxBatchesInFlight) {
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

// run commits batch, starts whatever queued meanwhile, and wakes the
// batch's other callers.
func (b *commitBatcher) run(batch []*proposal) {
	b.commit(batch)
	b.mu.Lock()
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
	now := time.Now()
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
	b.entries.Add(1)
	b.commands.Add(uint64(len(live)))
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
	b.entries.Add(1)
	b.commands.Add(1)
	p.resp, p.err = b.apply(p.cmd, timeout)
}
