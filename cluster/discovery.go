package cluster

import (
	"encoding/json"
	"fmt"
	"log"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// meta is what a node tells others about itself through gossip.
type meta struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft"`
	Voter    bool   `json:"voter"`
	Expect   int    `json:"expect"`
	Cluster  string `json:"cluster"`
	HasState bool   `json:"state"`
	// Leaving is set by a node that is leaving for good, before it leaves
	// gossip: memberlist's leave event does not say whether a member left
	// or died, and the leader must not add a leaving node back.
	Leaving bool `json:"leaving,omitempty"`
}

type gossipDelegate struct{ n *Node }

func (d gossipDelegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(d.n.localMeta())
	if len(b) > limit {
		return nil
	}
	return b
}
func (gossipDelegate) NotifyMsg([]byte)                           {}
func (gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (gossipDelegate) LocalState(join bool) []byte                { return nil }
func (gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

// memberStatus is what gossip last said about a member. memberlist
// mutates the nodes Members() returns without a lock, so the node keeps
// its own copy, taken in the event callbacks (which memberlist calls with
// its state lock held).
type memberStatus struct {
	state  memberlist.NodeStateType
	since  time.Time
	meta   meta
	metaOK bool
}

type gossipEvents struct{ n *Node }

// The Node memberlist passes carries no usable State (memberlist keeps the
// real one outside it), so the event says it: join and update mean alive,
// leave means left when the member announced it was leaving, else dead.
func (e gossipEvents) NotifyJoin(m *memberlist.Node)   { e.n.noteMember(m, memberlist.StateAlive) }
func (e gossipEvents) NotifyUpdate(m *memberlist.Node) { e.n.noteMember(m, memberlist.StateAlive) }
func (e gossipEvents) NotifyLeave(m *memberlist.Node)  { e.n.noteMember(m, memberlist.StateDead) }

func (n *Node) noteMember(m *memberlist.Node, state memberlist.NodeStateType) {
	var md meta
	metaOK := json.Unmarshal(m.Meta, &md) == nil && md.Cluster == n.cfg.ClusterName && md.ID == m.Name
	n.membersMu.Lock()
	old, ok := n.members[m.Name]
	if state == memberlist.StateDead && (md.Leaving || ok && old.meta.Leaving) {
		state = memberlist.StateLeft
	}
	st := memberStatus{state: state, since: time.Now(), meta: md, metaOK: metaOK}
	if ok && old.state == state {
		st.since = old.since
	}
	n.members[m.Name] = st
	n.membersMu.Unlock()
	n.pokeReconcile()
}

// memberState returns gossip's view of a member: alive, suspect, dead,
// left, or ok=false when gossip never saw it.
func (n *Node) memberState(id string) (memberStatus, bool) {
	n.membersMu.Lock()
	defer n.membersMu.Unlock()
	s, ok := n.members[id]
	return s, ok
}

func (n *Node) pokeReconcile() {
	select {
	case n.poke <- struct{}{}:
	default:
	}
}

func (n *Node) localMeta() meta {
	expect := n.cfg.BootstrapExpect
	if n.cfg.JoinOnly {
		expect = 0 // never counted among the founders
	}
	return meta{ID: n.cfg.NodeID, RaftAddr: n.raftAddr, Voter: !n.cfg.NonVoter,
		Expect: expect, Cluster: n.cfg.ClusterName, HasState: n.hasState.Load(),
		Leaving: n.leaving.Load()}
}

func (n *Node) startGossip() error {
	cfg := n.cfg
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeID
	host, port, err := splitHostPort(cfg.GossipAddr)
	if err != nil {
		return err
	}
	mc.BindAddr, mc.BindPort = host, port
	if cfg.GossipAdvertise != "" {
		h, p, err := splitHostPort(cfg.GossipAdvertise)
		if err != nil {
			return err
		}
		mc.AdvertiseAddr, mc.AdvertisePort = h, p
	}
	mc.Label = "raftsession/" + cfg.ClusterName
	// A node restarted on a new address may take over its name once gossip
	// has declared the old incarnation dead.
	mc.DeadNodeReclaimTime = 5 * time.Second
	mc.Delegate = gossipDelegate{n}
	mc.Events = gossipEvents{n}
	mc.Logger = log.New(&stdLogWriter{l: n.log.With("component", "memberlist")}, "", 0)
	if keys := cfg.gossipKeys(); len(keys) > 0 {
		kr, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			return fmt.Errorf("%w: gossip keyring: %v", ErrConfig, err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	} else if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		n.log.Warn("gossip listens beyond loopback WITHOUT encryption (Insecure)", "addr", cfg.GossipAddr)
	}
	n.ml, err = memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("cluster: start gossip on %s: %w", cfg.GossipAddr, err)
	}
	// Read once, before any loop runs: memberlist rewrites the local node
	// in place (UpdateNode) without a lock readers of LocalNode could take.
	ln := n.ml.LocalNode()
	n.gossipAdv = net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
	n.pilot = newAutopilot(n)
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %q: %v", ErrConfig, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%w: %q: bad port", ErrConfig, addr)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	return h, port, nil
}

