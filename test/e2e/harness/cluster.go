package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftsession/raftsession/cluster"
	"github.com/raftsession/raftsession/internal/nodeproc"
)

// Options configure [Start].
type Options struct {
	// Nodes is how many nodes start (default 3). All of them are
	// voter-eligible and bootstrap together (-bootstrap-expect
	// min(Nodes, Voters)).
	Nodes int
	// Voters is -voters (default 3).
	Voters int
	// Consistency is -consistency: local, ryw (default) or linearizable.
	Consistency string
	// Secret is -secret, the same on every node (default a fixed 32-byte
	// test secret).
	Secret string
	// Args are extra flags for every node, e.g. -snapshot-threshold 64.
	Args []string
	// ClusterKey is the cluster key every node gets (base64, as
	// -cluster-key takes it). Default: a new random key for each cluster,
	// so that clusters run keyed as the README tells users to run them.
	ClusterKey string
	// Unkeyed starts the nodes without a cluster key (on loopback, which
	// is the only place a node runs without one).
	Unkeyed bool
	// Artifacts is the directory for node logs (default tb.TempDir()).
	Artifacts string
}

// Cluster is a set of node processes started by [Start].
type Cluster struct {
	tb  testing.TB
	opt Options
	bin string
	nw  *network

	mu    sync.Mutex
	nodes []*Node
	seq   int
}

// DefaultSecret is the -secret every node gets unless Options.Secret says
// otherwise.
const DefaultSecret = "e2e-test-secret-0123456789abcdef-0123456789"

// Start builds cmd/node (once per process), starts opt.Nodes nodes and
// waits until they have elected a leader and are healthy. The cluster is
// killed when tb ends; when tb failed, the tail of every node's log is
// printed.
func Start(tb testing.TB, opt Options) *Cluster {
	tb.Helper()
	if opt.Nodes <= 0 {
		opt.Nodes = 3
	}
	if opt.Voters <= 0 {
		opt.Voters = 3
	}
	if opt.Consistency == "" {
		opt.Consistency = "ryw"
	}
	if opt.Secret == "" {
		opt.Secret = DefaultSecret
	}
	if opt.Unkeyed {
		opt.ClusterKey = ""
	} else if opt.ClusterKey == "" {
		k, err := cluster.GenerateClusterKey()
		if err != nil {
			tb.Fatal(err)
		}
		opt.ClusterKey = cluster.FormatClusterKey(k)
	}
	if opt.Artifacts == "" {
		opt.Artifacts = tb.TempDir()
	}
	if err := os.MkdirAll(opt.Artifacts, 0o755); err != nil {
		tb.Fatal(err)
	}
	var flags []string
	if os.Getenv("E2E_RACE") == "1" {
		flags = append(flags, "-race")
	}
	c := &Cluster{tb: tb, opt: opt, bin: nodeproc.MustBuild(tb, nodeproc.NodePackage, flags...)}
	c.nw = newNetwork(c.pids)
	tb.Cleanup(c.shutdown)
	expect := min(opt.Nodes, opt.Voters)
	var ns []*Node
	for range opt.Nodes {
		n, err := c.newNode(expect)
		if err != nil {
			tb.Fatal(err)
		}
		ns = append(ns, n)
	}
	var seeds []string
	for _, n := range ns {
		seeds = append(seeds, n.GossipAddr)
	}
	for _, n := range ns {
		n.join = slices.DeleteFunc(slices.Clone(seeds), func(s string) bool { return s == n.GossipAddr })
		if err := n.start(); err != nil {
			tb.Fatal(err)
		}
	}
	if err := c.WaitHealthy(60 * time.Second); err != nil {
		tb.Fatalf("cluster did not become healthy: %v", err)
	}
	return c
}

// Artifacts is the directory holding the node logs.
func (c *Cluster) Artifacts() string { return c.opt.Artifacts }

// Nodes returns every node ever started, including stopped and departed
// ones, in start order.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

// Node returns the node with id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes() {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Members returns the nodes that belong to the cluster: started and not
// departed with [Node.Leave], whether or not their process runs now. A
// load balancer in front of the cluster would send requests to these.
func (c *Cluster) Members() []*Node {
	return slices.DeleteFunc(c.Nodes(), func(n *Node) bool { return n.Left() })
}

// URLs returns the demo app base URLs of [Cluster.Members].
func (c *Cluster) URLs() []string {
	var us []string
	for _, n := range c.Members() {
		us = append(us, n.URL())
	}
	return us
}

// Serving returns the demo app base URLs of the members a load balancer
// with health checks would route new requests to: every member except a
// paused one (a killed node stays in rotation; its refused connections
// cost nothing).
func (c *Cluster) Serving() []string {
	var us []string
	for _, n := range c.Members() {
		if !n.Paused() {
			us = append(us, n.URL())
		}
	}
	return us
}

// reachable returns the members that run, are not paused and are not
// isolated: the ones expected to agree with the leader.
func (c *Cluster) reachable() []*Node {
	return slices.DeleteFunc(c.Members(), func(n *Node) bool {
		return !n.Running() || n.Paused() || n.Isolated()
	})
}

// AddNode starts a new node that joins the running cluster through gossip
// (it never bootstraps) and returns once its process answers /healthz.
// Use [Node.WaitCaughtUp] to wait until it has the data.
func (c *Cluster) AddNode() (*Node, error) {
	n, err := c.newNode(0)
	if err != nil {
		return nil, err
	}
	for _, m := range c.Members() {
		if m != n && m.Running() {
			n.join = append(n.join, m.GossipAddr)
		}
	}
	return n, n.start()
}

