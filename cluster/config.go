package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"time"

	"github.com/raftsession/raftsession/session"
)

// Config configures a [Node]. Start it from [DefaultConfig] and set at
// least NodeID and DataDir; Start validates it and reports every problem
// with a clear error.
type Config struct {
	// NodeID names this node in the raft configuration and in gossip. It
	// must be unique in the cluster and stable across restarts.
	NodeID string

	// DataDir holds the raft log, raft's stable store (raft.db) and
	// snapshots. A node restarted with the same DataDir comes back with its
	// state. Required.
	DataDir string

	// LogStore selects the raft log store of a new data dir: LogStoreWAL
	// ("wal", hashicorp/raft-wal segments under DataDir/wal) or LogStoreBolt
	// ("bolt", raft-boltdb/v2 in raft.db). A data dir keeps the store it was
	// created with: empty means that store for an existing dir and "wal" for
	// a new one, and naming the other store for a dir that holds a log fails
	// with ErrConfig, since switching needs an empty data dir. Default "".
	LogStore string

	// RaftAddr is the TCP address the node listens on for raft and for
	// node-to-node requests (one port, demultiplexed by the first byte).
	// Port 0 picks a free port. Default "127.0.0.1:7000".
	RaftAddr string
	// RaftAdvertise is the address other nodes dial to reach RaftAddr;
	// empty means the address the listener is bound to, which must then be
	// a specific IP.
	RaftAdvertise string

	// GossipAddr is the TCP+UDP address memberlist binds. Port 0 picks a
	// free port. Default "127.0.0.1:7946".
	GossipAddr string
	// GossipAdvertise is what other members use to reach GossipAddr; empty
	// means GossipAddr's bound address.
	GossipAdvertise string

	// Join lists gossip addresses of existing members. They are retried in
	// the background until one answers, so nodes may start in any order.
	Join []string

	// BootstrapExpect is how many voter-eligible nodes must see each other
	// before a brand-new cluster bootstraps (the Consul/Nomad algorithm).
	// 1 with no Join bootstraps alone at once; with Join, a node first
	// reaches a seed, and bootstraps only if nobody it sees has raft state.
	// A node that has raft state never bootstraps again, and a node that
	// sees any member with raft state waits to be added instead. Default 1,
	// so a Config with only NodeID, DataDir and the two addresses runs a
	// working single node.
	BootstrapExpect int

	// JoinOnly makes a node that never bootstraps a cluster: it waits to be
	// added by the leader of an existing one (found through Join).
	JoinOnly bool

	// Voters is how many voters autopilot keeps: stable non-voters are
	// promoted up to this number; every other node stays a non-voting read
	// replica. Default 3.
	Voters int

	// NonVoter marks a node that is never promoted (a pure read replica).
	NonVoter bool

	// ClusterName separates clusters that share a network: it is the
	// gossip label and members with another name are ignored. Default
	// "raftsession".
	ClusterName string

	// GossipKeys encrypts gossip (AES, 16, 24 or 32 bytes each). The first
	// key encrypts; all of them decrypt, so keys can be rotated. Empty
	// means plaintext gossip.
	GossipKeys [][]byte

	// TLS, when set, requires mutual TLS on the raft port: every peer must
	// present a certificate from TLS.CA whose name matches
	// TLS.AllowedNames. It takes precedence over ClusterKey for the raft
	// port; each node's certificate must then carry its NodeID as Common
	// Name, since node-to-node requests are authorized by that identity.
	TLS *TLSConfig

	// ClusterKey is the cluster's shared secret: 32 random bytes, the
	// same on every node (see [GenerateClusterKey] and [ParseClusterKey]).
	// Everything node-to-node is derived from it with HKDF under separate
	// labels: the gossip keyring (unless GossipKeys is set), the mutual
	// TLS 1.3 of the raft port (unless TLS is set: a CA derived from the
	// key issues this node a certificate for NodeID at start) and the
	// encryption of the replicated cookie-signing keyring. Whoever holds
	// the key is a member of the cluster: keep it as secret as a
	// database password.
	ClusterKey []byte

	// AcceptClusterKeys are further cluster keys that peers may use, for a
	// rolling change of the key: first every node accepts the new key,
	// then every node uses it (accepting the old one), then the old one
	// is dropped. ClusterKey is the one this node uses.
	AcceptClusterKeys [][]byte

	// Insecure allows raft and gossip addresses beyond loopback with
	// neither ClusterKey nor TLS plus GossipKeys. Anyone who reaches such
	// a node can then read and write every session; Start logs a warning
	// and Status reports it.
	Insecure bool

	// MaxSessions caps the number of sessions in the cluster, and MaxBytes
	// the sum of their keys and values; a create beyond either is refused
	// with session.ErrQuota while existing sessions keep working. They are
	// enforced inside the replicated state machine, so every node must use
	// the same values. Zero means no cap.
	MaxSessions int
	MaxBytes    int64

	// MemoryLimit sets the Go runtime's memory policy for the process,
	// whose heap is mostly this node's sessions. Zero (the default)
	// chooses it: GOGC stays 100 while the live heap is under 64 MiB and
	// then falls (to 10 from 640 MiB), so the heap peaks 64 MiB or 10%
	// above the live sessions instead of twice them; and when the process
	// runs under a cgroup memory limit (a container), 90% of that limit
	// becomes the runtime's soft memory limit (runtime/debug.SetMemoryLimit).
	// A positive value is the soft memory limit in bytes, with the same
	// GOGC policy. Negative leaves the runtime alone: set it when the
	// application owns its GC settings. The GOGC and GOMEMLIMIT environment
	// variables also leave the runtime alone when MemoryLimit is zero. The
	// settings are process-wide: with several nodes in one process the
	// first node's policy holds until the last node closes, which restores
	// the settings it found.
	MemoryLimit int64

	// Limits bound one session's size; every node must use the same limits,
	// since they are enforced inside the replicated state machine.
	Limits session.Limits

	// Raft tunes the raft protocol and log compaction; the zero value takes
	// the defaults, which suit a LAN.
	Raft RaftConfig

	// ForwardHold is how long a commit that finds no leader keeps trying
	// (a leader election usually ends well within it) before it fails with
	// session.ErrNoLeader. Default 2s.
	ForwardHold time.Duration

	// CommitTimeout bounds a commit whose context has no deadline.
	// Default 5s.
	CommitTimeout time.Duration

	// GroupCommitWait bounds how long the leader holds commits back so
	// that the commits it expects share their log entry. After each entry
	// the leader knows how many commands that entry saw (carried, or
	// queued while it was in flight); while fewer are queued, the next
	// entry waits for more, until the last entry's commit time (and no
	// more than GroupCommitWait) has passed since it was done. Clients
	// that commit again soon after their answer then share entries
	// instead of splitting into two groups that take turns, which halves
	// the entries (and fsyncs) for the same commits. A hold that runs out
	// before half of the commands it waited for came makes the next holds
	// rarer (1, 2, 4 ... 64 are skipped), and a hold adds at most one
	// commit time (capped at GroupCommitWait) to a commit; a command whose
	// deadline is near is not held. Default 2ms; negative holds nothing
	// back.
	GroupCommitWait time.Duration

	// ReadWait bounds how long a read-your-writes read waits for the local
	// replica to catch up before it reads on the leader. Default 250ms. A
	// replica that applies nothing for a few milliseconds is waiting for
	// an idle leader's next AppendEntries (after raft's CommitTimeout) to
	// learn the commit, not catching up: such a read goes to the leader
	// without waiting out ReadWait.
	ReadWait time.Duration

	// MaxStale is how long a follower may go without hearing from the
	// leader and still answer read-your-writes reads from its own replica;
	// past it, reads go to the leader. It also bounds how long a logout
	// (destroy, rename, destroy-owner) waits for every replica to apply
	// it: the commit returns once each replica has applied it or has been
	// out of contact long enough to stop serving, so an old cookie cannot
	// find a logged-out session on a lagging replica. Default 500ms.
	MaxStale time.Duration

	// ExpireInterval is how often the leader proposes removal of expired
	// sessions. Default 30s.
	ExpireInterval time.Duration

	// ReconcileInterval is how often the leader compares gossip membership
	// with the raft configuration to repair missed events. Default 5s.
	ReconcileInterval time.Duration

	// PromoteAfter is how long a non-voter must be healthy before autopilot
	// promotes it. Default 5s.
	PromoteAfter time.Duration

	// DeadServerTimeout is how long a server must be both failed in gossip
	// and unhealthy in raft's view before autopilot removes it from the
	// configuration (never below quorum). Default 2m.
	DeadServerTimeout time.Duration

	// Logger receives the node's logs, including raft's and memberlist's.
	// Default slog.Default().
	Logger *slog.Logger
}

