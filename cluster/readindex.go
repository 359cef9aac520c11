package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/session"
)

// readIndexer batches leadership confirmation for linearizable reads: a
// read that arrives while a VerifyLeader round is in flight joins the next
// round, and one round serves every read waiting for it. Joining the round
// already in flight would be wrong: it may have captured the commit index
// before the read's own predecessor writes were acknowledged.
type readIndexer struct {
	n *Node

	mu      sync.Mutex
	running bool
	next    *readRound // the round new readers join
	closed  bool
}

type readRound struct {
	done    chan struct{}
	waiters int // guarded by readIndexer.mu until the round starts
	index   uint64
	err     error
}

func newReadIndexer(n *Node) *readIndexer {
	return &readIndexer{n: n, next: &readRound{done: make(chan struct{})}}
}

// get returns the leader's commit index after confirming leadership with a
// quorum. It fails with raft.ErrNotLeader on a follower, or on a leader
// that has not yet applied the entries of earlier terms.
func (ri *readIndexer) get(ctx context.Context) (uint64, error) {
	ri.mu.Lock()
	if ri.closed {
		ri.mu.Unlock()
		return 0, session.ErrClosed
	}
	round := ri.next
	round.waiters++
	if !ri.running {
		ri.startLocked()
	}
	ri.mu.Unlock()
	select {
	case <-round.done:
		return round.index, round.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: confirming leadership: %w", session.ErrTimeout, ctx.Err())
	}
}

func (ri *readIndexer) startLocked() {
	round := ri.next
	ri.next = &readRound{done: make(chan struct{})}
	ri.running = true
	ri.n.wg.Add(1)
	go func() {
		defer ri.n.wg.Done()
		round.index, round.err = ri.verify()
		close(round.done)
		ri.mu.Lock()
		ri.running = false
		// Readers arrived during the round: serve them with a fresh one.
		if !ri.closed && ri.next.waiters > 0 {
			ri.startLocked()
		}
		ri.mu.Unlock()
	}()
}

func (ri *readIndexer) verify() (uint64, error) {
	n := ri.n
	if n.raft.State() != raft.Leader || n.readyTerm.Load() != n.raft.CurrentTerm() {
		return 0, raft.ErrNotLeader
	}
	if !n.enterRaft() {
		return 0, session.ErrClosed
	}
	defer n.leaveRaft()
	idx := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, raft.ErrNotLeader
		}
		return 0, err
	}
	return idx, nil
}

func (ri *readIndexer) close() {
	ri.mu.Lock()
	ri.closed = true
	ri.mu.Unlock()
}
