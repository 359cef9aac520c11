package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/session"
)

// ErrLastVoter is returned by Leave on the only voter of a cluster: its
// leaving would end the cluster.
var ErrLastVoter = errors.New("cluster: the last voter cannot leave")

// ErrDataDirInUse is returned by Start when another process (or another
// Node in this process) holds the data directory.
var ErrDataDirInUse = errors.New("cluster: data directory is in use by another node")

// Node is one member of a raftsession cluster: a raft server with its
// replicated session state, a gossip member, and the node-to-node port.
type Node struct {
	cfg      Config
	log      *slog.Logger
	fsm      *fsm.FSM
	raft     *raft.Raft
	trans    *raft.NetworkTransport
	bolt     *raftboltdb.BoltStore
	wal      *walLog // nil when the log lives in bolt
	mux      *mux
	client   *forwardClient
	server   *forwardServer
	ml       *memberlist.Memberlist
	pilot    *autopilot.Autopilot
	store    *Store
	raftAddr string
	// gossipAdv is the advertised gossip address, set once gossip starts.
	gossipAdv string
	reads     *readIndexer
	batch     *commitBatcher // coalesces this leader's commits
	requests  *requestIDs    // numbers this node's commits
	// keyCipher seals the signing keyring; nil without a cluster key.
	keyCipher *keyringCipher
	metrics   Metrics
	hasState  atomic.Bool
	// lastCommitted is the highest index committed through this node.
	lastCommitted atomic.Uint64
	// fence is the lowest index this replica may serve reads at: raised
	// when a session ID is ended (see awaitReplicas).
	fence atomic.Uint64
	// fenceUntil is when fence stops holding (unix nanoseconds).
	fenceUntil atomic.Int64
	// serving is set once Start has built everything node-to-node
	// requests touch.
	serving atomic.Bool
	// joined is set once a Join seed answered.
	joined atomic.Bool
	// leaving is set by Leave, and announced through gossip meta.
	leaving atomic.Bool
	// readyTerm is the term whose no-op this leader has applied (see
	// leadDuties); reads trust the commit index only in that term.
	readyTerm atomic.Uint64
	// applyMu guards closing; applies counts raft.Apply calls in flight.
	// Shutdown waits for them while raft still runs, because raft never
	// answers a future still queued when it shuts down.
	applyMu    sync.Mutex
	closing    bool
	applies    sync.WaitGroup
	leaderMu   sync.Mutex
	leaderSig  chan struct{} // closed and replaced on every leader change
	poke       chan struct{} // membership changed: reconcile soon
	membersMu  sync.Mutex
	members    map[string]memberStatus
	pilotMu    sync.Mutex
	pilotState *autopilot.State // latest, on the leader

	// releaseMemory releases the process's memory policy (memory.go).
	releaseMemory func()

	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Start opens the data directory, starts raft, the node-to-node port and
// gossip, and bootstraps or joins as Config says. It returns once the node
// is running; the cluster may still be forming (see [Node.WaitLeader]).
// ctx bounds only the start itself.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), leaderSig: make(chan struct{}),
		poke: make(chan struct{}, 1), members: map[string]memberStatus{}}
	var err error
	if n.keyCipher, err = newKeyringCipher(cfg.clusterKeys()); err != nil {
		return nil, err
	}
	if n.requests, err = newRequestIDs(cfg.NodeID); err != nil {
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.releaseMemory = acquireMemoryPolicy(cfg.MemoryLimit, n.log)
	n.batch = newCommitBatcher(n.raftApply, n.cfg.GroupCommitWait, &n.metrics)
	ok := false
	defer func() {
		if !ok {
			n.shutdown()
		}
	}()
	if err := n.openRaft(); err != nil {
		return nil, err
	}
	if err := n.startGossip(); err != nil {
		return nil, err
	}
	n.store = &Store{n: n}
	n.reads = newReadIndexer(n)
	n.startLoops()
	n.serving.Store(true)
	ok = true
	n.log.Info("node started", "raft", n.raftAddr, "gossip", n.gossipAdv, "existing_state", n.hasState.Load())
	return n, nil
}

