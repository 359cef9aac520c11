package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/session"
)

// statusForbidden answers a request the sender may not make.
const statusForbidden byte = 6

// Who may send what on the node-to-node port. Every rule names the
// authenticated identity of the sender (the Common Name of its TLS
// certificate, which chains to the cluster's CA); without TLS (a loopback
// cluster with no key, or Config.Insecure) nobody is authenticated and
// the rules that need an identity cannot hold.
type authRule int

const (
	// fromMember: a node of this cluster, that is a server of the raft
	// configuration or a live gossip member (gossip is encrypted with a
	// key derived from the same cluster key).
	fromMember authRule = iota
	// fromLeader: the node this one follows as leader right now.
	fromLeader
	// fromSelfNamed: a member, and the request names the sender itself
	// (a server may remove only itself from the configuration).
	fromSelfNamed
)

// forwardHandler answers one kind of node-to-node request.
type forwardHandler struct {
	name   string
	rule   authRule
	handle func(n *Node, ctx context.Context, p []byte) (byte, []byte)
}

var forwardHandlers = map[byte]forwardHandler{
	reqApply:        {"apply", fromMember, (*Node).handleApply},
	reqReadIndex:    {"read-index", fromMember, (*Node).handleReadIndex},
	reqGet:          {"get", fromMember, (*Node).handleGet},
	reqListOwner:    {"list-owner", fromMember, (*Node).handleListOwner},
	reqStats:        {"stats", fromMember, (*Node).handleStats},
	reqRemoveServer: {"remove-server", fromSelfNamed, (*Node).handleRemoveServer},
	reqWaitApplied:  {"wait-applied", fromLeader, (*Node).handleWaitApplied},
}

// self is this node as the sender of a request it answers itself.
func (n *Node) self() peer { return peer{id: n.cfg.NodeID, authenticated: true} }

// handleForward authorizes and answers a node-to-node request.
func (n *Node) handleForward(ctx context.Context, from peer, kind byte, p []byte) (byte, []byte) {
	h, ok := forwardHandlers[kind]
	if !ok {
		return n.refuse(from, fmt.Sprintf("request kind %d", kind), "unknown request")
	}
	if !n.serving.Load() {
		// Start has not finished: raft may not exist yet, or may still be
		// restoring a snapshot, and membership cannot be checked. Nothing
		// is answered but "not the leader".
		return statusNotLeader, nil
	}
	if why := n.authorize(from, h.rule, p); why != "" {
		return n.refuse(from, h.name, why)
	}
	return h.handle(n, ctx, p)
}

// authorize returns why from may not make a request under rule, or "".
func (n *Node) authorize(from peer, rule authRule, p []byte) string {
	if !from.authenticated {
		if n.mux.tls != nil {
			return "not authenticated"
		}
		return "" // no TLS: nothing can be checked (see Config.Insecure)
	}
	if from.id == n.cfg.NodeID {
		return ""
	}
	if !n.isMember(from.id) {
		return "not a member of this cluster"
	}
	switch rule {
	case fromLeader:
		if _, id := n.raft.LeaderWithID(); string(id) != from.id {
			return "not the leader this node follows"
		}
	case fromSelfNamed:
		if string(p) != from.id {
			return "a node may only name itself"
		}
	}
	return ""
}

// isMember reports whether id is a server of the raft configuration or a
// live gossip member of this cluster.
func (n *Node) isMember(id string) bool {
	if n.inConfig(id) {
		return true
	}
	st, ok := n.memberState(id)
	return ok && st.metaOK && (st.state == memberlist.StateAlive || st.state == memberlist.StateSuspect)
}

func (n *Node) refuse(from peer, what, why string) (byte, []byte) {
	n.metrics.Refused.Add(1)
	n.mux.log.Warn("refused-"+what, "node port: refused a request", "request", what, "peer", from.id, "why", why)
	return statusForbidden, []byte(why)
}

func (n *Node) notLeader() (byte, []byte) {
	addr, _ := n.raft.LeaderWithID()
	return statusNotLeader, []byte(addr)
}

func (n *Node) handleStats(_ context.Context, _ []byte) (byte, []byte) {
	b, _ := json.Marshal(n.localStats())
	return statusOK, b
}

