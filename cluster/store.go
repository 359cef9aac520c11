package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/session"
)

// Store is the replicated session store of one node. Reads are served from
// the local replica (waiting for it to catch up as the requested level
// needs); writes go through the raft leader, forwarded by followers.
type Store struct{ n *Node }

var (
	_ session.Store      = (*Store)(nil)
	_ session.OwnerStore = (*Store)(nil)
	_ session.CountStore = (*Store)(nil)
)

// Load implements [session.Store].
func (s *Store) Load(ctx context.Context, id string, opt session.LoadOptions) (*session.Record, error) {
	k := session.KeyOf(id)
	var rec *session.Record
	err := s.n.read(ctx, opt, func(min uint64) []byte { return binaryAppendU64(append([]byte(nil), k[:]...), min) }, reqGet,
		func() error {
			r, ok := s.n.fsm.Get(k, time.Now())
			if !ok {
				return session.ErrNotFound
			}
			rec = r
			return nil
		},
		func(b []byte) error {
			r, err := decodeRecord(&decoder{b: b})
			rec = r
			return err
		})
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// ListOwner implements [session.OwnerStore].
func (s *Store) ListOwner(ctx context.Context, owner string, opt session.LoadOptions) ([]session.Info, error) {
	var infos []session.Info
	err := s.n.read(ctx, opt, func(min uint64) []byte {
		b := binaryAppendU64(nil, min)
		return append(b, owner...)
	}, reqListOwner,
		func() error { infos = s.n.fsm.ListOwner(owner, time.Now()); return nil },
		func(b []byte) error {
			var err error
			infos, err = decodeInfos(&decoder{b: b})
			return err
		})
	return infos, err
}

// Count implements [session.CountStore]: the number of sessions in the
// local replica once it has applied every write committed through this
// node (bounded by ReadWait), including expired ones not yet removed.
func (s *Store) Count(ctx context.Context) (int, error) {
	wctx, cancel := context.WithTimeout(ctx, s.n.cfg.ReadWait)
	defer cancel()
	if err := s.n.fsm.WaitApplied(wctx, s.n.lastCommitted.Load()); err != nil && ctx.Err() != nil {
		return 0, fmt.Errorf("%w: %w", session.ErrTimeout, ctx.Err())
	}
	return s.n.fsm.Len(), nil
}

func atomicMax(a *atomic.Uint64, v uint64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// Commit implements [session.Store]. It returns once the change is
// committed and applied on the leader; the local replica may apply it a
// moment later (a read-your-writes Load with the returned index waits).
func (s *Store) Commit(ctx context.Context, c *session.Change) (session.Result, error) {
	cmd, err := fsm.EncodeChange(c)
	if err != nil {
		return session.Result{}, err
	}
	r, err := s.n.propose(ctx, cmd)
	if err != nil {
		return session.Result{}, err
	}
	if r.Err != nil {
		return session.Result{Index: r.Index}, r.Err
	}
	if c.Destroy || c.RenameTo != "" {
		// The old ID must stop working everywhere before the client hears
		// that it did.
		s.n.awaitReplicas(ctx, r.Index)
	}
	return session.Result{Index: r.Index, Values: r.Values}, nil
}

// DestroyOwner implements [session.OwnerStore].
func (s *Store) DestroyOwner(ctx context.Context, owner, except string) (int, uint64, error) {
	r, err := s.n.propose(ctx, fsm.EncodeDestroyOwner(owner, except))
	if err != nil {
		return 0, 0, err
	}
	if r.Err == nil {
		s.n.awaitReplicas(ctx, r.Index)
	}
	return r.Destroyed, r.Index, r.Err
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
				atomicMax(&n.fence, index)
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

// AddSigningKey replicates a new cookie-signing key, which becomes primary.
func (s *Store) AddSigningKey(ctx context.Context, id string, secret []byte) (uint64, error) {
	r, err := s.n.propose(ctx, fsm.EncodeAddSigningKey(id, secret))
	if err != nil {
		return 0, err
	}
	return r.Index, r.Err
}

// RetireSigningKey removes a non-primary signing key.
func (s *Store) RetireSigningKey(ctx context.Context, id string) (uint64, error) {
	r, err := s.n.propose(ctx, fsm.EncodeRetireSigningKey(id))
	if err != nil {
		return 0, err
	}
	return r.Index, r.Err
}

// SigningKeys returns the replicated signing keys, primary first.
func (s *Store) SigningKeys() []fsm.SigningKey { return s.n.fsm.SigningKeys() }

func binaryAppendU64(b []byte, v uint64) []byte {
	e := encoder{b: b}
	e.u64(v)
	return e.b
}

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
	hold := time.NewTimer(n.cfg.ForwardHold)
	defer hold.Stop()
	for {
		changed := n.leaderChanged()
		addr, id := n.raft.LeaderWithID()
		switch {
		case id != "" && string(id) == n.cfg.NodeID:
			r, err := n.applyLocal(ctx, cmd)
			if !errors.Is(err, raft.ErrNotLeader) {
				return r, err
			}
		case addr != "":
			n.metrics.Forwarded.Add(1)
			f, err := n.client.call(ctx, string(addr), reqApply, cmd, changed)
			if err == nil {
				if f.kind == statusOK {
					var r fsm.Result
					if err := r.UnmarshalBinary(f.payload); err != nil {
						return nil, fmt.Errorf("cluster: bad reply from leader: %w", err)
					}
					return &r, nil
				}
				if f.kind != statusNotLeader {
					return nil, frameError(f)
				}
			} else if !errors.Is(err, errDial) {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("%w: commit outcome unknown: %w", session.ErrTimeout, ctx.Err())
				}
				return nil, fmt.Errorf("%w: commit outcome unknown: %w", session.ErrNoLeader, err)
			}
		}
		// No usable leader right now: wait for the next election result,
		// bounded by the hold time and the caller's deadline.
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		case <-hold.C:
			return nil, fmt.Errorf("%w: none elected within %v", session.ErrNoLeader, n.cfg.ForwardHold)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: no leader: %w", session.ErrTimeout, ctx.Err())
		case <-n.ctx.Done():
			return nil, session.ErrClosed
		}
	}
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

// read serves a read at the consistency opt asks for: local reads
// straight from the replica; read-your-writes after waiting (bounded) for
// the replica to reach opt.MinIndex, else on the leader; linearizable
// after the leader confirmed its commit index, which this replica then
// reaches.
func (n *Node) read(ctx context.Context, opt session.LoadOptions, payload func(min uint64) []byte, kind byte,
	local func() error, remote func([]byte) error) error {
	// A replica told that a session ID ended at some index (see
	// awaitReplicas) serves nothing older than that index.
	min := n.fence.Load()
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
	wctx, cancel := context.WithTimeout(ctx, wait)
	err := n.fsm.WaitApplied(wctx, min)
	cancel()
	if err == nil {
		return local()
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", session.ErrTimeout, ctx.Err())
	}
	n.metrics.ReadFallbacks.Add(1)
	return n.readOnLeader(ctx, kind, payload(min), remote)
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
	hold := time.NewTimer(n.cfg.ForwardHold)
	defer hold.Stop()
	for {
		changed := n.leaderChanged()
		addr, id := n.raft.LeaderWithID()
		if string(id) == n.cfg.NodeID {
			// This node leads yet has not applied the index: it is a
			// future index from another cluster's life or we are behind
			// our own log; answer from the leader-side logic.
			status, resp := n.handleForward(ctx, kind, payload)
			if status != statusNotLeader {
				return n.remoteResult(&frame{kind: status, payload: resp}, remote)
			}
		} else if addr != "" {
			f, err := n.client.call(ctx, string(addr), kind, payload, changed)
			if err == nil && f.kind != statusNotLeader {
				return n.remoteResult(f, remote)
			}
		}
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		case <-hold.C:
			return fmt.Errorf("%w: cannot read on the leader", session.ErrNoLeader)
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", session.ErrTimeout, ctx.Err())
		}
	}
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
	hold := time.NewTimer(n.cfg.ForwardHold)
	defer hold.Stop()
	for {
		changed := n.leaderChanged()
		addr, id := n.raft.LeaderWithID()
		if string(id) == n.cfg.NodeID {
			idx, err := n.reads.get(ctx)
			if err == nil {
				return idx, nil
			}
			if !errors.Is(err, raft.ErrNotLeader) {
				return 0, err
			}
		} else if addr != "" {
			f, err := n.client.call(ctx, string(addr), reqReadIndex, nil, changed)
			if err == nil && f.kind == statusOK {
				d := decoder{b: f.payload}
				idx := d.u64()
				return idx, d.err
			}
			if err == nil && f.kind != statusNotLeader {
				return 0, frameError(f)
			}
		}
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		case <-hold.C:
			return 0, fmt.Errorf("%w: no leader to confirm a linearizable read", session.ErrNoLeader)
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %w", session.ErrTimeout, ctx.Err())
		}
	}
}

