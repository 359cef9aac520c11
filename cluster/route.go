package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/raftsession/raftsession/session"
)

// attempt is one try of a request at the current leader. It reports done
// when the request is finished, with its error (nil on success); not done
// means the request provably did not take effect (no leader known, the
// node asked was not the leader, the request was never sent), so it may
// be tried again at the next leader.
//
// This is the one place that encodes the unknown-outcome rule: an attempt
// whose request may have reached a leader's log (a connection lost after
// sending, leadership lost after appending, a timeout) must report done
// with an error wrapping session.ErrNoLeader or session.ErrTimeout, never
// not-done, because trying again could apply a change twice.
type attempt struct {
	// local runs when this node leads.
	local func() (done bool, err error)
	// remote runs with the leader's raft address when another node leads.
	// changed closes at the next leader change: a request to a leader that
	// hangs stops waiting then.
	remote func(addr string, changed <-chan struct{}) (done bool, err error)
}

// onLeader runs a until it is done, at every leader in turn: once per
// leader change (polled every 50ms as well), for at most ForwardHold, and
// not past ctx. What it failed with is named by what, for the errors.
func (n *Node) onLeader(ctx context.Context, what string, a attempt) error {
	hold := time.NewTimer(n.cfg.ForwardHold)
	defer hold.Stop()
	for {
		changed := n.leaderChanged()
		addr, id := n.raft.LeaderWithID()
		var done bool
		var err error
		switch {
		case id != "" && string(id) == n.cfg.NodeID:
			done, err = a.local()
		case addr != "":
			done, err = a.remote(string(addr), changed)
		}
		if done {
			return err
		}
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		case <-hold.C:
			return fmt.Errorf("%w: %s: no leader answered within %v", session.ErrNoLeader, what, n.cfg.ForwardHold)
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %w", session.ErrTimeout, what, ctx.Err())
		case <-n.ctx.Done():
			return session.ErrClosed
		}
	}
}
