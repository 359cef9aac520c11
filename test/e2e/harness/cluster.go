package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftsession/raftsession/cluster"
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

// Status is GET /cluster/status of one node.
type Status struct {
	ID           string    `json:"id"`
	RaftAddr     string    `json:"raft_addr"`
	GossipAddr   string    `json:"gossip_addr"`
	State        string    `json:"state"`
	Leader       string    `json:"leader"`
	LeaderAddr   string    `json:"leader_addr"`
	Term         uint64    `json:"term"`
	AppliedIndex uint64    `json:"applied_index"`
	CommitIndex  uint64    `json:"commit_index"`
	LastIndex    uint64    `json:"last_index"`
	LastContact  time.Time `json:"last_contact"`
	Sessions     int       `json:"sessions"`
	Members      []Member  `json:"members"`
}

// Member is one entry of [Status.Members].
type Member struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Role    string `json:"role"` // voter, non-voter or none
	Health  string `json:"health"`
	Leader  bool   `json:"leader"`
}

// Voters returns the IDs of the voters in s's configuration.
func (s Status) Voters() []string {
	var ids []string
	for _, m := range s.Members {
		if m.Role == "voter" {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// Cluster is a set of node processes started by [Start].
type Cluster struct {
	tb   testing.TB
	opt  Options
	bin  string
	nw   *network
	http *http.Client

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
	bin, err := Build()
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{tb: tb, opt: opt, bin: bin, http: &http.Client{Timeout: 3 * time.Second}}
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
			c.tb.Logf("---- tail of %s ----\n%s", n.LogPath, tail(n.LogPath, 60))
		}
	}
	for _, n := range c.Nodes() {
		n.proxy.close()
	}
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// Leader returns the node every reachable member names as leader, and
// that node's status, without waiting.
func (c *Cluster) Leader() (*Node, Status, error) {
	var leader string
	reach := c.reachable()
	for _, n := range reach {
		s, err := n.Status()
		if err != nil {
			return nil, Status{}, err
		}
		if s.Leader == "" {
			return nil, Status{}, fmt.Errorf("%s knows no leader", n.ID)
		}
		if leader != "" && s.Leader != leader {
			return nil, Status{}, fmt.Errorf("leaders disagree: %s and %s", leader, s.Leader)
		}
		leader = s.Leader
	}
	i := slices.IndexFunc(reach, func(n *Node) bool { return n.ID == leader })
	if i < 0 {
		return nil, Status{}, fmt.Errorf("leader %q is not reachable", leader)
	}
	l := reach[i]
	s, err := l.Status()
	if err != nil {
		return nil, Status{}, err
	}
	if s.State != "Leader" {
		return nil, Status{}, fmt.Errorf("%s is named leader but is %s", l.ID, s.State)
	}
	return l, s, nil
}

// WaitLeader waits until every reachable member names the same leader
// and that leader says it leads.
func (c *Cluster) WaitLeader(timeout time.Duration) (*Node, error) {
	var l *Node
	err := poll(timeout, func() error {
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
	return poll(timeout, func() error {
		_, ls, err := c.Leader()
		if err != nil {
			return err
		}
		reach := c.reachable()
		for _, n := range reach {
			i := slices.IndexFunc(ls.Members, func(m Member) bool { return m.ID == n.ID })
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
	err := poll(timeout, func() error {
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

// poll calls f every 50ms until it returns nil or timeout passes; the
// error then is f's last one.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		<-tick.C
	}
}

// Poll is the harness's wait primitive, exported for tests: it calls f
// every 50ms until f returns nil or timeout passes.
func Poll(timeout time.Duration, f func() error) error { return poll(timeout, f) }

func (c *Cluster) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}

// freePort returns a port free for TCP and UDP on 127.0.0.1 right now.
func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port, nil
	}
	return 0, errors.New("harness: no free port")
}