// handleForward answers a node-to-node request.
func (n *Node) handleForward(ctx context.Context, kind byte, p []byte) (byte, []byte) {
	if !n.serving.Load() {
		// Start has not finished (raft may still be restoring a snapshot).
		return statusNotLeader, nil
	}
	isLeader := n.raft.State() == raft.Leader
	notLeader := func() (byte, []byte) {
		addr, _ := n.raft.LeaderWithID()
		return statusNotLeader, []byte(addr)
	}
	switch kind {
	case reqStats:
		b, _ := json.Marshal(n.localStats())
		return statusOK, b
	case reqApply:
		if !isLeader {
			return notLeader()
		}
		// Only well-formed commands reach the log, whoever sent them.
		if _, err := fsm.Decode(p); err != nil {
			return statusError, []byte(err.Error())
		}
		r, err := n.applyLocal(ctx, p)
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, session.ErrClosed):
			// Never appended: the sender may retry elsewhere.
			return notLeader()
		case errors.Is(err, session.ErrTimeout):
			return statusTimeout, nil
		case err != nil:
			return statusUnknown, nil
		}
		b, err := r.MarshalBinary()
		if err != nil {
			return statusError, []byte(err.Error())
		}
		return statusOK, b
	case reqReadIndex:
		if !isLeader {
			return notLeader()
		}
		idx, err := n.reads.get(ctx)
		if errors.Is(err, raft.ErrNotLeader) {
			return notLeader()
		} else if err != nil {
			return statusTimeout, nil
		}
		return statusOK, binaryAppendU64(nil, idx)
	case reqGet, reqListOwner:
		if !isLeader {
			return notLeader()
		}
		d := decoder{b: p}
		var key session.Key
		if kind == reqGet {
			if len(p) < len(key) {
				return statusError, []byte("short request")
			}
			copy(key[:], p)
			d.b = p[len(key):]
		}
		min := d.u64()
		if d.err != nil {
			return statusError, []byte("short request")
		}
		if min > n.raft.LastIndex() {
			// The client's token names a write this cluster never made
			// (its state was lost or it came from another cluster): its
			// session cannot be here.
			return statusNotFound, nil
		}
		if err := n.fsm.WaitApplied(ctx, min); err != nil {
			return statusTimeout, nil
		}
		var e encoder
		if kind == reqGet {
			r, ok := n.fsm.Get(key, time.Now())
			if !ok {
				return statusNotFound, nil
			}
			encodeRecord(&e, r)
		} else {
			encodeInfos(&e, n.fsm.ListOwner(string(d.b), time.Now()))
		}
		return statusOK, e.b
	case reqWaitApplied:
		d := decoder{b: p}
		idx := d.u64()
		if d.err != nil {
			return statusError, []byte("short request")
		}
		if idx > n.raft.LastIndex()+maxFenceAhead {
			return statusError, []byte("index far beyond this log")
		}
		atomicMax(&n.fence, idx)
		wctx, cancel := context.WithTimeout(ctx, 2*n.cfg.MaxStale)
		defer cancel()
		if err := n.fsm.WaitApplied(wctx, idx); err != nil {
			return statusTimeout, nil
		}
		return statusOK, nil
	case reqRemoveServer:
		if !isLeader {
			return notLeader()
		}
		if err := n.raft.RemoveServer(raft.ServerID(p), 0, n.cfg.CommitTimeout).Error(); err != nil {
			return statusError, []byte(err.Error())
		}
		return statusOK, nil
	}
	return statusError, []byte("unknown request")
}