// RaftConfig tunes raft. Zero fields take the defaults.
type RaftConfig struct {
	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout tune raft.
	// The defaults (400ms, 400ms, 300ms) suit a LAN: a follower notices a
	// dead leader within 400-800ms and an election usually finishes in one
	// round, so writes resume within about one second of a leader crash.
	// A node that is the only voter of its configuration (a single node)
	// does not wait for a leader when it starts: it campaigns at once.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration

	// SnapshotInterval, SnapshotThreshold and TrailingLogs control log
	// compaction: every SnapshotInterval the node snapshots if more than
	// SnapshotThreshold entries were appended since the last one, keeping
	// TrailingLogs entries for slow followers. Defaults 2m, 8192, 10240.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
}

// TLSConfig is mutual TLS for the raft port.
type TLSConfig struct {
	// Certificate is this node's certificate, presented both as server and
	// as client.
	Certificate tls.Certificate
	// CA verifies peers' certificates.
	CA *x509.CertPool
	// AllowedNames are path.Match patterns; a peer certificate is accepted
	// when its Common Name or one of its DNS names matches one of them.
	// Empty accepts any certificate signed by CA.
	AllowedNames []string
}

// LoadTLS reads a PEM certificate, key and CA bundle from files.
func LoadTLS(certFile, keyFile, caFile string, allowedNames ...string) (*TLSConfig, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: load TLS key pair: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: read TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster: TLS CA file %s holds no PEM certificate", caFile)
	}
	return &TLSConfig{Certificate: cert, CA: pool, AllowedNames: allowedNames}, nil
}

