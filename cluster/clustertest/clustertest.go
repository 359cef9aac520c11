package clustertest

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftsession/raftsession/cluster"
	"github.com/raftsession/raftsession/session"
)

// Start starts size nodes that bootstrap together and returns them once
// every node knows the leader and holds the cluster's cookie-signing key.
// mutate, when not nil, adjusts each node's config before it starts. The
// nodes are closed when the test ends.
func Start(tb testing.TB, size int, mutate func(*cluster.Config)) []*cluster.Node {
	tb.Helper()
	dir := tb.TempDir()
	nodes := make([]*cluster.Node, 0, size)
	for i := range size {
		cfg := Config(tb, fmt.Sprintf("n%d", i+1), dir)
		cfg.BootstrapExpect = size
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		if mutate != nil {
			mutate(&cfg)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n, err := cluster.Start(ctx, cfg)
		cancel()
		if err != nil {
			tb.Fatalf("clustertest: start %s: %v", cfg.NodeID, err)
		}
		tb.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.WaitLeader(ctx); err != nil {
			tb.Fatalf("clustertest: %s knows no leader: %v", n.ID(), err)
		}
		if err := n.WaitSigningKey(ctx); err != nil {
			tb.Fatalf("clustertest: %s has no signing key: %v", n.ID(), err)
		}
	}
	return nodes
}

// Config returns the config of node id with free ports on 127.0.0.1, its
// data under dir, its logs in tb's log, and test timings: elections slow
// enough (1s) not to fire spuriously under the race detector on two cores.
func Config(tb testing.TB, id, dir string) cluster.Config {
	c := cluster.DefaultConfig()
	c.NodeID = id
	c.DataDir = filepath.Join(dir, id)
	c.RaftAddr = "127.0.0.1:0"
	c.GossipAddr = "127.0.0.1:0"
	c.Logger = Logger(tb, id)
	c.Raft.HeartbeatTimeout = time.Second
	c.Raft.ElectionTimeout = time.Second
	c.Raft.LeaderLeaseTimeout = 500 * time.Millisecond
	c.PromoteAfter = 300 * time.Millisecond
	c.ReconcileInterval = 300 * time.Millisecond
	c.ExpireInterval = time.Second
	return c
}

// Follower returns a node of nodes that is not the leader, so that a test
// reads through a replica and writes through forwarding. It fails the test
// when every node leads (a single node).
func Follower(tb testing.TB, nodes []*cluster.Node) *cluster.Node {
	tb.Helper()
	for _, n := range nodes {
		if !n.IsLeader() {
			return n
		}
	}
	tb.Fatal("clustertest: no follower")
	return nil
}

// Logger returns a logger that writes to tb's log (shown for failing
// tests) and goes quiet once the test has ended, since some of a node's
// timers may still log after Close.
func Logger(tb testing.TB, id string) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})).With("test_node", id)
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

// Backend is a session store an adapter's tests run over, and Peer a
// second handle on the same sessions, as another instance of the
// application has it.
type Backend struct {
	Name        string
	Store, Peer session.Store
}

// Backends returns a MemoryStore (both handles the same store) and, unless
// -short, a three-node cluster read through a follower, whose peer is
// another node: the two stores every adapter is tested over.
func Backends(tb testing.TB) []Backend {
	tb.Helper()
	mem := session.NewMemoryStore(session.MemoryOptions{})
	tb.Cleanup(func() { mem.Close() })
	out := []Backend{{"memory", mem, mem}}
	if testing.Short() {
		return out
	}
	nodes := Start(tb, 3, nil)
	f := Follower(tb, nodes)
	peer := nodes[0]
	if peer == f {
		peer = nodes[1]
	}
	return append(out, Backend{"cluster", f.Store(), peer.Store()})
}