// openRaft opens the data directory's stores, the node port and raft,
// and bootstraps a lone node that was told to.
func (n *Node) openRaft() error {
	cfg := n.cfg
	logs, snaps, err := n.openStores()
	if err != nil {
		return err
	}
	if err := n.openPort(); err != nil {
		return err
	}
	hasState, err := raft.HasExistingState(logs, n.bolt, snaps)
	if err != nil {
		return fmt.Errorf("cluster: read raft state: %w", err)
	}
	n.hasState.Store(hasState)
	n.fsm = fsm.New(fsm.Config{Limits: cfg.Limits, MaxSessions: cfg.MaxSessions, MaxBytes: cfg.MaxBytes})
	rc := n.raftConfig()
	n.raft, err = raft.NewRaft(rc, n.fsm, logs, n.bolt, snaps, n.trans)
	if err != nil {
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	if !hasState && !cfg.JoinOnly && cfg.BootstrapExpect == 1 && len(cfg.Join) == 0 {
		if err := n.bootstrap([]raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(n.raftAddr)}}); err != nil {
			return err
		}
	}
	if hasState {
		n.campaignIfAlone()
	}
	return nil
}

func (n *Node) bootstrap(servers []raft.Server) error {
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	n.hasState.Store(true)
	n.log.Info("bootstrapped cluster", "servers", len(servers))
	n.campaignIfAlone()
	return nil
}

// clusterNameKey is stored in raft's stable store so a data directory that
// belongs to another cluster is refused instead of silently mixed in.
var clusterNameKey = []byte("raftsession_cluster_name")

func checkClusterName(s raft.StableStore, name string) error {
	have, err := s.Get(clusterNameKey)
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return fmt.Errorf("cluster: read data dir identity: %w", err)
	}
	if len(have) == 0 {
		if err := s.Set(clusterNameKey, []byte(name)); err != nil {
			return fmt.Errorf("cluster: write data dir identity: %w", err)
		}
		return nil
	}
	if string(have) != name {
		return fmt.Errorf("%w: data dir belongs to cluster %q, not %q", ErrConfig, have, name)
	}
	return nil
}