func (n *Node) handleApply(ctx context.Context, p []byte) (byte, []byte) {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	// Only well-formed commands reach the log, whoever sent them, and
	// batches only from this leader's own batcher.
	cmd, err := fsm.Decode(p)
	if err != nil {
		return statusError, []byte(err.Error())
	}
	if cmd.Kind == fsm.KindBatch {
		return statusError, []byte("batches are made by the leader, not forwarded")
	}
	r, err := n.applyLocal(ctx, p)
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, session.ErrClosed):
		// Never appended: the sender may retry elsewhere.
		return n.notLeader()
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
}

func (n *Node) handleReadIndex(ctx context.Context, _ []byte) (byte, []byte) {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	idx, err := n.reads.get(ctx)
	if errors.Is(err, raft.ErrNotLeader) {
		return n.notLeader()
	} else if err != nil {
		return statusTimeout, nil
	}
	return statusOK, binaryAppendU64(nil, idx)
}

// leaderReadAt waits on the leader until the state includes min; a
// non-OK status ends the request.
func (n *Node) leaderReadAt(ctx context.Context, min uint64) (byte, []byte) {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	if min > n.raft.LastIndex() {
		// The client's token names a write this cluster never made (its
		// state was lost or it came from another cluster): its session
		// cannot be here.
		return statusNotFound, nil
	}
	if err := n.fsm.WaitApplied(ctx, min); err != nil {
		return statusTimeout, nil
	}
	return statusOK, nil
}

func (n *Node) handleGet(ctx context.Context, p []byte) (byte, []byte) {
	var key session.Key
	if len(p) < len(key) {
		return statusError, []byte("short request")
	}
	copy(key[:], p)
	d := decoder{b: p[len(key):]}
	min := d.u64()
	if d.err != nil {
		return statusError, []byte("short request")
	}
	if status, resp := n.leaderReadAt(ctx, min); status != statusOK {
		return status, resp
	}
	r, ok := n.fsm.Get(key, time.Now())
	if !ok {
		return statusNotFound, nil
	}
	return statusOK, fsm.AppendRecord(nil, r)
}

func (n *Node) handleListOwner(ctx context.Context, p []byte) (byte, []byte) {
	d := decoder{b: p}
	min := d.u64()
	if d.err != nil {
		return statusError, []byte("short request")
	}
	if status, resp := n.leaderReadAt(ctx, min); status != statusOK {
		return status, resp
	}
	var e encoder
	encodeInfos(&e, n.fsm.ListOwner(string(d.b), time.Now()))
	return statusOK, e.b
}

// handleWaitApplied raises this replica's read fence to the index the
// leader names (see awaitReplicas) and answers once it applied it.
func (n *Node) handleWaitApplied(ctx context.Context, p []byte) (byte, []byte) {
	d := decoder{b: p}
	idx := d.u64()
	if d.err != nil {
		return statusError, []byte("short request")
	}
	if idx > n.raft.LastIndex()+maxFenceAhead {
		return statusError, []byte("index far beyond this log")
	}
	n.raiseFence(idx)
	wctx, cancel := context.WithTimeout(ctx, 2*n.cfg.MaxStale)
	defer cancel()
	if err := n.fsm.WaitApplied(wctx, idx); err != nil {
		return statusTimeout, nil
	}
	return statusOK, nil
}

func (n *Node) handleRemoveServer(_ context.Context, p []byte) (byte, []byte) {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	if err := n.raft.RemoveServer(raft.ServerID(p), 0, n.cfg.CommitTimeout).Error(); err != nil {
		return statusError, []byte(err.Error())
	}
	return statusOK, nil
}

// allowRaft decides whether a peer may open a raft connection to this
// node: an authenticated member of the cluster (see isMember), or anyone
// when the port has no TLS. Raft RPCs carry their sender's ID unchecked
// (hashicorp/raft does not check membership), so this is where a stray
// node is kept from deposing the leader with a higher term.
func (n *Node) allowRaft(from peer) bool {
	if !from.authenticated {
		return n.mux.tls == nil
	}
	if !n.serving.Load() {
		// Raft is still starting; the sender retries in a moment.
		st, ok := n.memberState(from.id)
		return ok && st.metaOK && st.state == memberlist.StateAlive
	}
	return n.isMember(from.id)
}