// GossipAddr is the advertised gossip address, for other nodes' Join.
func (n *Node) GossipAddr() string { return n.gossipAdv }

// joinLoop contacts the Join seeds until one answers, backing off, so
// nodes can start in any order.
func (n *Node) joinLoop() {
	defer n.wg.Done()
	if len(n.cfg.Join) == 0 {
		return
	}
	backoff := 100 * time.Millisecond
	for {
		joined, err := n.ml.Join(n.cfg.Join)
		if joined > 0 {
			n.joined.Store(true)
			n.log.Info("joined gossip", "contacted", joined)
			n.pokeReconcile()
			return
		}
		n.log.Debug("gossip join failed, retrying", "seeds", n.cfg.Join, "err", err, "in", backoff)
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// peers returns this node and the alive gossip members of its cluster.
func (n *Node) peers() []meta {
	out := []meta{n.localMeta()}
	n.membersMu.Lock()
	defer n.membersMu.Unlock()
	for id, m := range n.members {
		if id != n.cfg.NodeID && m.state == memberlist.StateAlive && m.metaOK && !m.meta.Leaving {
			out = append(out, m.meta)
		}
	}
	return out
}

// bootstrapLoop forms a brand-new cluster once BootstrapExpect voter-eligible
// nodes without raft state see each other. Every node computes the same
// server set (the BootstrapExpect lowest IDs), and only nodes in that set
// bootstrap, all with that identical configuration, so at most one cluster
// forms. A node that sees any member with raft state never bootstraps: the
// existing leader adds it.
func (n *Node) bootstrapLoop() {
	defer n.wg.Done()
	expect := n.cfg.BootstrapExpect
	if n.hasState.Load() || n.cfg.JoinOnly || n.cfg.NonVoter {
		return
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	// The founders must agree on who they are: a set is used only after it
	// was seen unchanged for stableRounds ticks, and a node told to join
	// decides nothing before a seed answered.
	const stableRounds = 3
	var last string
	stable := 0
	warned := map[string]bool{}
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		if n.refreshHasState() {
			return
		}
		if len(n.cfg.Join) > 0 && !n.joined.Load() {
			continue
		}
		var eligible []meta
		for _, p := range n.peers() {
			if p.HasState {
				n.log.Info("found a member with raft state; waiting to be added instead of bootstrapping", "member", p.ID)
				return
			}
			if !p.Voter {
				continue
			}
			if p.Expect != expect {
				if !warned[p.ID] && p.Expect != 0 {
					warned[p.ID] = true
					n.log.Warn("member disagrees on bootstrap-expect; not bootstrapping with it", "member", p.ID, "its_expect", p.Expect, "ours", expect)
				}
				continue
			}
			eligible = append(eligible, p)
		}
		if len(eligible) < expect {
			stable = 0
			continue
		}
		slices.SortFunc(eligible, func(a, b meta) int { return strings.Compare(a.ID, b.ID) })
		eligible = eligible[:expect]
		var key strings.Builder
		for _, p := range eligible {
			key.WriteString(p.ID + "@" + p.RaftAddr + ",")
		}
		if key.String() != last {
			last, stable = key.String(), 0
		}
		if stable++; stable < stableRounds {
			continue
		}
		var servers []raft.Server
		self := false
		for _, p := range eligible {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
			self = self || p.ID == n.cfg.NodeID
		}
		if !self {
			// Not among the founders: the founders' leader will add us.
			return
		}
		if err := n.bootstrap(servers); err != nil {
			n.log.Error("bootstrap failed", "err", err)
			continue
		}
		n.updateGossipMeta()
		return
	}
}

// refreshHasState notices that raft got a configuration (we were added by a
// leader) and tells gossip, so new nodes don't try to bootstrap with us.
func (n *Node) refreshHasState() bool {
	if n.hasState.Load() {
		return true
	}
	if n.raft.LastIndex() > 0 {
		n.hasState.Store(true)
		n.updateGossipMeta()
		return true
	}
	return false
}

func (n *Node) updateGossipMeta() {
	if err := n.ml.UpdateNode(time.Second); err != nil {
		n.log.Debug("gossip meta update", "err", err)
	}
}

// reconcile, run by the leader, adds alive members of this cluster that
// raft does not know as non-voters (autopilot promotes them) and removes
// members that left gracefully. Failed members are autopilot's business.
func (n *Node) reconcile() {
	if n.raft.State() != raft.Leader {
		return
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	inConfig := map[string]raft.Server{}
	for _, s := range f.Configuration().Servers {
		inConfig[string(s.ID)] = s
	}
	for _, p := range n.peers() {
		s, ok := inConfig[p.ID]
		if ok && string(s.Address) == p.RaftAddr {
			continue
		}
		if ok {
			// Either the node moved, or someone announces its ID: the
			// operator removes the old entry (or the node leaves) first.
			n.mux.log.Warn("admit-moved", "gossip member announces the ID of a server at another address; not changing the configuration",
				"member", p.ID, "announced", p.RaftAddr, "configured", s.Address)
			continue
		}
		if err := n.proveIdentity(p.ID, p.RaftAddr); err != nil {
			n.metrics.Refused.Add(1)
			n.mux.log.Warn("admit-unproven", "not adding gossip member: its raft address did not prove its ID",
				"member", p.ID, "raft", p.RaftAddr, "err", err)
			continue
		}
		n.log.Info("adding member as non-voter", "member", p.ID, "raft", p.RaftAddr)
		if err := n.raft.AddNonvoter(raft.ServerID(p.ID), raft.ServerAddress(p.RaftAddr), 0, n.cfg.CommitTimeout).Error(); err != nil {
			n.log.Warn("add non-voter failed", "member", p.ID, "err", err)
		}
	}
	// A node that left gracefully removes itself; this catches one whose
	// removal did not go through (no leader at that moment).
	for id := range inConfig {
		if st, ok := n.memberState(id); ok && st.state == memberlist.StateLeft && id != n.cfg.NodeID {
			n.log.Info("removing member that left", "member", id)
			if err := n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.CommitTimeout).Error(); err != nil {
				n.log.Warn("remove server failed", "member", id, "err", err)
			}
		}
	}
}

// proveIdentity checks, before the leader adds a gossip member to raft,
// that the member's announced raft address answers the TLS handshake with
// a certificate for the ID it announced. Gossip meta is only what a member
// says of itself; the handshake is proof. Without TLS there is nothing to
// prove with.
func (n *Node) proveIdentity(id, addr string) error {
	if n.mux.tls == nil {
		return nil
	}
	conn, from, err := n.mux.dialPeer(addr, protoForward, 2*time.Second)
	if err != nil {
		return err
	}
	conn.Close()
	if from.id != id {
		return fmt.Errorf("the address answers as %q", from.id)
	}
	return nil
}
