package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/session"
)

// These tests play an attacker on the network against a cluster started
// with a cluster key. Each attacker tries every way it has: plaintext, a
// certificate from another key, and where it matters a certificate from
// the right key for an identity that is not a member.

func keyedCluster(t *testing.T, size int) ([]*Node, []byte) {
	t.Helper()
	key, err := GenerateClusterKey()
	if err != nil {
		t.Fatal(err)
	}
	return startCluster(t, size, func(c *Config) { c.ClusterKey = key }), key
}

// attackerTLS returns a client TLS config with a certificate for id from
// the CA of key, or nil (plaintext) when key is nil.
func attackerTLS(t *testing.T, key []byte, id string) *tls.Config {
	t.Helper()
	if key == nil {
		return nil
	}
	tc, err := keyTLS(id, [][]byte{key}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{tc.Certificate}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
}

// attackerDial connects to a raft port the way a node does: optional TLS,
// then the protocol byte.
func attackerDial(addr string, cfg *tls.Config, proto byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		tc := tls.Client(c, cfg)
		_ = tc.SetDeadline(time.Now().Add(2 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, err
		}
		_ = tc.SetDeadline(time.Time{})
		c = tc
	}
	if _, err := c.Write([]byte{proto}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// attackerRequest sends one forward request and returns the reply, or an
// error when the port refused to talk.
func attackerRequest(addr string, cfg *tls.Config, kind byte, payload []byte) (*frame, error) {
	c, err := attackerDial(addr, cfg, protoForward)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	w := bufio.NewWriter(c)
	if err := writeFrame(w, &frame{id: 1, kind: kind, budget: int64(3 * time.Second), payload: payload}, true); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	return readFrame(bufio.NewReader(c), false)
}

// attackers are the ways in of someone who does not hold the cluster key.
func attackers(t *testing.T) map[string]*tls.Config {
	wrong, err := GenerateClusterKey()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*tls.Config{"plaintext": nil, "another key": attackerTLS(t, wrong, "n1")}
}

func TestAttackForgedForwardRequests(t *testing.T) {
	nodes, _ := keyedCluster(t, 3)
	leader := leaderOf(nodes)
	victim := session.NewID()
	create(t, leader.Store(), victim, "user", "alice")
	c := &session.Change{ID: victim, Delta: session.Delta{Owner: "user:alice"}}
	if _, err := leader.Store().Commit(ctxT(t, 5*time.Second), c); err != nil {
		t.Fatal(err)
	}
	forgedID := session.NewID()
	forged, err := fsm.EncodeChange(&session.Change{ID: forgedID, Create: true, Delta: session.Delta{
		Owner: "user:alice", IdleTimeout: 365 * 24 * time.Hour, Lifetime: 365 * 24 * time.Hour,
		Ops: []session.Op{{Kind: session.OpSet, Key: "user", Value: []byte("alice")}}}})
	if err != nil {
		t.Fatal(err)
	}
	keysBefore := len(leader.fsm.SigningKeys())
	victimKey := session.KeyOf(victim)
	for name, cfg := range attackers(t) {
		t.Run(name, func(t *testing.T) {
			for _, req := range []struct {
				what    string
				kind    byte
				payload []byte
			}{
				{"add a signing key", reqApply, fsm.EncodeAddSigningKey("evil", bytes.Repeat([]byte{7}, 32))},
				{"create a session owned by alice", reqApply, forged},
				{"list alice's sessions", reqListOwner, append(binaryAppendU64(nil, 0), "user:alice"...)},
				{"read alice's session", reqGet, binaryAppendU64(append([]byte(nil), victimKey[:]...), 0)},
			} {
				f, err := attackerRequest(leader.RaftAddr(), cfg, req.kind, req.payload)
				if err == nil && f.kind == statusOK {
					t.Errorf("%s: the leader answered OK to a stranger", req.what)
				}
			}
		})
	}
	for _, n := range nodes {
		if got := len(n.fsm.SigningKeys()); got != keysBefore {
			t.Errorf("%s: keyring has %d keys, want %d", n.ID(), got, keysBefore)
		}
		if _, ok := n.fsm.Get(session.KeyOf(forgedID), time.Now()); ok {
			t.Errorf("%s: the forged session exists", n.ID())
		}
		if _, err := n.Store().Load(ctxT(t, 2*time.Second), victim, session.LoadOptions{Level: session.Linearizable}); err != nil {
			t.Errorf("%s: the victim's session: %v", n.ID(), err)
		}
	}
}

// attackLayer is a raft stream layer for an attacker's own transport.
type attackLayer struct{ cfg *tls.Config }

func (l attackLayer) Dial(addr raft.ServerAddress, _ time.Duration) (net.Conn, error) {
	return attackerDial(string(addr), l.cfg, protoRaft)
}
func (attackLayer) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (attackLayer) Close() error              { return nil }
func (attackLayer) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

func TestAttackAppendEntriesFromNonMember(t *testing.T) {
	nodes, key := keyedCluster(t, 3)
	leader := leaderOf(nodes)
	target := followersOf(nodes)[0]
	ways := attackers(t)
	// A certificate from the right key for an ID that is neither in the
	// raft configuration nor a gossip member: a stale or stray node.
	ways["right key, not a member"] = attackerTLS(t, key, "mallory")
	for name, cfg := range ways {
		t.Run(name, func(t *testing.T) {
			trans := raft.NewNetworkTransport(attackLayer{cfg}, 1, 2*time.Second, io.Discard)
			defer trans.Close()
			term := leader.raft.CurrentTerm() + 100
			last := target.raft.LastIndex()
			lastTerm, _ := strconv.ParseUint(target.raft.Stats()["last_log_term"], 10, 64)
			id := session.NewID()
			cmd, err := fsm.EncodeChange(&session.Change{ID: id, Create: true, Delta: session.Delta{IdleTimeout: time.Hour, Lifetime: time.Hour}})
			if err != nil {
				t.Fatal(err)
			}
			req := &raft.AppendEntriesRequest{
				RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("mallory"), Addr: []byte("127.0.0.1:1")},
				Term:      term, PrevLogEntry: last, PrevLogTerm: lastTerm, LeaderCommitIndex: last + 1,
				Entries: []*raft.Log{{Index: last + 1, Term: term, Type: raft.LogCommand, Data: cmd, AppendedAt: time.Now()}},
			}
			var resp raft.AppendEntriesResponse
			err = trans.AppendEntries("target", raft.ServerAddress(target.RaftAddr()), req, &resp)
			t.Logf("AppendEntries: err=%v success=%v term=%d", err, resp.Success, resp.Term)
			if err == nil && resp.Success {
				t.Errorf("target accepted the entry")
			}
			if got := target.raft.CurrentTerm(); got >= term {
				t.Errorf("target adopted the attacker's term %d", got)
			}
			if _, ok := target.fsm.Get(session.KeyOf(id), time.Now()); ok {
				t.Errorf("the attacker's entry was applied")
			}
		})
	}
	if l := leaderOf(nodes); l == nil || l.raft.CurrentTerm() >= leader.raft.CurrentTerm()+100 {
		t.Fatal("the cluster lost its leader to the attack")
	}
}

func TestAttackFenceFromNonLeader(t *testing.T) {
	nodes, _ := keyedCluster(t, 3)
	fs := followersOf(nodes)
	sender, victim := fs[0], fs[1]
	far := victim.raft.LastIndex() + 60_000
	payload := binaryAppendU64(nil, far)
	// A member that is not the leader (a stale or confused node).
	ctx := ctxT(t, 3*time.Second)
	if f, err := sender.client.call(ctx, victim.RaftAddr(), reqWaitApplied, payload, nil); err == nil && f.kind == statusOK {
		t.Error("a follower's fence was accepted")
	}
	for name, cfg := range attackers(t) {
		if f, err := attackerRequest(victim.RaftAddr(), cfg, reqWaitApplied, payload); err == nil && f.kind == statusOK {
			t.Errorf("%s: a stranger's fence was accepted", name)
		}
	}
	if got := victim.fence.Load(); got >= far {
		t.Fatalf("victim's fence was raised to %d", got)
	}
	// The victim still serves read-your-writes reads at once.
	id := session.NewID()
	r := create(t, nodes[0].Store(), id, "k", "v")
	if _, err := victim.Store().Load(ctxT(t, 2*time.Second), id, session.LoadOptions{MinIndex: r.Index}); err != nil {
		t.Fatal(err)
	}
}

func TestAttackRemoveAnotherServer(t *testing.T) {
	nodes, _ := keyedCluster(t, 3)
	leader := leaderOf(nodes)
	fs := followersOf(nodes)
	sender, other := fs[0], fs[1]
	f, err := sender.client.call(ctxT(t, 3*time.Second), leader.RaftAddr(), reqRemoveServer, []byte(other.ID()), nil)
	if err == nil && f.kind == statusOK {
		t.Error("a follower removed another server")
	}
	for name, cfg := range attackers(t) {
		if f, err := attackerRequest(leader.RaftAddr(), cfg, reqRemoveServer, []byte(other.ID())); err == nil && f.kind == statusOK {
			t.Errorf("%s: a stranger removed a server", name)
		}
	}
	if _, ok := suffrage(leader, other.ID()); !ok {
		t.Fatalf("%s was removed from the configuration", other.ID())
	}
	// Batches are the leader's own: a member cannot forward one.
	batch, err := fsm.EncodeBatch([][]byte{fsm.EncodeNoop(), fsm.EncodeNoop()})
	if err != nil {
		t.Fatal(err)
	}
	if f, err := sender.client.call(ctxT(t, 3*time.Second), leader.RaftAddr(), reqApply, batch, nil); err == nil && f.kind == statusOK {
		t.Error("the leader committed a batch a follower forwarded")
	}
}

// stayFalse fails the test if cond becomes true within d: the check for
// something that must never happen, polled over a window long enough for
// it to happen if it could (several reconcile rounds).
func stayFalse(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("%s", what)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

func TestAttackRogueGossipMember(t *testing.T) {
	slow(t)
	nodes, key := keyedCluster(t, 3)
	leader := leaderOf(nodes)
	wrong, _ := GenerateClusterKey()
	victim := followersOf(nodes)[0]
	for _, tc := range []struct {
		name string
		id   string
		set  func(*Config)
	}{
		{"no key", "rogue-plain", func(c *Config) {}},
		{"another key", "rogue-wrong", func(c *Config) { c.ClusterKey = wrong }},
		// Holds the key but announces a raft address that is another
		// node's: the address cannot prove the announced ID.
		{"borrowed address", "rogue-addr", func(c *Config) { c.ClusterKey = key; c.RaftAdvertise = victim.RaftAddr() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, tc.id, t.TempDir())
			cfg.JoinOnly = true
			cfg.Join = []string{leader.GossipAddr()}
			tc.set(&cfg)
			rogue := mustStart(t, cfg)
			create(t, leader.Store(), session.NewID())
			stayFalse(t, 3*time.Second, "the rogue member was added to the raft configuration", func() bool {
				_, ok := suffrage(leader, tc.id)
				return ok
			})
			if got := rogue.raft.LastIndex(); got != 0 {
				t.Fatalf("the rogue's raft log reached index %d", got)
			}
		})
	}
}

func TestAttackIdleConnectionsAreClosed(t *testing.T) {
	t.Cleanup(setIdleTimeouts(500 * time.Millisecond))
	n := mustStart(t, testConfig(t, "solo", t.TempDir()))
	for _, proto := range []byte{protoForward, protoRaft} {
		c, err := attackerDial(n.RaftAddr(), nil, proto)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		_, err = c.Read(make([]byte, 1))
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("protocol %q: an idle connection was still open after %v", proto, time.Since(start))
		}
	}
}

// rssKiB reads a field of /proc/self/status in KiB.
func rssKiB(t *testing.T, field string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

func TestAttackLargeFramesAreBounded(t *testing.T) {
	n := mustStart(t, testConfig(t, "solo", t.TempDir()))
	runtime.GC()
	debug.FreeOSMemory()
	// Reset the peak so VmHWM measures this attack only.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the RSS peak: %v", err)
	}
	base := rssKiB(t, "VmRSS")
	const frames, size = 40, maxFrame - 64
	body := bytes.Repeat([]byte{0xAB}, size)
	errs := make(chan error, frames)
	concurrently(frames, func(i int) {
		c, err := attackerDial(n.RaftAddr(), nil, protoForward)
		if err != nil {
			errs <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		w := bufio.NewWriterSize(c, 4096)
		_ = writeFrame(w, &frame{id: 1, kind: reqApply, payload: body}, true)
		_ = w.Flush()
		_, _ = readFrame(bufio.NewReader(c), false)
	})
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	peak := rssKiB(t, "VmHWM")
	if grew := (peak - base) / 1024; grew > 64 {
		t.Fatalf("RSS peak grew by %d MiB during %d frames of %d MiB; want at most 64", grew, frames, size>>20)
	}
	// The node still works.
	create(t, n.Store(), session.NewID())
}

func TestInsecureAddressRefusedWithoutKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Config)
		ok   bool
	}{
		{"raft beyond loopback, no key", func(c *Config) { c.RaftAddr = "0.0.0.0:0"; c.RaftAdvertise = "127.0.0.1:1" }, false},
		{"gossip beyond loopback, no key", func(c *Config) { c.GossipAddr = "0.0.0.0:0"; c.GossipAdvertise = "127.0.0.1:1" }, false},
		{"advertise beyond loopback, no key", func(c *Config) { c.RaftAdvertise = "10.1.2.3:7000" }, false},
		{"beyond loopback with Insecure", func(c *Config) { c.RaftAddr = "0.0.0.0:0"; c.RaftAdvertise = "127.0.0.1:1"; c.Insecure = true }, true},
		{"beyond loopback with a key", func(c *Config) {
			c.RaftAddr = "0.0.0.0:0"
			c.RaftAdvertise = "127.0.0.1:1"
			c.ClusterKey = bytes.Repeat([]byte{1}, 32)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "n1", t.TempDir())
			tc.set(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n, err := Start(ctx, cfg)
			if err == nil {
				defer n.Close()
			}
			if tc.ok && err != nil {
				t.Fatalf("Start: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrConfig) {
				t.Fatalf("Start: got %v, want an ErrConfig refusal", err)
			}
		})
	}
}

