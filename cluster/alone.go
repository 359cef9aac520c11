package cluster

import "github.com/hashicorp/raft"

// campaignIfAlone starts this node's election at once when its latest raft
// configuration has exactly one voter and that voter is this node.
//
// hashicorp/raft's follower campaigns only after a randomized
// HeartbeatTimeout without a leader (one to two timeouts: 400-800ms with
// the defaults), also when it is the only voter and so the only server
// that could ever lead. A single node therefore served nothing for that
// long after every start, on top of reading its log. When any other
// voter is in the configuration, including an uncommitted one, nothing
// changes: an early campaign could disturb a leader that is alive, and
// the timeout is what keeps followers of a live leader quiet.
//
// raft has no call that starts an election. ReloadConfig with a lower
// HeartbeatTimeout makes a follower fire its heartbeat timer at once
// (runFollower's followerNotifyCh in raft v1.7.3); the timer campaigns
// unless a leader was heard from within the timeout, which after NewRaft
// it never was (LastContact is zero). The original timeout is put back
// right away, so only that one timer is affected. The lowest timeout raft
// accepts is LeaderLeaseTimeout; when that equals HeartbeatTimeout there
// is nothing lower to reload, and the node waits as raft would.
// TestLoneVoterLeadsWithoutHeartbeatTimeout fails if a raft upgrade
// changes any of this.
func (n *Node) campaignIfAlone() {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil || !soleVoter(f.Configuration(), raft.ServerID(n.cfg.NodeID)) {
		return
	}
	orig := n.raft.ReloadableConfig()
	lower := orig
	lower.HeartbeatTimeout = n.cfg.Raft.LeaderLeaseTimeout
	if lower.HeartbeatTimeout >= orig.HeartbeatTimeout {
		return
	}
	if err := n.raft.ReloadConfig(lower); err != nil {
		n.log.Warn("could not start the lone voter's election early", "err", err)
		return
	}
	if err := n.raft.ReloadConfig(orig); err != nil {
		n.log.Error("could not restore raft's heartbeat timeout", "err", err, "timeout", lower.HeartbeatTimeout)
		return
	}
	n.log.Info("only voter of the configuration: starting an election without waiting for a leader")
}

// soleVoter reports whether c has exactly one voter, id. Non-voters do
// not count: they never campaign or vote.
func soleVoter(c raft.Configuration, id raft.ServerID) bool {
	voters, self := 0, false
	for _, s := range c.Servers {
		if s.Suffrage == raft.Voter {
			voters++
			self = self || s.ID == id
		}
	}
	return voters == 1 && self
}
