package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/session"
)

// read serves a read at the consistency opt asks for: local reads
// straight from the replica; read-your-writes after waiting (bounded) for
// the replica to reach opt.MinIndex, else on the leader; linearizable
// after the leader confirmed its commit index, which this replica then
// reaches.
func (n *Node) read(ctx context.Context, opt session.LoadOptions, payload func(min uint64) []byte, kind byte,
	local func() error, remote func([]byte) error) error {
	// A replica told that a session ID ended at some index (see
	// awaitReplicas) serves nothing older than that index.
	min := n.fenceFloor()
	switch opt.Level {
	case session.Local:
		return local()
	case session.ReadYourWrites:
		min = max(min, opt.MinIndex)
	case session.Linearizable:
		idx, err := n.readIndex(ctx)
		if err != nil {
			return err
		}
		min = max(min, idx)
	}
	if !n.freshEnough() {
		// Cut off from the leader for too long: a logout committed since
		// may not have reached us, so our state is not ours to serve.
		n.metrics.ReadFallbacks.Add(1)
		return n.readOnLeader(ctx, kind, payload(min), remote)
	}
	if n.fsm.AppliedIndex() >= min {
		return local()
	}
	wait := opt.Wait
	if wait <= 0 {
		wait = n.cfg.ReadWait
	}
	n.metrics.ReadWaits.Add(1)
	if n.awaitApplied(ctx, min, wait) {
		return local()
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", session.ErrTimeout, ctx.Err())
	}
	n.metrics.ReadFallbacks.Add(1)
	return n.readOnLeader(ctx, kind, payload(min), remote)
}

// readStall is how long a read waiting for its replica to apply an index
// waits for the replica to apply anything at all. While entries stream in
// (a leader under load) a follower applies every commit round, about a
// millisecond apart here. When the leader goes idle after the write the
// read is waiting for, the follower learns that the write committed only
// from raft's next AppendEntries, which an idle leader sends after
// CommitTimeout to twice that (20-40 ms): a round trip to the leader,
// which applied the write before acknowledging it, is faster.
const readStall = 3 * time.Millisecond

// awaitApplied waits for this replica to apply index, for up to wait, and
// reports whether it did. It gives up early when the replica applies
// nothing for readStall (see there) and does not know index committed, so
// the caller reads on the leader.
func (n *Node) awaitApplied(ctx context.Context, index uint64, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		seen := n.fsm.AppliedIndex()
		step := min(readStall, time.Until(deadline))
		if step <= 0 {
			return false
		}
		wctx, cancel := context.WithTimeout(ctx, step)
		err := n.fsm.WaitApplied(wctx, index)
		cancel()
		if err == nil {
			return true
		}
		if ctx.Err() != nil || n.fsm.AppliedIndex() == seen && !n.knowsCommitted(index) {
			return false
		}
	}
}

// knowsCommitted reports whether this replica's raft knows index is
// committed: then only its own state machine is behind, and waiting
// locally is what a round trip to the leader would also wait for.
func (n *Node) knowsCommitted(index uint64) bool {
	return n.raft != nil && n.raft.CommitIndex() >= index
}

// fenceTTL is how long a read fence holds. A replica normally applies the
// fenced index within milliseconds; the bound keeps a fence from stopping
// reads for ever should the index never come (a log lost with a crashed
// leader).
const fenceTTL = time.Minute

// raiseFence makes this replica serve nothing older than index for the
// next fenceTTL.
func (n *Node) raiseFence(index uint64) {
	atomicMax(&n.fence, index)
	n.fenceUntil.Store(time.Now().Add(fenceTTL).UnixNano())
}

// fenceFloor is the lowest index reads may be served at because of a
// fence, 0 once the fence expired.
func (n *Node) fenceFloor() uint64 {
	if time.Now().UnixNano() > n.fenceUntil.Load() {
		return 0
	}
	return n.fence.Load()
}

// maxFenceAhead bounds how far beyond its own log a replica accepts a
// fence: a committed index is at most a replication batch or two ahead of
// a live follower, and a forged one must not stop every read.
const maxFenceAhead = 1 << 16

// freshEnough reports whether this node may serve read-your-writes reads
// from its replica: it leads (raft steps a leader down once it loses its
// quorum for LeaderLeaseTimeout), or it heard from the leader within
// MaxStale.
func (n *Node) freshEnough() bool {
	if n.raft.State() == raft.Leader {
		return true
	}
	return time.Since(n.raft.LastContact()) <= n.cfg.MaxStale
}

func (n *Node) readOnLeader(ctx context.Context, kind byte, payload []byte, remote func([]byte) error) error {
	var err error
	herr := n.onLeader(ctx, "read on the leader", attempt{
		local: func() (bool, error) {
			// This node leads yet has not applied the index: it is a
			// future index from another cluster's life or we are behind
			// our own log; answer from the leader-side logic.
			status, resp := n.handleForward(ctx, n.self(), kind, payload)
			if status == statusNotLeader {
				return false, nil
			}
			err = n.remoteResult(&frame{kind: status, payload: resp}, remote)
			return true, nil
		},
		remote: func(addr string, changed <-chan struct{}) (bool, error) {
			f, cerr := n.client.call(ctx, addr, kind, payload, changed)
			if cerr != nil || f.kind == statusNotLeader {
				return false, nil // a read may always be tried again
			}
			err = n.remoteResult(f, remote)
			return true, nil
		},
	})
	if herr != nil {
		return herr
	}
	return err
}

func (n *Node) remoteResult(f *frame, remote func([]byte) error) error {
	if f.kind == statusOK {
		return remote(f.payload)
	}
	return frameError(f)
}

// readIndex returns an index such that every write acknowledged before the
// call is at or below it.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	var idx uint64
	err := n.onLeader(ctx, "confirm a linearizable read", attempt{
		local: func() (bool, error) {
			var err error
			idx, err = n.reads.get(ctx)
			return !errors.Is(err, raft.ErrNotLeader), err
		},
		remote: func(addr string, changed <-chan struct{}) (bool, error) {
			f, err := n.client.call(ctx, addr, reqReadIndex, nil, changed)
			switch {
			case err != nil || f.kind == statusNotLeader:
				return false, nil
			case f.kind != statusOK:
				return true, frameError(f)
			}
			d := decoder{b: f.payload}
			idx = d.u64()
			return true, d.err
		},
	})
	return idx, err
}

// awaitReplicas makes every server in the configuration stop serving state
// older than index. A server that hears of it raises its fence to index at
// once (reads below the fence wait or go to the leader) and answers when
// it has applied it. A server that cannot be told (unreachable) makes this
// wait 2×MaxStale in all: by then it has been out of touch with the leader
// for longer than MaxStale and no longer serves reads from its own state.
// The wait ignores the caller's cancellation (it is bounded anyway): a
// client that goes away must not shorten it.
func (n *Node) awaitReplicas(ctx context.Context, index uint64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*n.cfg.MaxStale)
	defer cancel()
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		<-ctx.Done()
		return
	}
	var unconfirmed atomic.Bool
	var wg sync.WaitGroup
	for _, srv := range f.Configuration().Servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if string(srv.ID) == n.cfg.NodeID {
				n.raiseFence(index)
				return
			}
			r, err := n.client.call(ctx, string(srv.Address), reqWaitApplied, binaryAppendU64(nil, index), nil)
			if err != nil || r.kind != statusOK {
				unconfirmed.Store(true)
			}
		}()
	}
	wg.Wait()
	if unconfirmed.Load() {
		<-ctx.Done()
	}
}

func atomicMax(a *atomic.Uint64, v uint64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}
