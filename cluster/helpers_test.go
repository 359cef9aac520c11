package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// testLogger sends node logs to t.Log, so they show only for failing tests.
func testLogger(tb testing.TB, id string) *slog.Logger {
	w := &tbWriter{tb: tb}
	// Registered before the node's own cleanup, so it runs after the node
	// is closed: memberlist's Shutdown does not wait for its timers, and a
	// line they log after the test ended must not reach t.Log.
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test_node", id)
}

type tbWriter struct {
	tb   testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testConfig returns a config for node id with free ports on 127.0.0.1,
// its data under dir, and timings short enough for tests.
func testConfig(tb testing.TB, id, dir string) Config {
	c := DefaultConfig()
	c.NodeID = id
	c.DataDir = filepath.Join(dir, id)
	c.RaftAddr = "127.0.0.1:0"
	c.GossipAddr = "127.0.0.1:0"
	c.Logger = testLogger(tb, id)
	c.PromoteAfter = 300 * time.Millisecond
	c.ReconcileInterval = 300 * time.Millisecond
	c.ExpireInterval = time.Second
	return c
}

// mustStart starts a node and closes it at the end of the test.
func mustStart(tb testing.TB, cfg Config) *Node {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		tb.Fatalf("start %s: %v", cfg.NodeID, err)
	}
	tb.Cleanup(func() { n.Close() })
	return n
}

// startCluster starts n nodes that bootstrap together with
// BootstrapExpect=n and waits until they have a leader and all are voters.
func startCluster(tb testing.TB, size int, mutate func(*Config)) []*Node {
	tb.Helper()
	nodes, _ := startClusterConfigs(tb, size, mutate)
	return nodes
}

// startClusterConfigs is startCluster that also returns each node's
// config (with the bound addresses), for tests that restart nodes.
func startClusterConfigs(tb testing.TB, size int, mutate func(*Config)) ([]*Node, []Config) {
	tb.Helper()
	dir := tb.TempDir()
	var nodes []*Node
	var cfgs []Config
	for i := range size {
		cfg := testConfig(tb, fmt.Sprintf("n%d", i+1), dir)
		cfg.BootstrapExpect = size
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		if mutate != nil {
			mutate(&cfg)
		}
		n := mustStart(tb, cfg)
		cfg.RaftAddr, cfg.GossipAddr = n.RaftAddr(), n.GossipAddr()
		nodes, cfgs = append(nodes, n), append(cfgs, cfg)
	}
	waitFor(tb, 15*time.Second, "all nodes agree on a leader", func() bool {
		return leaderOf(nodes) != nil && allKnowLeader(nodes)
	})
	return nodes, cfgs
}

func allKnowLeader(nodes []*Node) bool {
	for _, n := range nodes {
		if addr, _ := n.raft.LeaderWithID(); addr == "" {
			return false
		}
	}
	return true
}

func leaderOf(nodes []*Node) *Node {
	for _, n := range nodes {
		if n.raft.State() == raft.Leader && n.readyTerm.Load() == n.raft.CurrentTerm() {
			return n
		}
	}
	return nil
}

func followersOf(nodes []*Node) []*Node {
	var out []*Node
	for _, n := range nodes {
		if n.raft.State() != raft.Leader {
			out = append(out, n)
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

func suffrage(n *Node, id string) (raft.ServerSuffrage, bool) {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0, false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return s.Suffrage, true
		}
	}
	return 0, false
}

// concurrently runs fn(i) for i in [0,n) and waits.
func concurrently(n int, fn func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i)
		}()
	}
	wg.Wait()
}

// setIdleTimeouts shortens the port's idle timeouts and returns the undo.
// Register the undo with t.Cleanup before starting nodes, so that it runs
// after they are closed.
func setIdleTimeouts(d time.Duration) func() {
	fwd, raftIdle := forwardIdleTimeout, raftIdleTimeout
	forwardIdleTimeout, raftIdleTimeout = d, d
	return func() { forwardIdleTimeout, raftIdleTimeout = fwd, raftIdle }
}

// slow skips a test under -short: whole-cluster scenarios that take
// seconds each, covered by the full run in CI.
func slow(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow cluster scenario; runs without -short")
	}
}

// setForwardWriteTimeout shortens forwardWriteTimeout for one test and
// returns the function that restores it.
func setForwardWriteTimeout(d time.Duration) func() {
	old := forwardWriteTimeout
	forwardWriteTimeout = d
	return func() { forwardWriteTimeout = old }
}