// DefaultConfig returns a Config with every default filled in. NodeID is
// the host name; DataDir must still be set.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NodeID:          host,
		RaftAddr:        "127.0.0.1:7000",
		GossipAddr:      "127.0.0.1:7946",
		BootstrapExpect: 1,
		Voters:          3,
		ClusterName:     "raftsession",
		Raft: RaftConfig{
			HeartbeatTimeout:   400 * time.Millisecond,
			ElectionTimeout:    400 * time.Millisecond,
			LeaderLeaseTimeout: 300 * time.Millisecond,
			SnapshotInterval:   2 * time.Minute,
			SnapshotThreshold:  8192,
			TrailingLogs:       10240,
		},
		ForwardHold:       2 * time.Second,
		CommitTimeout:     5 * time.Second,
		GroupCommitWait:   2 * time.Millisecond,
		ReadWait:          250 * time.Millisecond,
		MaxStale:          500 * time.Millisecond,
		ExpireInterval:    30 * time.Second,
		ReconcileInterval: 5 * time.Second,
		PromoteAfter:      5 * time.Second,
		DeadServerTimeout: 2 * time.Minute,
	}
}

// withDefaults fills zero durations and counts from DefaultConfig, so a
// Config literal that sets only what it cares about works too.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	if c.RaftAddr == "" {
		c.RaftAddr = d.RaftAddr
	}
	if c.GossipAddr == "" {
		c.GossipAddr = d.GossipAddr
	}
	if c.Voters == 0 {
		c.Voters = d.Voters
	}
	if c.ClusterName == "" {
		c.ClusterName = d.ClusterName
	}
	if c.BootstrapExpect == 0 {
		c.BootstrapExpect = d.BootstrapExpect
	}
	if c.Raft.SnapshotThreshold == 0 {
		c.Raft.SnapshotThreshold = d.Raft.SnapshotThreshold
	}
	if c.Raft.TrailingLogs == 0 {
		c.Raft.TrailingLogs = d.Raft.TrailingLogs
	}
	setDur(&c.Raft.HeartbeatTimeout, d.Raft.HeartbeatTimeout)
	setDur(&c.Raft.ElectionTimeout, d.Raft.ElectionTimeout)
	setDur(&c.Raft.LeaderLeaseTimeout, d.Raft.LeaderLeaseTimeout)
	setDur(&c.Raft.SnapshotInterval, d.Raft.SnapshotInterval)
	setDur(&c.ForwardHold, d.ForwardHold)
	setDur(&c.CommitTimeout, d.CommitTimeout)
	setDur(&c.GroupCommitWait, d.GroupCommitWait)
	setDur(&c.ReadWait, d.ReadWait)
	setDur(&c.MaxStale, d.MaxStale)
	setDur(&c.ExpireInterval, d.ExpireInterval)
	setDur(&c.ReconcileInterval, d.ReconcileInterval)
	setDur(&c.PromoteAfter, d.PromoteAfter)
	setDur(&c.DeadServerTimeout, d.DeadServerTimeout)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Limits = c.Limits.WithDefaults()
	return c
}