func TestDataDirPermissionsTightened(t *testing.T) {
	cfg := testConfig(t, "solo", t.TempDir())
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "left-over"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := mustStart(t, cfg)
	create(t, n.Store(), session.NewID())
	err := filepath.Walk(cfg.DataDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v; want no group or other access", p, perm)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSigningKeyringEncryptedAtRest(t *testing.T) {
	key, _ := GenerateClusterKey()
	cfg := testConfig(t, "solo", t.TempDir())
	cfg.ClusterKey = key
	n := mustStart(t, cfg)
	waitFor(t, 5*time.Second, "a leader", func() bool { return n.IsLeader() })
	secret := bytes.Repeat([]byte("s3cr3t-"), 6)
	if _, err := n.Store().AddSigningKey(ctxT(t, 5*time.Second), "k1", secret); err != nil {
		t.Fatal(err)
	}
	keys := n.Store().SigningKeys()
	if len(keys) == 0 || !bytes.Equal(keys[0].Secret, secret) {
		t.Fatalf("SigningKeys does not give the secret back")
	}
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	err := filepath.Walk(cfg.DataDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, secret) {
			t.Errorf("%s holds the signing secret in the clear", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestClusterKeyRollingChange changes the cluster key of a running cluster
// one node at a time: accept the new key, use it, drop the old one. The
// cluster keeps committing, the signing keyring stays readable (the leader
// reseals it under the new key) and a node with only the old key is shut
// out at the end.
func TestClusterKeyRollingChange(t *testing.T) {
	slow(t)
	oldKey, _ := GenerateClusterKey()
	newKey, _ := GenerateClusterKey()
	nodes, cfgs := startClusterConfigs(t, 3, func(c *Config) { c.ClusterKey = oldKey })
	secret := bytes.Repeat([]byte("signing-"), 4)
	if _, err := leaderOf(nodes).Store().AddSigningKey(ctxT(t, 5*time.Second), "k1", secret); err != nil {
		t.Fatal(err)
	}
	id := session.NewID()
	create(t, leaderOf(nodes).Store(), id, "kept", "yes")
	phases := []struct {
		use    []byte
		accept [][]byte
	}{{oldKey, [][]byte{newKey}}, {newKey, [][]byte{oldKey}}, {newKey, nil}}
	for p, ph := range phases {
		for i := range nodes {
			if err := nodes[i].Close(); err != nil {
				t.Fatal(err)
			}
			cfg := cfgs[i]
			cfg.ClusterKey, cfg.AcceptClusterKeys = ph.use, ph.accept
			cfg.Join = []string{nodes[(i+1)%len(nodes)].GossipAddr()}
			nodes[i] = mustStart(t, cfg)
			r := create(t, nodes[i].Store(), session.NewID())
			waitFor(t, 20*time.Second, "every node to apply a commit after a restart", func() bool {
				for _, n := range nodes {
					if n.fsm.AppliedIndex() < r.Index {
						return false
					}
				}
				return true
			})
			t.Logf("phase %d: node %d restarted", p+1, i+1)
		}
	}
	for _, n := range nodes {
		// Every replicated key still opens (the leader also made one of
		// its own), and k1 with its secret.
		keys := n.Store().SigningKeys()
		i := slices.IndexFunc(keys, func(k fsm.SigningKey) bool { return k.ID == "k1" })
		if len(keys) != len(n.fsm.SigningKeys()) || i < 0 || !bytes.Equal(keys[i].Secret, secret) {
			t.Errorf("%s: signing keys after the change: %d of %d open, want all with k1's secret", n.ID(), len(keys), len(n.fsm.SigningKeys()))
		}
		if _, err := n.Store().Load(ctxT(t, 2*time.Second), id, session.LoadOptions{Level: session.Linearizable}); err != nil {
			t.Errorf("%s: session from before the change: %v", n.ID(), err)
		}
	}
	cfg := testConfig(t, "old-key", t.TempDir())
	cfg.ClusterKey, cfg.JoinOnly, cfg.Join = oldKey, true, []string{nodes[0].GossipAddr()}
	mustStart(t, cfg)
	leader := leaderOf(nodes)
	stayFalse(t, 2*time.Second, "a node with only the old key was added", func() bool {
		_, ok := suffrage(leader, "old-key")
		return ok
	})
}

// TestForwardBeforeRaftExists: requests reach the port before raft exists
// (Start opens the port first, and raft may spend seconds restoring a
// large snapshot). They are answered "not the leader"; checking the
// sender's membership then would dereference a raft that is not there.
func TestForwardBeforeRaftExists(t *testing.T) {
	n := &Node{cfg: Config{NodeID: "n1"}, members: map[string]memberStatus{}}
	n.mux = &mux{tls: &TLSConfig{}, log: newRateLog(testLogger(t, "n1"))}
	for kind := range forwardHandlers {
		if status, _ := n.handleForward(t.Context(), peer{id: "n2", authenticated: true}, kind, nil); status != statusNotLeader {
			t.Errorf("request kind %d before start finished: status %d, want not-leader", kind, status)
		}
	}
}

// TestAttackPeerThatNeverReadsItsAnswers: a peer that sends requests and
// never reads the answers must not wedge the forwarding server. Once its
// socket buffers fill, each of its connections holds up to
// maxInFlightPerConn handlers; two of them would hold every slot of the
// server (maxInFlight), and every other peer's forwarded commit and read
// would wait for ever.
func TestAttackPeerThatNeverReadsItsAnswers(t *testing.T) {
	t.Cleanup(setForwardWriteTimeout(time.Second))
	n := mustStart(t, testConfig(t, "solo", t.TempDir()))
	id := session.NewID()
	create(t, n.Store(), id, "big", strings.Repeat("x", 60<<10))
	key := session.KeyOf(id)
	get := binaryAppendU64(append([]byte(nil), key[:]...), 0)

	// Each answer is a 60 KiB record: enough of them fill the kernel's
	// buffers, the server's queue of answers and then every slot.
	const conns, perConn = 2, maxInFlightPerConn + 1024
	var wedged []net.Conn
	for range conns {
		c, err := attackerDial(n.RaftAddr(), nil, protoForward)
		if err != nil {
			t.Fatal(err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4 << 10)
		}
		wedged = append(wedged, c)
		t.Cleanup(func() { c.Close() })
	}
	concurrently(conns, func(i int) {
		c := wedged[i]
		_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		w := bufio.NewWriterSize(c, 64<<10)
		for j := range perConn {
			if writeFrame(w, &frame{id: uint64(j + 1), kind: reqGet, payload: get}, true) != nil {
				return // the server closed the connection: what the fix does
			}
		}
		_ = w.Flush()
	})

	// Give the server time to take every request it will read: without a
	// bound on writing, the two connections then hold every slot.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && len(n.server.inflight) < cap(n.server.inflight); {
		time.Sleep(10 * time.Millisecond)
	}
	// A well-behaved peer's request is still answered.
	f, err := attackerRequest(n.RaftAddr(), nil, reqGet, get)
	if err != nil {
		t.Fatalf("a peer that reads its answers got no answer while two others never read theirs: %v", err)
	}
	if f.kind != statusOK {
		t.Fatalf("get: status %d", f.kind)
	}
	// And the node's own commits still go through.
	create(t, n.Store(), session.NewID())
}

// sessionGet creates a session on n and returns a forward get request's
// payload for it.
func sessionGet(t *testing.T, n *Node) []byte {
	t.Helper()
	id := session.NewID()
	create(t, n.Store(), id)
	k := session.KeyOf(id)
	return binaryAppendU64(append([]byte(nil), k[:]...), 0)
}

// squat plays an attacker without the cluster key who opens TCP connections
// to addr from the given source addresses (round robin), sends nothing and
// keeps up to hold of them open, opening a new one whenever the port closes
// one, at most one every gap. It returns how many it has opened; the
// connections are closed when the test ends.
func squat(t *testing.T, addr string, sources []string, hold int, gap time.Duration) *atomic.Int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		opened atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{}
	)
	free := make(chan struct{}, hold)
	for range hold {
		free <- struct{}{}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-free:
			}
			d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(sources[i%len(sources)])}}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				free <- struct{}{}
				time.Sleep(time.Millisecond)
				continue
			}
			opened.Add(1)
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = c.Read(make([]byte, 1)) // until the port closes it
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
				free <- struct{}{}
			}()
			time.Sleep(gap)
		}
	}()
	t.Cleanup(func() {
		cancel()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return &opened
}

// lagged delays every write by d: a peer d away, one way.
type lagged struct {
	net.Conn
	d time.Duration
}

func (c lagged) Write(p []byte) (int, error) {
	time.Sleep(c.d)
	return c.Conn.Write(p)
}

// memberRequest is attackerRequest over TLS from a peer delay away.
func memberRequest(addr string, cfg *tls.Config, delay time.Duration, kind byte, payload []byte) (*frame, error) {
	raw, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	c := tls.Client(lagged{raw, delay}, cfg)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	w := bufio.NewWriter(c)
	w.WriteByte(protoForward)
	if err := writeFrame(w, &frame{id: 1, kind: kind, budget: int64(3 * time.Second), payload: payload}, true); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	return readFrame(bufio.NewReader(c), false)
}

// Anyone who can reach the raft port can open connections to it, even
// without the cluster key, and sit in the TLS handshake without sending a
// byte. Such connections must not keep members out: a node that cannot be
// dialled cannot be replicated to, elected or joined.
func TestAttackHandshakesCannotHoldThePort(t *testing.T) {
	nodes, key := keyedCluster(t, 1)
	n := nodes[0]
	get := sessionGet(t, n)
	member := attackerTLS(t, key, n.cfg.NodeID)

	sources := func(count int) []string {
		out := make([]string, count)
		for i := range out {
			out[i] = fmt.Sprintf("127.0.1.%d", i+1)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		sources []string
		gap     time.Duration
		lag     time.Duration // of the member, one way
	}{
		{"one source, as fast as it can", []string{"127.0.0.2"}, 100 * time.Microsecond, 0},
		{"forty sources, 1000 connections a second", sources(40), time.Millisecond, 0},
		{"eight sources, as fast as they can, member 25 ms away", sources(8), 0, 25 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const hold = 1024
			opened := squat(t, n.RaftAddr(), tc.sources, hold, tc.gap)
			waitFor(t, 10*time.Second, "the attacker to open its connections", func() bool { return opened.Load() >= hold })
			for i := range 10 {
				f, err := memberRequest(n.RaftAddr(), member, tc.lag, reqGet, get)
				if err != nil {
					t.Fatalf("request %d of a member, after the attacker opened %d connections: %v", i, opened.Load(), err)
				}
				if f.kind != statusOK {
					t.Fatalf("request %d of a member: status %d", i, f.kind)
				}
			}
			t.Logf("the attacker opened %d connections", opened.Load())
		})
	}
}

// A member's connection leaves the pending set once it is through its
// handshake: arrivals after it never displace it, and the ones they
// displace are closed at once.
func TestEstablishedConnectionsAreNeverDisplaced(t *testing.T) {
	oldAll, oldPer := maxPendingConns, maxPendingPerSource
	maxPendingConns, maxPendingPerSource = 4, 4
	t.Cleanup(func() { maxPendingConns, maxPendingPerSource = oldAll, oldPer })
	nodes, key := keyedCluster(t, 1)
	n := nodes[0]
	get := sessionGet(t, n)
	c, err := attackerDial(n.RaftAddr(), attackerTLS(t, key, n.cfg.NodeID), protoForward)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	ask := func(i uint64) error {
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		w := bufio.NewWriter(c)
		if err := writeFrame(w, &frame{id: i, kind: reqGet, budget: int64(time.Second), payload: get}, true); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		_, err := readFrame(br, false)
		return err
	}
	if err := ask(1); err != nil {
		t.Fatal(err)
	}
	var squatters []net.Conn
	for range 3 * maxPendingConns {
		s, err := net.Dial("tcp", n.RaftAddr())
		if err != nil {
			t.Fatal(err)
		}
		squatters = append(squatters, s)
		defer s.Close()
	}
	if err := ask(2); err != nil {
		t.Fatalf("a member's open connection after %d squatters: %v", len(squatters), err)
	}
	_ = squatters[0].SetReadDeadline(time.Now().Add(time.Second))
	_, err = squatters[0].Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the first squatter was displaced but not closed: %v", err)
	}
}

