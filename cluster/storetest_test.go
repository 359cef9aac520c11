package cluster

import (
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
	"github.com/raftsession/raftsession/session/storetest"
)

// fastElections makes a fresh single-node cluster elect within a few
// hundred milliseconds, so the contract suite can start one per subtest.
func fastElections(c *Config) {
	c.Raft.HeartbeatTimeout = 100 * time.Millisecond
	c.Raft.ElectionTimeout = 100 * time.Millisecond
	c.Raft.LeaderLeaseTimeout = 50 * time.Millisecond
}

func TestStoreContractSingleNode(t *testing.T) { forEachLogStore(t, testStoreContractSingleNode) }

func testStoreContractSingleNode(t *testing.T, logStore func(*Config)) {
	storetest.Run(t, func(t *testing.T, cfg storetest.Config) session.Store {
		nodes := startCluster(t, 1, func(c *Config) {
			logStore(c)
			fastElections(c)
			c.Limits = cfg.Limits
		})
		return nodes[0].Store()
	})
}

func TestStoreContractFollowerReads(t *testing.T) { forEachLogStore(t, testStoreContractFollowerReads) }

func testStoreContractFollowerReads(t *testing.T, logStore func(*Config)) {
	if testing.Short() {
		t.Skip("starts a three-node cluster per subtest")
	}
	// Slow elections: on a loaded machine (race detector, two cores, other
	// packages' tests alongside) a 400ms heartbeat timeout sometimes
	// expires spuriously, and a commit that meets the election fails as
	// "outcome unknown", which the suite rightly does not accept.
	storetest.Run(t, func(t *testing.T, cfg storetest.Config) session.Store {
		nodes := startCluster(t, 3, func(c *Config) {
			logStore(c)
			c.Limits = cfg.Limits
			c.Raft.HeartbeatTimeout = time.Second
			c.Raft.ElectionTimeout = time.Second
			c.Raft.LeaderLeaseTimeout = 500 * time.Millisecond
		})
		return followersOf(nodes)[0].Store()
	})
}