// ErrConfig is wrapped by every configuration error from Start.
var ErrConfig = errors.New("cluster: invalid config")

// validate reports every problem with c, always in the same order.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
	}
	c.validateIdentity(bad)
	c.validateSecurity(bad)
	c.validateTiming(bad)
	return errors.Join(errs...)
}

type badFunc func(format string, args ...any)

func (c *Config) validateIdentity(bad badFunc) {
	if c.NodeID == "" {
		bad("NodeID is empty")
	} else if len(c.NodeID) > 128 {
		bad("NodeID is longer than 128 bytes")
	}
	if c.DataDir == "" {
		bad("DataDir is empty")
	}
	if c.LogStore != "" && c.LogStore != LogStoreWAL && c.LogStore != LogStoreBolt {
		bad("LogStore %q: want %q or %q", c.LogStore, LogStoreWAL, LogStoreBolt)
	}
	for _, a := range c.addresses() {
		if a.value == "" && a.optional {
			continue
		}
		if _, _, err := net.SplitHostPort(a.value); err != nil {
			bad("%s %q: %v", a.name, a.value, err)
		}
	}
	if c.BootstrapExpect < 0 || c.BootstrapExpect > 100 {
		bad("BootstrapExpect %d is not between 1 and 100 (JoinOnly makes a node that never bootstraps)", c.BootstrapExpect)
	}
	if c.Voters < 1 {
		bad("Voters %d is less than 1", c.Voters)
	}
	if len(c.ClusterName) > 200 {
		bad("ClusterName is longer than 200 bytes")
	}
	if c.MaxSessions < 0 || c.MaxBytes < 0 {
		bad("MaxSessions and MaxBytes must not be negative")
	}
}

type namedAddr struct {
	name, value string
	optional    bool
}

func (c *Config) addresses() []namedAddr {
	return []namedAddr{{"RaftAddr", c.RaftAddr, false}, {"RaftAdvertise", c.RaftAdvertise, true},
		{"GossipAddr", c.GossipAddr, false}, {"GossipAdvertise", c.GossipAdvertise, true}}
}

