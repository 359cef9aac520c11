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
// forwarded otherwise. Requests that provably did not reach a leader are
// retried across elections for up to ForwardHold; a request whose fate is
// unknown (connection lost or leadership lost after sending) is not
// retried, since an increment must never apply twice.
func (n *Node) propose(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	start := time.Now()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.CommitTimeout)
		defer cancel()
	}
	r, err := n.proposeOnce(ctx, cmd)
	n.metrics.observeCommit(time.Since(start), err)
	if err == nil {
		atomicMax(&n.lastCommitted, r.Index)
	}
	return r, err
}

func (n *Node) proposeOnce(ctx context.Context, cmd []byte) (*fsm.Result, error) {
	var res *fsm.Result
	err := n.onLeader(ctx, "commit", attempt{
		local: func() (bool, error) {
			r, err := n.applyLocal(ctx, cmd)
			res = r
			return !errors.Is(err, raft.ErrNotLeader), err
		},
		remote: func(addr string, changed <-chan struct{}) (bool, error) {
			n.metrics.Forwarded.Add(1)
			f, err := n.client.call(ctx, addr, reqApply, cmd, changed)
			switch {
			case errors.Is(err, session.ErrTooLarge):
				return true, err // refused before sending
			case errors.Is(err, errDial):
				return false, nil // never sent
			case err != nil && ctx.Err() != nil:
				return true, fmt.Errorf("%w: commit outcome unknown: %w", session.ErrTimeout, ctx.Err())
			case err != nil:
				return true, fmt.Errorf("%w: commit outcome unknown: %w", session.ErrNoLeader, err)
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
	if err != nil {
		return nil, err
	}
	return res, nil
}

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
			return nil, fmt.Errorf("%w: commit outcome unknown: %w", session.ErrNoLeader, err)
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
