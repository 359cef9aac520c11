package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/session"
)

// A long heartbeat timeout, so that the bounds below are far from both
// what the early election takes (milliseconds) and what waiting for the
// timeout takes (one to two timeouts).
const aloneHeartbeat = 2 * time.Second

func slowHeartbeat(c *Config) {
	c.Raft.HeartbeatTimeout = aloneHeartbeat
	c.Raft.ElectionTimeout = aloneHeartbeat
}

// leadsWithin starts cfg and fails unless the node leads, with its term's
// no-op applied (so it serves reads and writes), before bound has passed
// since the start began.
func leadsWithin(t *testing.T, cfg Config, bound time.Duration, what string) *Node {
	t.Helper()
	t0 := time.Now()
	n := mustStart(t, cfg)
	waitFor(t, 10*time.Second, what+": node leads", func() bool { return leaderOf([]*Node{n}) != nil })
	if d := time.Since(t0); d >= bound {
		t.Fatalf("%s: leading after %v, want < %v (raft waits a HeartbeatTimeout of %v before campaigning)", what, d, bound, aloneHeartbeat)
	}
	return n
}

func TestLoneVoterLeadsWithoutHeartbeatTimeout(t *testing.T) {
	cfg := testConfig(t, "solo", t.TempDir())
	slowHeartbeat(&cfg)
	n := leadsWithin(t, cfg, aloneHeartbeat, "bootstrap")
	r := create(t, n.Store(), session.NewID(), "user", "alice")
	cfg.RaftAddr, cfg.GossipAddr = n.RaftAddr(), n.GossipAddr()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = leadsWithin(t, cfg, aloneHeartbeat, "restart")
	if n.fsm.AppliedIndex() < r.Index {
		t.Fatalf("restarted leader applied %d, want ≥ %d", n.fsm.AppliedIndex(), r.Index)
	}
}

// A node restarted alone from a three-voter cluster must wait for a leader
// as raft would: campaigning at once there could depose a live leader.
func TestMemberOfLargerClusterWaitsForHeartbeatTimeout(t *testing.T) {
	slow(t)
	nodes, cfgs := startClusterConfigs(t, 3, nil)
	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := cfgs[0]
	slowHeartbeat(&cfg)
	n := mustStart(t, cfg)
	// raft cannot campaign before one HeartbeatTimeout has passed.
	deadline := time.Now().Add(aloneHeartbeat / 2)
	for time.Now().Before(deadline) {
		if st := n.raft.State(); st != raft.Follower {
			t.Fatalf("a voter of a three-voter configuration is %v right after its start, want Follower", st)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

func TestSoleVoter(t *testing.T) {
	v := func(id string) raft.Server { return raft.Server{ID: raft.ServerID(id), Suffrage: raft.Voter} }
	nv := func(id string) raft.Server { return raft.Server{ID: raft.ServerID(id), Suffrage: raft.Nonvoter} }
	cases := []struct {
		name    string
		servers []raft.Server
		want    bool
	}{
		{"empty", nil, false},
		{"only voter", []raft.Server{v("me")}, true},
		{"voter with non-voters", []raft.Server{nv("a"), v("me"), nv("b")}, true},
		{"one of two voters", []raft.Server{v("me"), v("a")}, false},
		{"one of three voters", []raft.Server{v("a"), v("me"), v("b")}, false},
		{"non-voter beside the voter", []raft.Server{nv("me"), v("a")}, false},
		{"only non-voter", []raft.Server{nv("me")}, false},
		{"another's lone voter", []raft.Server{v("a")}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := soleVoter(raft.Configuration{Servers: tc.servers}, "me"); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
