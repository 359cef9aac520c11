package cluster

import (
	"sort"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// Status is a point-in-time view of a node and the cluster as it sees it.
type Status struct {
	ID           string    `json:"id"`
	RaftAddr     string    `json:"raft_addr"`
	GossipAddr   string    `json:"gossip_addr"`
	State        string    `json:"state"` // Leader, Follower, Candidate, Shutdown
	Leader       string    `json:"leader"`
	LeaderAddr   string    `json:"leader_addr"`
	Term         uint64    `json:"term"`
	AppliedIndex uint64    `json:"applied_index"` // applied to the local session state
	CommitIndex  uint64    `json:"commit_index"`
	LastIndex    uint64    `json:"last_index"`
	LastContact  time.Time `json:"last_contact"` // with the leader; zero on the leader
	Sessions     int       `json:"sessions"`
	Members      []Member  `json:"members"`
	// Insecure is set when the node-to-node port and gossip are neither
	// authenticated nor encrypted (no cluster key, no TLS).
	Insecure bool `json:"insecure"`
}

// Member is one server of the raft configuration, or a gossip member not
// (yet) in it.
type Member struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Role    string `json:"role"`   // voter, non-voter, or none (gossip only)
	Health  string `json:"health"` // healthy/unhealthy (leader's raft view), else alive/suspect/dead/left/unknown (gossip)
	Leader  bool   `json:"leader"`
}

// Status returns the node's view of itself and the cluster.
func (n *Node) Status() Status {
	addr, id := n.raft.LeaderWithID()
	st := Status{
		ID: n.cfg.NodeID, RaftAddr: n.raftAddr, GossipAddr: n.gossipAdv,
		State: n.raft.State().String(), Leader: string(id), LeaderAddr: string(addr),
		Term: n.raft.CurrentTerm(), AppliedIndex: n.fsm.AppliedIndex(), CommitIndex: n.raft.CommitIndex(),
		LastIndex: n.raft.LastIndex(), Sessions: n.fsm.Len(), Insecure: n.mux.tls == nil,
	}
	if n.raft.State() != raft.Leader {
		st.LastContact = n.raft.LastContact()
	}
	n.pilotMu.Lock()
	ps := n.pilotState
	n.pilotMu.Unlock()
	seen := map[string]bool{}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			m := Member{ID: string(s.ID), Address: string(s.Address), Role: "non-voter", Leader: s.ID == id}
			if s.Suffrage == raft.Voter {
				m.Role = "voter"
			}
			m.Health = n.gossipHealth(string(s.ID))
			if st.State == raft.Leader.String() && ps != nil {
				if srv, ok := ps.Servers[s.ID]; ok {
					m.Health = "unhealthy"
					if srv.Health.Healthy {
						m.Health = "healthy"
					}
				}
			}
			seen[m.ID] = true
			st.Members = append(st.Members, m)
		}
	}
	for _, p := range n.peers() {
		if !seen[p.ID] {
			st.Members = append(st.Members, Member{ID: p.ID, Address: p.RaftAddr, Role: "none", Health: "alive"})
		}
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	return st
}

func (n *Node) gossipHealth(id string) string {
	if id == n.cfg.NodeID {
		return "alive"
	}
	ms, ok := n.memberState(id)
	if !ok {
		return "unknown"
	}
	switch ms.state {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown"
}

// Metrics are the node's counters, for export by the application.
type Metrics struct {
	Commits      atomic.Uint64 // commits attempted through this node
	CommitErrors atomic.Uint64 // of which failed (rejections are not failures)
	Forwarded    atomic.Uint64 // commits sent to the leader
	// CommitRetries counts attempts whose outcome was unknown (a reply
	// lost with its leader or connection) and were retried under the same
	// request number, which the state machine applies at most once.
	CommitRetries atomic.Uint64
	ReadWaits     atomic.Uint64 // reads that waited for the replica to catch up
	ReadFallbacks atomic.Uint64 // reads that then went to the leader
	// Refused counts node-to-node connections and requests turned away:
	// failed TLS handshakes, senders that may not make the request, the
	// connection limit, unknown protocols.
	Refused atomic.Uint64
	// Entries and EntryCommands count the log entries this node's group
	// commit proposed as leader and the commands they carried. Holds
	// counts its holds for expected commits (Config.GroupCommitWait) and
	// HoldMisses those that ran out before half of what they waited for
	// came.
	Entries, EntryCommands, Holds, HoldMisses atomic.Uint64
	// CommitLatency counts commits by latency bucket (see LatencyBuckets).
	CommitLatency [len(LatencyBuckets) + 1]atomic.Uint64
	commitNanos   atomic.Uint64
}

// LatencyBuckets are the upper bounds of Metrics.CommitLatency's buckets;
// the last bucket counts everything slower.
var LatencyBuckets = [...]time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
}

func (m *Metrics) observeCommit(d time.Duration, err error) {
	m.Commits.Add(1)
	if err != nil {
		m.CommitErrors.Add(1)
	}
	m.commitNanos.Add(uint64(d))
	i := 0
	for i < len(LatencyBuckets) && d > LatencyBuckets[i] {
		i++
	}
	m.CommitLatency[i].Add(1)
}

// CommitSeconds is the total time spent in commits, for a histogram sum.
func (m *Metrics) CommitSeconds() float64 { return float64(m.commitNanos.Load()) / 1e9 }

// Metrics returns the node's live counters.
func (n *Node) Metrics() *Metrics { return &n.metrics }