func (c *Config) validateSecurity(bad badFunc) {
	for i, k := range c.clusterKeys() {
		if len(k) != ClusterKeySize {
			bad("cluster key %d is %d bytes; want %d (make one with: head -c 32 /dev/urandom | base64)", i, len(k), ClusterKeySize)
		}
	}
	if len(c.ClusterKey) == 0 && len(c.AcceptClusterKeys) > 0 {
		bad("AcceptClusterKeys is set without ClusterKey")
	}
	for i, k := range c.GossipKeys {
		if n := len(k); n != 16 && n != 24 && n != 32 {
			bad("gossip key %d is %d bytes; want 16, 24 or 32", i, n)
		}
	}
	if c.TLS != nil {
		if c.TLS.CA == nil {
			bad("TLS.CA is nil")
		}
		if len(c.TLS.Certificate.Certificate) == 0 {
			bad("TLS.Certificate is empty")
		}
		for _, p := range c.TLS.AllowedNames {
			if _, err := path.Match(p, ""); err != nil {
				bad("TLS allowed name %q: %v", p, err)
			}
		}
	}
	if c.secured() || c.Insecure {
		return
	}
	for _, a := range c.addresses() {
		if a.value != "" && !loopbackHost(a.value) {
			bad("%s %s is not a loopback address, and the cluster is not secured: set a cluster key "+
				"(ClusterKey; node -gen-cluster-key makes one) or TLS and GossipKeys, or set Insecure to run "+
				"open to anyone who can reach the port", a.name, a.value)
			return
		}
	}
}

func (c *Config) validateTiming(bad badFunc) {
	r := c.Raft
	if c.MaxStale < r.LeaderLeaseTimeout {
		// A leader cut off from its quorum serves reads until its lease
		// runs out; a replica must not be trusted for less than that.
		bad("MaxStale %v is shorter than Raft.LeaderLeaseTimeout %v", c.MaxStale, r.LeaderLeaseTimeout)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Raft.HeartbeatTimeout", r.HeartbeatTimeout}, {"Raft.ElectionTimeout", r.ElectionTimeout},
		{"Raft.LeaderLeaseTimeout", r.LeaderLeaseTimeout}, {"Raft.SnapshotInterval", r.SnapshotInterval},
		{"ForwardHold", c.ForwardHold}, {"CommitTimeout", c.CommitTimeout}, {"ReadWait", c.ReadWait},
		{"MaxStale", c.MaxStale}, {"ExpireInterval", c.ExpireInterval}, {"ReconcileInterval", c.ReconcileInterval},
		{"PromoteAfter", c.PromoteAfter}, {"DeadServerTimeout", c.DeadServerTimeout}} {
		if d.v < 0 {
			bad("%s %v is negative", d.name, d.v)
		}
	}
	if r.LeaderLeaseTimeout > r.HeartbeatTimeout {
		bad("Raft.LeaderLeaseTimeout %v exceeds Raft.HeartbeatTimeout %v", r.LeaderLeaseTimeout, r.HeartbeatTimeout)
	}
}

// clusterKeys is ClusterKey followed by AcceptClusterKeys.
func (c *Config) clusterKeys() [][]byte {
	if len(c.ClusterKey) == 0 {
		return nil
	}
	return append([][]byte{c.ClusterKey}, c.AcceptClusterKeys...)
}

// secured reports whether both the raft port and gossip are
// authenticated: by a cluster key, or by explicit TLS and gossip keys.
func (c *Config) secured() bool {
	return len(c.ClusterKey) > 0 || c.TLS != nil && len(c.GossipKeys) > 0
}

// portTLS is the mutual TLS of the raft port: explicit TLS, else derived
// from the cluster keys, else none.
func (c *Config) portTLS(now time.Time) (*TLSConfig, error) {
	if c.TLS != nil {
		return c.TLS, nil
	}
	if len(c.ClusterKey) == 0 {
		return nil, nil
	}
	return keyTLS(c.NodeID, c.clusterKeys(), now)
}

// gossipKeys is the memberlist keyring: explicit GossipKeys, else derived
// from the cluster keys, else none (plaintext).
func (c *Config) gossipKeys() [][]byte {
	if len(c.GossipKeys) > 0 {
		return c.GossipKeys
	}
	return gossipKeyring(c.clusterKeys())
}

// loopbackHost reports whether a host:port names a loopback address. An
// empty host means every interface, and a name other than localhost may
// resolve anywhere: neither is loopback.
func loopbackHost(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
