package cluster

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
)

func newAutopilot(n *Node) *autopilot.Autopilot {
	return autopilot.New(n.raft, &pilotDelegate{n: n},
		autopilot.WithLogger(newHCLog(n.log, "autopilot")),
		autopilot.WithPromoter(&promoter{voters: n.cfg.Voters}),
		autopilot.WithUpdateInterval(n.cfg.ReconcileInterval/5+100*time.Millisecond),
		autopilot.WithReconcileInterval(n.cfg.ReconcileInterval/5+100*time.Millisecond),
	)
}

// pilotDelegate tells autopilot what the application knows about servers.
type pilotDelegate struct {
	n *Node

	mu          sync.Mutex
	unhealthy   map[raft.ServerID]time.Time // since when raft saw it unhealthy
	lastRemoved map[raft.ServerID]time.Time
}

func (d *pilotDelegate) AutopilotConfig() *autopilot.Config {
	cfg := d.n.cfg
	return &autopilot.Config{
		CleanupDeadServers:      true,
		LastContactThreshold:    max(2*cfg.Raft.HeartbeatTimeout, time.Second),
		MaxTrailingLogs:         1000,
		MinQuorum:               uint(cfg.Voters/2 + 1),
		ServerStabilizationTime: cfg.PromoteAfter,
	}
}

func (d *pilotDelegate) NotifyState(s *autopilot.State) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.unhealthy == nil {
		d.unhealthy = map[raft.ServerID]time.Time{}
	}
	for id, srv := range s.Servers {
		if srv.Health.Healthy {
			delete(d.unhealthy, id)
		} else if _, ok := d.unhealthy[id]; !ok {
			d.unhealthy[id] = time.Now()
		}
	}
	d.n.setPilotState(s)
}

