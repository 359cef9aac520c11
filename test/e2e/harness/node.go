package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftsession/raftsession/internal/nodeproc"
)

// Node is one node process of a [Cluster]. Its addresses stay the same
// across restarts.
type Node struct {
	c      *Cluster
	ID     string
	expect int      // -bootstrap-expect
	join   []string // -join

	HTTPAddr   string // the demo app
	AdminAddr  string // /cluster/status and friends
	RaftAddr   string // the node's own raft listener, behind the proxy
	GossipAddr string
	DataDir    string
	LogPath    string
	proxy      *proxy

	mu       sync.Mutex
	proc     *nodeproc.Proc // the current process; nil before the first start
	paused   bool
	isolated bool
	left     bool
}

func (n *Node) pickPorts() error {
	ports, err := nodeproc.FreePorts(4)
	if err != nil {
		return err
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	n.HTTPAddr, n.AdminAddr, n.RaftAddr, n.GossipAddr = addr(ports[0]), addr(ports[1]), addr(ports[2]), addr(ports[3])
	n.proxy.setTarget(n.RaftAddr)
	return nil
}

// URL is the base URL of the node's demo app.
func (n *Node) URL() string { return "http://" + n.HTTPAddr }

// AdminURL is the base URL of the node's admin listener.
func (n *Node) AdminURL() string { return "http://" + n.AdminAddr }

// ProxyAddr is the raft address the node advertises: the harness proxy.
func (n *Node) ProxyAddr() string { return n.proxy.addr() }

func (n *Node) args() []string {
	o := n.c.opt
	a := []string{
		"-id", n.ID, "-data", n.DataDir,
		"-http", n.HTTPAddr, "-admin", n.AdminAddr,
		"-raft", n.RaftAddr, "-raft-advertise", n.proxy.addr(),
		"-gossip", n.GossipAddr,
		"-bootstrap-expect", strconv.Itoa(n.expect), "-voters", strconv.Itoa(o.Voters),
		"-secret", o.Secret, "-consistency", o.Consistency,
	}
	if len(n.join) > 0 {
		a = append(a, "-join", strings.Join(n.join, ","))
	}
	return append(a, o.Args...)
}

// start launches the process and waits until /healthz answers. A fresh
// node whose ports were taken meanwhile gets new ones and tries again.
func (n *Node) start() error {
	var err error
	for range 3 {
		if err = n.launch(); err == nil || !strings.Contains(n.tail(20), "address already in use") {
			return err
		}
		if perr := n.pickPorts(); perr != nil {
			return perr
		}
	}
	return err
}

func (n *Node) launch() error {
	n.mu.Lock()
	if n.proc != nil && n.proc.Running() {
		n.mu.Unlock()
		return fmt.Errorf("harness: %s is already running", n.ID)
	}
	spec := nodeproc.Spec{Path: n.c.bin, Name: n.ID, Args: n.args(), LogPath: n.LogPath}
	if k := n.c.opt.ClusterKey; k != "" {
		spec.Env = []string{"RAFTSESSION_CLUSTER_KEY=" + k}
	}
	p, err := nodeproc.Start(spec)
	if err != nil {
		n.mu.Unlock()
		return fmt.Errorf("harness: %w", err)
	}
	n.proc, n.paused = p, false
	n.mu.Unlock()
	if err := p.WaitOK(n.AdminURL()+"/healthz", 30*time.Second); err != nil {
		return fmt.Errorf("harness: %s did not start: %w", n.ID, err)
	}
	return nil
}

// current returns the node's current process, or nil.
func (n *Node) current() *nodeproc.Proc {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc
}

func (n *Node) pid() int {
	if p := n.current(); p != nil {
		return p.Pid()
	}
	return 0
}

// tail returns the last lines of the node's log, every run included.
func (n *Node) tail(lines int) string {
	b, err := os.ReadFile(n.LogPath)
	if err != nil {
		return err.Error()
	}
	return nodeproc.Tail(string(b), lines)
}

// Running reports whether the node's process runs (paused counts).
func (n *Node) Running() bool { return n.pid() > 0 }

// Paused reports whether the node is stopped by [Node.Pause].
func (n *Node) Paused() bool { n.mu.Lock(); defer n.mu.Unlock(); return n.paused }

// Isolated reports whether the node is cut off by [Node.Isolate].
func (n *Node) Isolated() bool { n.mu.Lock(); defer n.mu.Unlock(); return n.isolated }

// Left reports whether the node departed with [Node.Leave].
func (n *Node) Left() bool { n.mu.Lock(); defer n.mu.Unlock(); return n.left }

func (n *Node) signal(sig syscall.Signal) error {
	p := n.current()
	if p == nil {
		return fmt.Errorf("harness: %s is not running", n.ID)
	}
	if err := p.Signal(sig); err != nil {
		return fmt.Errorf("harness: %s: %w", n.ID, err)
	}
	return nil
}

// Kill sends SIGKILL and waits for the process to exit.
func (n *Node) Kill() error {
	if err := n.signal(syscall.SIGKILL); err != nil {
		return err
	}
	return n.WaitExit(10 * time.Second)
}

// kill is Kill for cleanup: no error when not running.
func (n *Node) kill() {
	if n.pid() > 0 {
		_ = n.Kill()
	}
}

// Stop sends SIGTERM (drain, hand leadership over, close) and waits up
// to timeout for the process to exit, then kills it and reports that.
func (n *Node) Stop(timeout time.Duration) error {
	p := n.current()
	if p == nil {
		return fmt.Errorf("harness: %s is not running", n.ID)
	}
	return p.Stop(timeout)
}

// WaitExit waits until the process has exited.
func (n *Node) WaitExit(timeout time.Duration) error {
	p := n.current()
	if p == nil {
		return nil
	}
	return p.WaitExit(timeout)
}

// Pause stops the process with SIGSTOP.
func (n *Node) Pause() error {
	if err := n.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	n.mu.Lock()
	n.paused = true
	n.mu.Unlock()
	return nil
}

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() error {
	if err := n.signal(syscall.SIGCONT); err != nil {
		return err
	}
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
	return nil
}

// Restart starts the node's process again with the same flags and data
// directory. The previous process must have exited.
func (n *Node) Restart() error {
	if n.Running() {
		return fmt.Errorf("harness: restart %s: still running", n.ID)
	}
	return n.launch()
}

// Isolate cuts the node's raft traffic (raft and forwarded requests) in
// both directions: connections are closed and new ones refused. Gossip
// is not cut.
func (n *Node) Isolate() {
	n.mu.Lock()
	n.isolated = true
	n.mu.Unlock()
	n.c.nw.isolate(n.ID)
}

// Heal undoes [Node.Isolate] and [Node.Delay].
func (n *Node) Heal() {
	n.c.nw.heal(n.ID)
	n.mu.Lock()
	n.isolated = false
	n.mu.Unlock()
}

// LoseReplies makes every n-th chunk the node sends back on connections
// other nodes opened to its raft port (forwarded commits' replies, among
// others) disappear, cutting that connection: the node applied what it
// was asked and its answer is lost, as when it crashes right after
// answering. 0 stops; Heal stops it too.
func (n *Node) LoseReplies(every int) { n.c.nw.setLoseReplies(n.ID, every) }

// LostReplies counts the reply chunks dropped so far in the cluster.
func (c *Cluster) LostReplies() int64 { return c.nw.lost.Load() }

// Delay holds back every chunk of raft traffic to or from the node by d
// (0 restores).
func (n *Node) Delay(d time.Duration) { n.c.nw.setDelay(n.ID, d) }

// Leave asks the node to leave the cluster for good (POST
// /cluster/leave) and waits for its process to exit, killing it if it
// does not within timeout. The node is no longer one of
// [Cluster.Members].
func (n *Node) Leave(timeout time.Duration) error {
	n.mu.Lock()
	n.left = true
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.AdminURL()+"/cluster/leave", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("harness: %s leave: %w", n.ID, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("harness: %s leave: %s", n.ID, resp.Status)
	}
	if err := n.WaitExit(timeout); err != nil {
		// The node left; whether its process exits on its own is the
		// node's business. Stop it like an operator would.
		return n.Stop(timeout)
	}
	return nil
}

// Status returns the node's GET /cluster/status.
func (n *Node) Status() (nodeproc.Status, error) {
	if n.Paused() {
		return nodeproc.Status{}, fmt.Errorf("%s is paused", n.ID)
	}
	return nodeproc.GetStatus(n.AdminURL())
}

// WaitCaughtUp waits until the node has applied the leader's commit index
// as it was when the wait began.
func (n *Node) WaitCaughtUp(timeout time.Duration) error {
	var target uint64
	return nodeproc.Poll(timeout, func() error {
		if target == 0 {
			_, ls, err := n.c.Leader()
			if err != nil {
				return err
			}
			target = ls.CommitIndex
		}
		s, err := n.Status()
		if err != nil {
			return err
		}
		if s.AppliedIndex < target {
			return fmt.Errorf("%s applied %d < %d", n.ID, s.AppliedIndex, target)
		}
		return nil
	})
}

// Snapshots returns the raft indexes of the snapshots in the node's data
// directory (hashicorp/raft's FileSnapshotStore names them
// term-index-time), newest last.
func (n *Node) Snapshots() []uint64 {
	var out []uint64
	_ = filepath.WalkDir(n.DataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() || d.Name() == "snapshots" {
			return nil
		}
		if filepath.Base(filepath.Dir(path)) != "snapshots" {
			return nil
		}
		parts := strings.Split(d.Name(), "-")
		if len(parts) == 3 && !strings.HasSuffix(d.Name(), ".tmp") {
			if idx, err := strconv.ParseUint(parts[1], 10, 64); err == nil {
				if _, err := os.Stat(filepath.Join(path, "meta.json")); err == nil {
					out = append(out, idx)
				}
			}
		}
		return filepath.SkipDir
	})
	return out
}