// restrictDataDir makes the data directory and everything in it
// accessible to this user only (0700 directories, 0600 files), also when
// it existed before with looser modes: it holds every session.
func restrictDataDir(dir string) error {
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&os.ModeSymlink != 0 {
			return nil
		}
		mode := os.FileMode(0o600)
		if d.IsDir() {
			mode = 0o700
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode().Perm() == mode {
			return nil
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		return fmt.Errorf("cluster: restrict data dir permissions: %w", err)
	}
	return nil
}

func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("cluster: data dir %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func advertiseAddr(adv string, bound net.Addr) (net.Addr, error) {
	if adv != "" {
		a, err := net.ResolveTCPAddr("tcp", adv)
		if err != nil {
			return nil, fmt.Errorf("%w: advertise address %q: %v", ErrConfig, adv, err)
		}
		if a.IP == nil || a.IP.IsUnspecified() {
			return nil, fmt.Errorf("%w: advertise address %q needs a specific IP", ErrConfig, adv)
		}
		return a, nil
	}
	ta, ok := bound.(*net.TCPAddr)
	if !ok || ta.IP.IsUnspecified() {
		return nil, fmt.Errorf("%w: listening on %s needs an advertise address", ErrConfig, bound)
	}
	return ta, nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func (n *Node) startLoops() {
	obs := make(chan raft.Observation, 16)
	observer := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(observer)
	n.wg.Add(4)
	go func() {
		defer n.wg.Done()
		defer n.raft.DeregisterObserver(observer)
		for {
			select {
			case <-obs:
				n.signalLeaderChange()
			case <-n.ctx.Done():
				return
			}
		}
	}()
	go n.leaderLoop()
	go n.joinLoop()
	go n.bootstrapLoop()
}

func (n *Node) signalLeaderChange() {
	n.leaderMu.Lock()
	close(n.leaderSig)
	n.leaderSig = make(chan struct{})
	n.leaderMu.Unlock()
}

// leaderChanged returns a channel closed at the next leader change.
func (n *Node) leaderChanged() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderSig
}

// leaderLoop runs the leader's duties while this node leads: autopilot,
// membership reconciliation and periodic expiry.
func (n *Node) leaderLoop() {
	defer n.wg.Done()
	var duties *leaderDuties
	defer func() { duties.stop() }()
	for {
		select {
		case isLeader := <-n.raft.LeaderCh():
			duties.stop()
			duties = nil
			if isLeader {
				duties = n.startDuties()
			}
		case <-n.ctx.Done():
			return
		}
	}
}

// leaderDuties is one term's worth of leader work, stopped when
// leadership ends.
type leaderDuties struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (n *Node) startDuties() *leaderDuties {
	ctx, cancel := context.WithCancel(n.ctx)
	d := &leaderDuties{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		n.leadDuties(ctx)
	}()
	return d
}

func (d *leaderDuties) stop() {
	if d != nil {
		d.cancel()
		<-d.done
	}
}

func (n *Node) leadDuties(ctx context.Context) {
	n.log.Info("became leader")
	// Until an entry of this term is applied, the commit index may be
	// behind writes the previous leader acknowledged. A no-op command (not
	// raft's own no-op, which never reaches the FSM) also brings the FSM's
	// applied index up to the commit index, so read-index waits end.
	term := n.raft.CurrentTerm()
	for ctx.Err() == nil {
		_, err := n.raftApply(fsm.EncodeNoop(), n.cfg.CommitTimeout)
		if err == nil {
			n.readyTerm.Store(term)
			break
		}
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
			errors.Is(err, raft.ErrRaftShutdown) || errors.Is(err, session.ErrClosed) ||
			errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer n.startSigningKeyCheck(ctx)()
	n.pilot.Start(ctx)
	defer func() { <-n.pilot.Stop() }()
	expire := time.NewTicker(n.cfg.ExpireInterval)
	defer expire.Stop()
	reconcile := time.NewTicker(n.cfg.ReconcileInterval)
	defer reconcile.Stop()
	n.reconcile()
	n.resealKeyring()
	for {
		select {
		case <-ctx.Done():
			return
		case <-expire.C:
			n.proposeExpire()
		case <-reconcile.C:
			n.reconcile()
			n.resealKeyring()
		case <-n.poke:
			n.reconcile()
		}
	}
}

func (n *Node) proposeExpire() {
	resp, err := n.raftApply(fsm.EncodeExpire(time.Now()), n.cfg.CommitTimeout)
	if err != nil {
		n.log.Debug("expire not committed", "err", err)
		return
	}
	if r, ok := resp.(*fsm.Result); ok && r.Destroyed > 0 {
		n.log.Debug("expired sessions", "count", r.Destroyed)
	}
}

// enterRaft admits a raft call whose future raft answers only while it
// runs (Apply, VerifyLeader, configuration changes). It returns false once
// shutdown began; shutdown waits for admitted calls before stopping raft.
// Every admitted call must be followed by leaveRaft.
func (n *Node) enterRaft() bool {
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	if n.closing {
		return false
	}
	n.applies.Add(1)
	return true
}

func (n *Node) leaveRaft() { n.applies.Done() }

// raftApply is the only way the node calls raft.Apply.
func (n *Node) raftApply(cmd []byte, timeout time.Duration) (any, error) {
	if !n.enterRaft() {
		return nil, session.ErrClosed
	}
	defer n.leaveRaft()
	f := n.raft.Apply(cmd, timeout)
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Response(), nil
}

// Close stops the node for a restart: a leader first hands leadership to
// another voter so writes resume quickly, then raft, gossip and the port
// stop. The node stays in the raft configuration and comes back with its
// data directory. Close is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		if n.raft != nil && n.raft.State() == raft.Leader && n.voters() > 1 {
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Warn("leadership transfer before close failed", "err", err)
			}
		}
		n.closeErr = n.shutdown()
	})
	return n.closeErr
}