// FetchServerStats asks every server for its raft progress over the
// node-to-node port, in parallel, within autopilot's deadline.
func (d *pilotDelegate) FetchServerStats(ctx context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	out := map[raft.ServerID]*autopilot.ServerStats{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, srv := range servers {
		if srv.NodeStatus != autopilot.NodeAlive {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st *autopilot.ServerStats
			if string(id) == d.n.cfg.NodeID {
				st = d.n.localStats()
			} else {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				st = d.n.remoteStats(cctx, string(srv.Address))
				cancel()
			}
			if st != nil {
				mu.Lock()
				out[id] = st
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// KnownServers reports every server in the raft configuration plus alive
// gossip members. A configured server gossip has not seen is reported
// with unknown status rather than left out: autopilot removes servers it
// is not told about at once, and gossip alone must never remove a voter.
func (d *pilotDelegate) KnownServers() map[raft.ServerID]*autopilot.Server {
	n := d.n
	out := map[raft.ServerID]*autopilot.Server{}
	peers := map[string]meta{}
	for _, p := range n.peers() {
		peers[p.ID] = p
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return out
	}
	leaderAddr, _ := n.raft.LeaderWithID()
	for _, s := range f.Configuration().Servers {
		status := autopilot.NodeUnknown
		if _, ok := peers[string(s.ID)]; ok || string(s.ID) == n.cfg.NodeID {
			status = autopilot.NodeAlive
		} else if st, ok := n.memberState(string(s.ID)); ok {
			switch st.state {
			case memberlist.StateDead:
				status = autopilot.NodeFailed
			case memberlist.StateLeft:
				status = autopilot.NodeLeft
			}
		}
		p, seen := peers[string(s.ID)]
		// Autopilot counts potential voters from NodeType when it decides
		// how many dead servers it may remove; a current voter gossip does
		// not see any more still counts as one.
		voter := p.Voter || !seen && s.Suffrage == raft.Voter
		out[s.ID] = &autopilot.Server{ID: s.ID, Name: string(s.ID), Address: s.Address,
			NodeStatus: status, RaftVersion: raft.ProtocolVersionMax, IsLeader: s.Address == leaderAddr,
			NodeType: nodeType(voter), Meta: map[string]string{"voter": strconv.FormatBool(voter)}}
	}
	for id, p := range peers {
		if _, ok := out[raft.ServerID(id)]; ok {
			continue
		}
		out[raft.ServerID(id)] = &autopilot.Server{ID: raft.ServerID(id), Name: id, Address: raft.ServerAddress(p.RaftAddr),
			NodeStatus: autopilot.NodeAlive, RaftVersion: raft.ProtocolVersionMax, NodeType: nodeType(p.Voter),
			Meta: map[string]string{"voter": strconv.FormatBool(p.Voter)}}
	}
	return out
}

// readReplica is the node type of servers that are never promoted.
const readReplica autopilot.NodeType = "read-replica"

func nodeType(voter bool) autopilot.NodeType {
	if voter {
		return autopilot.NodeVoter
	}
	return readReplica
}

// RemoveFailedServer removes a server only when gossip reports it failed
// and raft's own health view has found it unhealthy for
// DeadServerTimeout: a gossip hiccup alone never costs a voter.
func (d *pilotDelegate) RemoveFailedServer(srv *autopilot.Server) {
	d.mu.Lock()
	since, unhealthy := d.unhealthy[srv.ID]
	if d.lastRemoved == nil {
		d.lastRemoved = map[raft.ServerID]time.Time{}
	}
	recently := time.Since(d.lastRemoved[srv.ID]) < time.Minute
	ok := unhealthy && time.Since(since) >= d.n.cfg.DeadServerTimeout && srv.NodeStatus != autopilot.NodeUnknown && !recently
	if ok {
		d.lastRemoved[srv.ID] = time.Now()
	}
	d.mu.Unlock()
	if !ok {
		return
	}
	// Autopilot wants this to return at once; the removal is a raft call,
	// admitted like every other so that shutdown waits for it.
	if !d.n.enterRaft() {
		return
	}
	go func() {
		defer d.n.leaveRaft()
		d.n.log.Warn("removing dead server from the configuration", "server", srv.ID, "gossip", srv.NodeStatus)
		if err := d.n.raft.RemoveServer(srv.ID, 0, d.n.cfg.CommitTimeout).Error(); err != nil {
			d.n.log.Warn("remove dead server failed", "server", srv.ID, "err", err)
		}
	}()
}

// promoter promotes stable, voter-eligible non-voters while there are
// fewer than the wanted number of voters; everyone else stays a read
// replica, so a large fleet keeps a small quorum.
type promoter struct{ voters int }

func (p *promoter) GetServerExt(*autopilot.Config, *autopilot.ServerState) any { return nil }
func (p *promoter) GetStateExt(*autopilot.Config, *autopilot.State) any        { return nil }

func (p *promoter) GetNodeTypes(_ *autopilot.Config, s *autopilot.State) map[raft.ServerID]autopilot.NodeType {
	types := map[raft.ServerID]autopilot.NodeType{}
	for id, srv := range s.Servers {
		types[id] = nodeType(srv.Server.Meta["voter"] == "true" || srv.HasVotingRights())
	}
	return types
}

func (p *promoter) CalculatePromotionsAndDemotions(c *autopilot.Config, s *autopilot.State) autopilot.RaftChanges {
	var changes autopilot.RaftChanges
	voters := 0
	for _, srv := range s.Servers {
		if srv.HasVotingRights() {
			voters++
		}
	}
	now := time.Now()
	var candidates []raft.ServerID
	for id, srv := range s.Servers {
		if srv.State == autopilot.RaftNonVoter && srv.Server.NodeType == autopilot.NodeVoter &&
			srv.Health.IsStable(now, s.ServerStabilizationTime(c)) {
			candidates = append(candidates, id)
		}
	}
	slices.Sort(candidates)
	for _, id := range candidates {
		if voters >= p.voters {
			break
		}
		changes.Promotions = append(changes.Promotions, id)
		voters++
	}
	return changes
}

func (p *promoter) FilterFailedServerRemovals(_ *autopilot.Config, _ *autopilot.State, f *autopilot.FailedServers) *autopilot.FailedServers {
	return f
}

func (p *promoter) IsPotentialVoter(t autopilot.NodeType) bool { return t == autopilot.NodeVoter }

func (n *Node) localStats() *autopilot.ServerStats {
	s := n.raft.Stats()
	term, _ := strconv.ParseUint(s["last_log_term"], 10, 64)
	idx, _ := strconv.ParseUint(s["last_log_index"], 10, 64)
	st := &autopilot.ServerStats{LastTerm: term, LastIndex: idx}
	if n.raft.State() != raft.Leader {
		st.LastContact = time.Since(n.raft.LastContact())
	}
	return st
}

func (n *Node) remoteStats(ctx context.Context, addr string) *autopilot.ServerStats {
	f, err := n.client.call(ctx, addr, reqStats, nil, nil)
	if err != nil || f.kind != statusOK {
		return nil
	}
	var st autopilot.ServerStats
	if json.Unmarshal(f.payload, &st) != nil {
		return nil
	}
	return &st
}

func (n *Node) setPilotState(s *autopilot.State) {
	n.pilotMu.Lock()
	n.pilotState = s
	n.pilotMu.Unlock()
}