func (c *Cluster) newNode(expect int) (*Node, error) {
	c.mu.Lock()
	c.seq++
	id := fmt.Sprintf("n%d", c.seq)
	c.mu.Unlock()
	p, err := c.nw.newProxy(id)
	if err != nil {
		return nil, err
	}
	n := &Node{c: c, ID: id, proxy: p, expect: expect,
		DataDir: filepath.Join(c.opt.Artifacts, id+"-data"),
		LogPath: filepath.Join(c.opt.Artifacts, id+".log")}
	if err := n.pickPorts(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n, nil
}

func (c *Cluster) pids() map[int]string {
	m := map[int]string{}
	for _, n := range c.Nodes() {
		if pid := n.pid(); pid > 0 {
			m[pid] = n.ID
		}
	}
	return m
}

func (c *Cluster) shutdown() {
	for _, n := range c.Nodes() {
		n.kill()
	}
	if c.tb.Failed() {
		for _, n := range c.Nodes() {
			c.tb.Logf("---- tail of %s ----\n%s", n.LogPath, n.tail(60))
		}
	}
	for _, n := range c.Nodes() {
		n.proxy.close()
	}
}

// Leader returns the node every reachable member names as leader, and
// that node's status, without waiting.
func (c *Cluster) Leader() (*Node, nodeproc.Status, error) {
	var leader string
	reach := c.reachable()
	for _, n := range reach {
		s, err := n.Status()
		if err != nil {
			return nil, nodeproc.Status{}, err
		}
		if s.Leader == "" {
			return nil, nodeproc.Status{}, fmt.Errorf("%s knows no leader", n.ID)
		}
		if leader != "" && s.Leader != leader {
			return nil, nodeproc.Status{}, fmt.Errorf("leaders disagree: %s and %s", leader, s.Leader)
		}
		leader = s.Leader
	}
	i := slices.IndexFunc(reach, func(n *Node) bool { return n.ID == leader })
	if i < 0 {
		return nil, nodeproc.Status{}, fmt.Errorf("leader %q is not reachable", leader)
	}
	l := reach[i]
	s, err := l.Status()
	if err != nil {
		return nil, nodeproc.Status{}, err
	}
	if s.State != "Leader" {
		return nil, nodeproc.Status{}, fmt.Errorf("%s is named leader but is %s", l.ID, s.State)
	}
	return l, s, nil
}

// WaitLeader waits until every reachable member names the same leader
// and that leader says it leads.
func (c *Cluster) WaitLeader(timeout time.Duration) (*Node, error) {
	var l *Node
	err := nodeproc.Poll(timeout, func() error {
		var err error
		l, _, err = c.Leader()
		return err
	})
	return l, err
}

// WaitHealthy waits until there is an agreed leader, every reachable
// member is in the raft configuration and healthy in the leader's view,
// there are min(Voters, reachable members) voters, and every reachable
// member has applied the leader's commit index.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	return nodeproc.Poll(timeout, func() error {
		_, ls, err := c.Leader()
		if err != nil {
			return err
		}
		reach := c.reachable()
		for _, n := range reach {
			i := slices.IndexFunc(ls.Members, func(m nodeproc.Member) bool { return m.ID == n.ID })
			if i < 0 || ls.Members[i].Role == "none" {
				return fmt.Errorf("%s is not in the raft configuration", n.ID)
			}
			if ls.Members[i].Health != "healthy" {
				return fmt.Errorf("%s is %s", n.ID, ls.Members[i].Health)
			}
		}
		if got, want := len(ls.Voters()), min(c.opt.Voters, len(reach)); got != want {
			return fmt.Errorf("%d voters %v, want %d", got, ls.Voters(), want)
		}
		for _, n := range reach {
			s, err := n.Status()
			if err != nil {
				return err
			}
			if s.AppliedIndex < ls.CommitIndex {
				return fmt.Errorf("%s applied %d < leader commit %d", n.ID, s.AppliedIndex, ls.CommitIndex)
			}
		}
		return nil
	})
}

// WaitConverged waits until every reachable member has applied the same
// index as the leader's commit index and holds the same number of
// sessions, twice in a row (so run it when the load has stopped). It
// returns that number of sessions.
func (c *Cluster) WaitConverged(timeout time.Duration) (int, error) {
	var prev string
	var sessions int
	err := nodeproc.Poll(timeout, func() error {
		_, ls, err := c.Leader()
		if err != nil {
			return err
		}
		var desc []string
		for _, n := range c.reachable() {
			s, err := n.Status()
			if err != nil {
				return err
			}
			if s.AppliedIndex != ls.CommitIndex || s.Sessions != ls.Sessions {
				prev = ""
				return fmt.Errorf("%s applied %d, %d sessions; leader %s commit %d, %d sessions",
					n.ID, s.AppliedIndex, s.Sessions, ls.ID, ls.CommitIndex, ls.Sessions)
			}
			desc = append(desc, fmt.Sprintf("%s:%d/%d", n.ID, s.AppliedIndex, s.Sessions))
		}
		cur := strings.Join(desc, " ")
		if cur != prev {
			prev = cur
			return errors.New("not stable yet: " + cur)
		}
		sessions = ls.Sessions
		return nil
	})
	return sessions, err
}
