package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/session"
)

// propose commits cmd through the leader: locally when this node leads,
// forwarded otherwise, numbered as one of this node's requests so that the
// state machine applies it at most once (see requestIDs). Attempts that
// provably did not reach a leader, and attempts whose outcome is unknown
// (connection lost or leadership lost after sending), are retried at the
// next leader with the same number for up to ForwardHold: a retry of a
// commit that did apply answers with its first result. Only when no leader
// answers in that time, or the caller's deadline passes, does the caller
// hear "outcome unknown".
func (n *Node) propose(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	start := time.Now()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.CommitTimeout)
		defer cancel()
	}
	seq, floor := n.requests.begin()
	defer n.requests.end(seq)
	r, err := n.proposeOnce(ctx, fsm.EncodeRequest(n.requests.proposer, seq, floor, cmd))
	n.metrics.observeCommit(time.Since(start), err)
	if err == nil {
		atomicMax(&n.lastCommitted, r.Index)
	}
	return r, err
}

// proposeOnce runs a numbered request at the leaders until one answers.
func (n *Node) proposeOnce(ctx context.Context, req []byte) (*fsm.Result, error) {
	var res *fsm.Result
	unknown := false // an attempt may have been applied
	retry := func() (bool, error) {
		unknown = true
		n.metrics.CommitRetries.Add(1)
		return false, nil
	}
	err := n.onLeader(ctx, "commit", attempt{
		local: func() (bool, error) {
			r, err := n.applyLocal(ctx, req)
			switch {
			case errors.Is(err, raft.ErrNotLeader):
				return false, nil // never appended
			case errors.Is(err, errLeadershipLost):
				return retry()
			}
			res = r
			return true, err
		},
		remote: func(addr string, changed <-chan struct{}) (bool, error) {
			n.metrics.Forwarded.Add(1)
			f, err := n.client.call(ctx, addr, reqApply, req, changed)
			switch {
			case errors.Is(err, session.ErrTooLarge):
				return true, err // refused before sending
			case errors.Is(err, errDial):
				return false, nil // never sent
			case err != nil && ctx.Err() != nil:
				return true, fmt.Errorf("%w: commit outcome unknown: %w", session.ErrTimeout, ctx.Err())
			case err != nil, f.kind == statusUnknown:
				return retry()
			case f.kind == statusNotLeader:
				return false, nil
			case f.kind != statusOK:
				return true, frameError(f)
			}
			var r fsm.Result
			if err := r.UnmarshalBinary(f.payload); err != nil {
				return true, fmt.Errorf("cluster: bad reply from leader: %w", err)
			}
			res = &r
			return true, nil
		},
	})
	if err != nil && unknown && errors.Is(err, session.ErrNoLeader) {
		return nil, fmt.Errorf("%w: commit outcome unknown", err)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// errLeadershipLost marks an applyLocal whose entry was appended but whose
// leader lost its leadership before the entry committed: it may or may not
// commit under the next leader.
var errLeadershipLost = errors.New("cluster: leadership lost during commit")

// applyLocal proposes on this node as leader. raft.ErrNotLeader means the
// command was never appended and may be retried elsewhere.
func (n *Node) applyLocal(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	timeout := n.cfg.CommitTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, fmt.Errorf("%w: %w", session.ErrTimeout, context.DeadlineExceeded)
		}
	}
	// Commits queued behind one in flight share the next log entry; an
	// error from raft concerns that whole entry, so the rules below hold
	// for each command in it.
	resp, err := n.batch.submit(cmd, timeout)
	if err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			// Never appended: proposeOnce retries with the next leader.
			return nil, raft.ErrNotLeader
		case errors.Is(err, session.ErrClosed):
			return nil, err
		case errors.Is(err, raft.ErrLeadershipLost):
			return nil, fmt.Errorf("%w: %w: commit outcome unknown: %w", session.ErrNoLeader, errLeadershipLost, err)
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, fmt.Errorf("%w: %w", session.ErrClosed, err)
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return nil, fmt.Errorf("%w: commit outcome unknown: %w", session.ErrTimeout, err)
		}
		return nil, fmt.Errorf("cluster: apply: %w", err)
	}
	r, ok := resp.(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("cluster: unexpected apply response %T", resp)
	}
	return r, nil
}

func frameError(f *frame) error {
	switch f.kind {
	case statusTimeout:
		return fmt.Errorf("%w: outcome unknown: the leader timed out", session.ErrTimeout)
	case statusUnknown:
		return fmt.Errorf("%w: outcome unknown: leadership lost during commit", session.ErrNoLeader)
	case statusNotFound:
		return session.ErrNotFound
	case statusNotLeader:
		return fmt.Errorf("%w: the node asked is not the leader", session.ErrNoLeader)
	}
	return fmt.Errorf("cluster: leader: %s", f.payload)
}