// When the process runs out of file descriptors (a flood of connections
// to the app's HTTP port can do it), accepting on the raft port fails for
// as long as that lasts. The port must accept again once descriptors are
// free, or the node can never again be dialled by a new leader.
func TestRaftPortAcceptsAgainAfterRunningOutOfDescriptors(t *testing.T) {
	cfg := testConfig(t, "solo", t.TempDir())
	out := &lockedBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(out, nil))
	n := mustStart(t, cfg)
	get := sessionGet(t, n)

	hog := exhaustDescriptors(t)
	// Free one descriptor for the dialling side only: the port's accept
	// needs another and fails.
	hog.freeOne()
	c, err := net.DialTimeout("tcp", n.RaftAddr(), time.Second)
	if err != nil {
		t.Fatalf("dial with one descriptor free: %v", err)
	}
	defer c.Close()
	// Until the port has failed to accept it, taking back whatever the
	// node lets go of.
	failed := func() bool { hog.take(); return strings.Contains(out.String(), "accept failed") }
	for end := time.Now().Add(5 * time.Second); !failed(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the port's accept never failed for want of a descriptor: the case was not reproduced")
		}
	}
	hog.release()
	f, err := attackerRequest(n.RaftAddr(), nil, reqGet, get)
	if err != nil {
		t.Fatalf("a request after descriptors were free again: %v", err)
	}
	if f.kind != statusOK {
		t.Fatalf("get: status %d", f.kind)
	}
}