func (n *Node) shutdown() error {
	var errs []error
	n.applyMu.Lock()
	n.closing = true
	n.applyMu.Unlock()
	if n.cancel != nil {
		n.cancel()
	}
	if n.server != nil {
		n.server.close()
	}
	n.applies.Wait()
	if n.reads != nil {
		n.reads.close()
	}
	if n.raft != nil {
		n.snapshotBeforeClose()
		errs = append(errs, n.raft.Shutdown().Error())
	}
	n.wg.Wait()
	if n.ml != nil {
		// Without a graceful Leave (restart semantics) peers see this node
		// as failed, not departed, and keep it in the configuration.
		errs = append(errs, n.ml.Shutdown())
	}
	if n.client != nil {
		n.client.close()
	}
	if n.trans != nil {
		errs = append(errs, n.trans.Close())
	}
	if n.mux != nil {
		n.mux.close()
	}
	if n.wal != nil {
		errs = append(errs, n.wal.Close())
	}
	if n.bolt != nil {
		errs = append(errs, n.bolt.Close())
	}
	if n.releaseMemory != nil {
		n.releaseMemory()
	}
	return errors.Join(errs...)
}

func (n *Node) voters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			c++
		}
	}
	return c
}

// Leave removes the node from the cluster for good (scale-in): a leader
// hands leadership over, the node is removed from the raft configuration,
// leaves gossip, and stops. Its data directory is then stale.
//
// A node that cannot leave (the last voter) gets ErrLastVoter and keeps
// running untouched.
func (n *Node) Leave(ctx context.Context) error {
	if n.isVoter(n.cfg.NodeID) && n.voters() <= 1 {
		return ErrLastVoter
	}
	if n.raft.State() == raft.Leader && n.voters() > 1 {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("leadership transfer before leave failed", "err", err)
		}
	}
	// Announce the leave, then leave gossip: once members see this node
	// as leaving, the leader's reconcile no longer adds it back after it
	// is removed, and its departure reads as "left", not "failed".
	n.leaving.Store(true)
	if n.ml != nil {
		n.updateGossipMeta()
		if err := n.ml.Leave(2 * time.Second); err != nil {
			n.log.Warn("gossip leave failed", "err", err)
		}
	}
	err := n.removeSelf(ctx)
	if err != nil {
		n.log.Warn("could not leave the raft configuration", "err", err)
	}
	return errors.Join(err, n.Close())
}

func (n *Node) removeSelf(ctx context.Context) error {
	id := n.cfg.NodeID
	for {
		if !n.inConfig(id) {
			return nil
		}
		if n.raft.State() == raft.Leader {
			if n.voters() <= 1 && n.isVoter(id) {
				return ErrLastVoter
			}
			if err := n.raft.RemoveServer(raft.ServerID(id), 0, 0).Error(); err == nil {
				return nil
			}
		} else if addr, _ := n.raft.LeaderWithID(); addr != "" {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			f, err := n.client.call(rctx, string(addr), reqRemoveServer, []byte(id), nil)
			cancel()
			if err == nil && f.kind == statusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.leaderChanged():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (n *Node) inConfig(id string) bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

func (n *Node) isVoter(id string) bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}

// Store returns the replicated session store of this node.
func (n *Node) Store() *Store { return n.store }

// WaitLeader blocks until the node knows a leader, or ctx ends.
func (n *Node) WaitLeader(ctx context.Context) error {
	for {
		ch := n.leaderChanged()
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// RaftAddr is the advertised address of the node's raft port.
func (n *Node) RaftAddr() string { return n.raftAddr }

// ID is the node's ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// IsLeader reports whether this node is the raft leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }
