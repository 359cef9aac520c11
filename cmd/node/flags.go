package main

import (
	"cmp"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

// envPrefix starts the environment variable of every flag: -raft-advertise
// is also RAFTSESSION_RAFT_ADVERTISE. A flag on the command line wins over
// its variable.
const envPrefix = "RAFTSESSION_"

// Config is what the flags say. [Main.ParseFlags] fills it in and validates
// it; tests may also set it directly before [Main.Run].
type Config struct {
	ID      string // -id: node ID, default the host name
	DataDir string // -data: default ./raftsession-data/<id>
	// LogStore is -log-store: wal or bolt for a new data dir; empty keeps
	// an existing dir's store (raft-wal for a new one).
	LogStore string

	HTTPAddr  string // -http: the demo app, default 127.0.0.1:8080
	AdminAddr string // -admin: status, metrics and management, default 127.0.0.1:8081

	RaftAddr        string   // -raft: raft and forwarded requests, default 127.0.0.1:7000
	RaftAdvertise   string   // -raft-advertise: default the bound -raft address
	GossipAddr      string   // -gossip: memberlist TCP+UDP, default 127.0.0.1:7946
	GossipAdvertise string   // -gossip-advertise: default the bound -gossip address
	Join            []string // -join: gossip addresses of members, comma-separated
	BootstrapExpect int      // -bootstrap-expect: default 1
	Voters          int      // -voters: default 3
	ClusterName     string   // -cluster-name: default "raftsession"

	Secret    []byte // -secret: fixed cookie secret (at least 32 bytes); nil means replicated keys
	GossipKey []byte // -gossip-key: base64 of 16, 24 or 32 bytes; nil means plaintext gossip

	TLSCert, TLSKey, TLSCA string // -tls-cert, -tls-key, -tls-ca: mutual TLS on the raft port

	// ClusterKey is the key this node uses (-cluster-key or the first of
	// -cluster-key-file); AcceptClusterKeys are the others it also
	// accepts during a rolling change. Nil: no cluster key.
	ClusterKey        Secret
	AcceptClusterKeys []Secret
	Insecure          bool // -insecure-cluster: allow cluster addresses beyond loopback without a key

	AdminToken        Secret   // -admin-token: Bearer token for admin POSTs; nil: none
	AdminAllowedHosts []string // -admin-allowed-hosts: extra Host names the admin listener answers

	HTTPLimits HTTPLimits // -http-*-timeout, -http-max-header-bytes, -http-max-body-bytes: both listeners

	MaxSessions int   // -max-sessions: cluster-wide cap, 0 none
	MaxBytes    int64 // -max-bytes: cluster-wide cap on session keys+values, 0 none

	// MemoryLimit is -memory-limit as cluster.Config.MemoryLimit takes
	// it: 0 for auto, -1 for off, else the soft memory limit in bytes.
	MemoryLimit int64

	CookieName   string // -cookie-name: default "sid"
	CookieSecure bool   // -cookie-secure: always mark the cookie Secure
	TrustProxy   bool   // -trust-proxy: X-Forwarded-Proto: https marks the cookie Secure

	Consistency      session.Level // -consistency: local, ryw or linearizable
	LeaveOnTerminate bool          // -leave-on-terminate

	SnapshotThreshold uint64        // -snapshot-threshold
	TrailingLogs      uint64        // -trailing-logs
	SnapshotInterval  time.Duration // -snapshot-interval
	ExpireInterval    time.Duration // -expire-interval
	GroupCommitWait   time.Duration // -group-commit-wait: 0 takes the cluster's default; negative (the flag's 0) is off
	ShutdownTimeout   time.Duration // -shutdown-timeout: bound on draining requests

	LogLevel slog.Level // -log-level: debug, info, warn or error

	// Warnings are problems that do not stop the node, found while
	// parsing (a key file others can read); Run logs them.
	Warnings []string
}

// HTTPLimits bound what one client may cost the demo and admin listeners
// (see net/http.Server). The flags' defaults are DefaultHTTPLimits.
type HTTPLimits struct {
	ReadHeaderTimeout time.Duration // -http-read-header-timeout: default 5s
	ReadTimeout       time.Duration // -http-read-timeout: whole request, body included; default 30s
	WriteTimeout      time.Duration // -http-write-timeout: default 30s
	IdleTimeout       time.Duration // -http-idle-timeout: keep-alive; default 2m
	MaxHeaderBytes    int           // -http-max-header-bytes: default 64 KiB
	MaxBodyBytes      int64         // -http-max-body-bytes: default 1 MiB
}

// DefaultHTTPLimits are the limits when no flag says otherwise: a slow
// client (headers or body) is cut off within seconds, while every request
// the demo and admin listeners serve fits comfortably.
func DefaultHTTPLimits() HTTPLimits {
	return HTTPLimits{ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, MaxBodyBytes: 1 << 20}
}

const usageHead = `raftsession node: one app instance with an embedded raft node that replicates
HTTP sessions, serving the demo app and an admin listener.

With no flags it is a working single-node cluster on 127.0.0.1.
Three local nodes:
  node -id n1 -http 127.0.0.1:8091 -admin 127.0.0.1:8191 -raft 127.0.0.1:7001 -gossip 127.0.0.1:7901 -bootstrap-expect 3
  node -id n2 -http 127.0.0.1:8092 -admin 127.0.0.1:8192 -raft 127.0.0.1:7002 -gossip 127.0.0.1:7902 -bootstrap-expect 3 -join 127.0.0.1:7901
  node -id n3 -http 127.0.0.1:8093 -admin 127.0.0.1:8193 -raft 127.0.0.1:7003 -gossip 127.0.0.1:7903 -bootstrap-expect 3 -join 127.0.0.1:7901

Every flag can also be set by an environment variable RAFTSESSION_<FLAG>,
upper case with dashes as underscores (-raft-advertise: RAFTSESSION_RAFT_ADVERTISE);
the command line wins. (-gen-cluster-key has no variable.)

Across hosts, every node needs the same cluster key; it authenticates and
encrypts all node-to-node traffic, and a node whose raft or gossip address
is not loopback refuses to start without one (unless -insecure-cluster):
  node -gen-cluster-key                     # once; keep it secret
  RAFTSESSION_CLUSTER_KEY=<key> node ...    # the same key on every node

Admin listener: GET /cluster/status, GET /metrics, GET /healthz, GET /readyz,
POST /cluster/leave, POST /cluster/rotate-key. POSTs refuse cross-site
requests and form or text bodies; with -admin-token they need the header
"Authorization: Bearer <token>", and an -admin address beyond loopback
requires -admin-token. Requests must name the listener in their Host header
(an IP address, localhost, this host's name or -admin-allowed-hosts).

SIGTERM or SIGINT drains in-flight requests (bounded by -shutdown-timeout),
hands leadership over and stops, keeping the data directory for a restart
(or leaves the cluster with -leave-on-terminate). A second signal exits at once.

Flags:
`

// rawFlags holds the flags as strings; validate turns them into a Config.
// Keeping the raw strings lets env and flags share parsing.
type rawFlags struct {
	id, data, http, admin                     string
	raft, raftAdv, gossip, gossipAdv, join    string
	bootstrapExpect, voters, clusterName      string
	secret, gossipKey, tlsCert, tlsKey, tlsCA string
	clusterKey, clusterKeyFile, insecure      string
	genClusterKey                             string
	adminToken, adminHosts                    string
	readHeaderTimeout, readTimeout            string
	writeTimeout, idleTimeout                 string
	maxHeaderBytes, maxBodyBytes              string
	maxSessions, maxBytes                     string
	cookieName, cookieSecure, trustProxy      string
	consistency, leaveOnTerminate             string
	snapThreshold, trailingLogs, snapInterval string
	groupCommitWait                           string
	expireInterval, shutdownTimeout, logLevel string
	logStore, memoryLimit                     string
}

// noEnv lists the flags that no environment variable sets: actions, not
// settings (a RAFTSESSION_GEN_CLUSTER_KEY left in an environment would
// stop every node from starting).
var noEnv = map[string]bool{"gen-cluster-key": true}

func newFlagSet(r *rawFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("raftsession", flag.ContinueOnError)
	// Errors are returned as one line, not printed with the whole usage;
	// -h prints the usage through printUsage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	s := func(p *string, name, def, usage string) { fs.StringVar(p, name, def, usage) }
	s(&r.id, "id", "", "node `ID`, unique in the cluster and stable across restarts (default: the host name)")
	s(&r.data, "data", "", "data `dir`ectory for the raft log and snapshots (default ./raftsession-data/<id>)")
	s(&r.logStore, "log-store", "", "raft log `store` of a new data dir: wal or bolt (default: wal; an existing dir keeps its own, and switching needs an empty dir)")
	s(&r.http, "http", "127.0.0.1:8080", "`address` of the demo app (port 0 picks a free port)")
	s(&r.admin, "admin", "127.0.0.1:8081", "`address` of the admin listener: status, metrics, health, leave, key rotation")
	s(&r.raft, "raft", "127.0.0.1:7000", "TCP `address` for raft and node-to-node requests")
	s(&r.raftAdv, "raft-advertise", "", "`address` other nodes dial for -raft (default: the bound -raft address; required when -raft has no specific IP)")
	s(&r.gossip, "gossip", "127.0.0.1:7946", "TCP+UDP `address` for gossip (memberlist)")
	s(&r.gossipAdv, "gossip-advertise", "", "`address` other nodes use for -gossip (default: the bound -gossip address)")
	s(&r.join, "join", "", "comma-separated gossip `addresses` of existing members, retried until one answers")
	s(&r.bootstrapExpect, "bootstrap-expect", "1", "`number` of voter nodes that must see each other before a new cluster bootstraps; 0 never bootstraps")
	s(&r.voters, "voters", "3", "`number` of raft voters kept; other nodes are non-voting read replicas")
	s(&r.clusterName, "cluster-name", "raftsession", "cluster `name`: gossip label, and a data dir of another cluster is refused")
	s(&r.secret, "secret", "", "cookie signing `secret`, at least 32 bytes; default: a random key generated by the cluster, replicated, rotatable")
	s(&r.gossipKey, "gossip-key", "", "base64 `key` of 16, 24 or 32 bytes encrypting gossip (default: derived from -cluster-key, else plaintext)")
	s(&r.tlsCert, "tls-cert", "", "PEM certificate `file` for mutual TLS on the raft port (with -tls-key and -tls-ca; default: derived from -cluster-key)")
	s(&r.tlsKey, "tls-key", "", "PEM private key `file` for -tls-cert")
	s(&r.tlsCA, "tls-ca", "", "PEM CA bundle `file` that peers' certificates must chain to")
	s(&r.clusterKey, "cluster-key", "", "the cluster `key`: 32 bytes in base64, the same on every node (see -gen-cluster-key); "+
		"a comma-separated list uses the first and also accepts the others, for a rolling change of the key")
	s(&r.clusterKeyFile, "cluster-key-file", "", "`file` with the cluster key, one key a line: the first is used, the others also accepted; "+
		"# comments and blank lines are ignored (instead of -cluster-key)")
	s(&r.genClusterKey, "gen-cluster-key", "false", "print a new random cluster key and exit")
	s(&r.insecure, "insecure-cluster", "false", "allow raft and gossip addresses beyond loopback without a cluster key: "+
		"anyone who reaches them can read and write every session")
	s(&r.adminToken, "admin-token", "", "Bearer `token` (at least 16 characters) that admin POSTs must carry; required when -admin is not loopback")
	s(&r.adminHosts, "admin-allowed-hosts", "", "comma-separated host `names` the admin listener answers besides IP addresses, localhost and this host's name")
	s(&r.readHeaderTimeout, "http-read-header-timeout", "5s", "longest `duration` to read a request's headers (demo and admin listeners)")
	s(&r.readTimeout, "http-read-timeout", "30s", "longest `duration` to read a whole request, body included (demo and admin listeners)")
	s(&r.writeTimeout, "http-write-timeout", "30s", "longest `duration` from the end of a request's headers to the end of its response")
	s(&r.idleTimeout, "http-idle-timeout", "2m", "how long an idle keep-alive connection stays open (`duration`)")
	s(&r.maxHeaderBytes, "http-max-header-bytes", "65536", "largest request header block in `bytes`")
	s(&r.maxBodyBytes, "http-max-body-bytes", "1048576", "largest request body in `bytes`; a larger one is refused with 413")
	s(&r.maxSessions, "max-sessions", "0", "cluster-wide cap on the `number` of sessions; a new session beyond it gets 503 (0: no cap; the same on every node)")
	s(&r.maxBytes, "max-bytes", "0", "cluster-wide cap on the session keys and values in `bytes`; a change that grows them beyond it gets 503 (0: no cap; the same on every node)")
	s(&r.cookieName, "cookie-name", "sid", "session cookie `name`; a __Host- name (for example __Host-sid) needs -cookie-secure")
	s(&r.cookieSecure, "cookie-secure", "false", "always mark the session cookie Secure (HTTPS only), as behind a TLS-terminating proxy")
	s(&r.trustProxy, "trust-proxy", "false", "mark the cookie Secure when X-Forwarded-Proto says https; only behind a proxy that sets that header")
	s(&r.consistency, "consistency", "ryw", "session read `level`: local, ryw (read-your-writes) or linearizable")
	s(&r.leaveOnTerminate, "leave-on-terminate", "false", "on SIGTERM/SIGINT leave the cluster for good (scale-in) instead of stopping for a restart")
	s(&r.snapThreshold, "snapshot-threshold", "8192", "raft log `entries` since the last snapshot that trigger a new one")
	s(&r.trailingLogs, "trailing-logs", "10240", "raft log `entries` kept after a snapshot for slow followers")
	s(&r.snapInterval, "snapshot-interval", "2m", "`duration` between raft's checks whether to snapshot")
	s(&r.groupCommitWait, "group-commit-wait", "2ms", "longest `duration` the leader holds a commit back for the commits it expects "+
		"to share its log entry (at most one entry's commit time); 0: never")
	s(&r.expireInterval, "expire-interval", "30s", "`duration` between the leader's removals of expired sessions")
	s(&r.shutdownTimeout, "shutdown-timeout", "10s", "longest `duration` to drain in-flight requests at shutdown")
	s(&r.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	s(&r.memoryLimit, "memory-limit", "auto", "Go heap soft limit: a `size` such as 1536MiB or 2GiB; auto: 90% of the cgroup limit if any, "+
		"and GOGC lowered as the sessions grow so the heap peaks 64 MiB or 10% (the larger) above them; off: leave GOGC and GOMEMLIMIT to the environment")
	// Switches: "-leave-on-terminate" alone means true.
	for name, p := range map[string]*string{"leave-on-terminate": &r.leaveOnTerminate, "gen-cluster-key": &r.genClusterKey,
		"insecure-cluster": &r.insecure, "cookie-secure": &r.cookieSecure, "trust-proxy": &r.trustProxy} {
		fs.Lookup(name).Value = boolString{p}
	}
	return fs
}

func printUsage(fs *flag.FlagSet, out io.Writer) {
	fs.SetOutput(out)
	defer fs.SetOutput(io.Discard)
	fmt.Fprint(out, usageHead)
	fs.PrintDefaults()
}

// boolString is a string flag that may be given without a value.
type boolString struct{ p *string }

func (b boolString) String() string {
	if b.p == nil {
		return "false"
	}
	return *b.p
}
func (b boolString) Set(s string) error { *b.p = s; return nil }
func (b boolString) IsBoolFlag() bool   { return true }

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// errGenClusterKey is what parseConfig returns for -gen-cluster-key:
// ParseFlags prints a key instead of configuring a node.
var errGenClusterKey = errors.New("-gen-cluster-key")

// parseConfig reads env (through getenv) and then args into a Config. It
// returns flag.ErrHelp for -h and errGenClusterKey for -gen-cluster-key.
func parseConfig(args []string, getenv func(string) string, usageOut io.Writer) (Config, error) {
	var r rawFlags
	fs := newFlagSet(&r)
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if envErr != nil || noEnv[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %w", envName(f.Name), err)
			}
		}
	})
	if envErr != nil {
		return Config{}, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(fs, usageOut)
			return Config{}, err
		}
		return Config{}, errors.New(firstLine(err.Error()))
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (flags start with -; see -h)", fs.Arg(0))
	}
	if gen, err := parseBool("gen-cluster-key", r.genClusterKey); err != nil || gen {
		return Config{}, cmp.Or(err, errGenClusterKey)
	}
	return r.validate()
}

// validate turns the raw flags into a Config, one group of flags at a
// time; the first problem ends it with a one-line error.
func (r *rawFlags) validate() (Config, error) {
	var c Config
	for _, step := range []func(*Config) error{
		r.validateNode, r.validateAddrs, r.validateCluster, r.validateSecrets, r.validateClusterKeys,
		r.validateAdmin, r.validateHTTP, r.validateSessions, r.validateTuning,
	} {
		if err := step(&c); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (r *rawFlags) validateNode(c *Config) error {
	c.ID = r.id
	if c.ID == "" {
		var err error
		if c.ID, err = os.Hostname(); err != nil || c.ID == "" {
			return errors.New("-id: not set and the host name is unknown; set -id")
		}
	}
	if !validNodeID(c.ID) {
		return fmt.Errorf("-id %q: use 1 to 128 letters, digits, '.', '_' or '-'", c.ID)
	}
	c.DataDir = r.data
	if c.DataDir == "" {
		c.DataDir = filepath.Join("raftsession-data", c.ID)
	}
	if r.logStore != "" && r.logStore != "wal" && r.logStore != "bolt" {
		return fmt.Errorf("-log-store %q: want wal or bolt", r.logStore)
	}
	c.LogStore = r.logStore
	return nil
}

func (r *rawFlags) validateAddrs(c *Config) error {
	addrs := []struct {
		name  string
		v     string
		dst   *string
		empty bool // may be empty
		port0 bool // port 0 allowed
	}{
		{"http", r.http, &c.HTTPAddr, false, true},
		{"admin", r.admin, &c.AdminAddr, false, true},
		{"raft", r.raft, &c.RaftAddr, false, true},
		{"raft-advertise", r.raftAdv, &c.RaftAdvertise, true, false},
		{"gossip", r.gossip, &c.GossipAddr, false, true},
		{"gossip-advertise", r.gossipAdv, &c.GossipAdvertise, true, false},
	}
	for _, a := range addrs {
		if a.v == "" && a.empty {
			continue
		}
		if err := checkAddr(a.v, a.port0); err != nil {
			return fmt.Errorf("-%s %q: %v", a.name, a.v, err)
		}
		*a.dst = a.v
	}
	for j := range strings.SplitSeq(r.join, ",") {
		if j = strings.TrimSpace(j); j == "" {
			continue
		}
		if err := checkAddr(j, false); err != nil {
			return fmt.Errorf("-join %q: %v", j, err)
		}
		c.Join = append(c.Join, j)
	}
	return nil
}

func (r *rawFlags) validateCluster(c *Config) error {
	var err error
	if c.BootstrapExpect, err = parseInt("bootstrap-expect", r.bootstrapExpect, 0, 100); err != nil {
		return err
	}
	if c.Voters, err = parseInt("voters", r.voters, 1, 99); err != nil {
		return err
	}
	c.ClusterName = r.clusterName
	if c.ClusterName == "" || len(c.ClusterName) > 200 {
		return errors.New("-cluster-name: must be 1 to 200 bytes")
	}
	return nil
}

func (r *rawFlags) validateSecrets(c *Config) error {
	if r.secret != "" {
		if len(r.secret) < httpmw.MinSecretLen {
			return fmt.Errorf("-secret: is %d bytes, need at least %d (for example: openssl rand -base64 32)", len(r.secret), httpmw.MinSecretLen)
		}
		c.Secret = []byte(r.secret)
	}
	if r.gossipKey != "" {
		k, err := base64.StdEncoding.DecodeString(r.gossipKey)
		if err != nil {
			return errors.New("-gossip-key: not valid base64 (for example: openssl rand -base64 32)")
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return fmt.Errorf("-gossip-key: decodes to %d bytes, want 16, 24 or 32", n)
		}
		c.GossipKey = k
	}
	c.TLSCert, c.TLSKey, c.TLSCA = r.tlsCert, r.tlsKey, r.tlsCA
	if set := btoi(c.TLSCert != "") + btoi(c.TLSKey != "") + btoi(c.TLSCA != ""); set != 0 && set != 3 {
		return errors.New("-tls-cert, -tls-key and -tls-ca: give all three or none")
	}
	return nil
}

func (r *rawFlags) validateTuning(c *Config) error {
	lvl, ok := session.ParseLevel(r.consistency)
	if !ok {
		return fmt.Errorf("-consistency %q: want local, ryw or linearizable", r.consistency)
	}
	c.Consistency = lvl
	var err error
	if c.LeaveOnTerminate, err = parseBool("leave-on-terminate", r.leaveOnTerminate); err != nil {
		return err
	}
	if c.SnapshotThreshold, err = parseUint("snapshot-threshold", r.snapThreshold); err != nil {
		return err
	}
	if c.TrailingLogs, err = parseUint("trailing-logs", r.trailingLogs); err != nil {
		return err
	}
	if err := parseDurations(map[string]durationFlag{
		"snapshot-interval": {r.snapInterval, &c.SnapshotInterval},
		"expire-interval":   {r.expireInterval, &c.ExpireInterval},
		"shutdown-timeout":  {r.shutdownTimeout, &c.ShutdownTimeout},
	}); err != nil {
		return err
	}
	if c.GroupCommitWait, err = parseGroupCommitWait(r.groupCommitWait); err != nil {
		return err
	}
	if c.MemoryLimit, err = parseMemoryLimit(r.memoryLimit); err != nil {
		return err
	}
	if err := c.LogLevel.UnmarshalText([]byte(r.logLevel)); err != nil {
		return fmt.Errorf("-log-level %q: want debug, info, warn or error", r.logLevel)
	}
	return nil
}

// durationFlag is a raw duration flag and where its value goes.
type durationFlag struct {
	v   string
	dst *time.Duration
}

// parseDurations parses positive durations, in flag-name order so that
// the error names the same flag every time.
func parseDurations(flags map[string]durationFlag) error {
	for _, name := range slices.Sorted(maps.Keys(flags)) {
		d := flags[name]
		v, err := time.ParseDuration(d.v)
		if err != nil || v <= 0 {
			return fmt.Errorf("-%s %q: want a positive duration such as 500ms, 30s or 2m", name, d.v)
		}
		*d.dst = v
	}
	return nil
}

// parseGroupCommitWait parses -group-commit-wait: 0 turns holding off,
// which cluster.Config spells as a negative duration.
func parseGroupCommitWait(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	switch {
	case err != nil || d < 0:
		return 0, fmt.Errorf("-group-commit-wait %q: want a duration such as 2ms, or 0 to commit without waiting", v)
	case d == 0:
		return -1, nil
	}
	return d, nil
}

func validNodeID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkAddr accepts host:port with a numeric port; an empty host means all
// interfaces.
func checkAddr(addr string, port0 bool) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return errors.New("port must be a number from 0 to 65535")
	}
	if p == 0 && !port0 {
		return errors.New("port 0 is not allowed here")
	}
	return nil
}

func parseInt(name, v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("-%s %q: want a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

func parseBool(name, v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("-%s %q: want true or false", name, v)
	}
	return b, nil
}

func parseUint(name, v string) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("-%s %q: want a positive whole number", name, v)
	}
	return n, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// firstLine keeps error output to one line.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
