package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/session"
)

func ctxT(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

func create(tb testing.TB, s session.Store, id string, kv ...string) session.Result {
	tb.Helper()
	c := &session.Change{ID: id, Create: true, Delta: session.Delta{IdleTimeout: time.Hour, Lifetime: 2 * time.Hour}}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Ops = append(c.Ops, session.Op{Kind: session.OpSet, Key: kv[i], Value: []byte(kv[i+1])})
	}
	r, err := s.Commit(ctxT(tb, 5*time.Second), c)
	if err != nil {
		tb.Fatalf("create %s: %v", id, err)
	}
	return r
}

func TestSingleNodeBootstrapAndRestart(t *testing.T) {
	forEachLogStore(t, testSingleNodeBootstrapAndRestart)
}

func testSingleNodeBootstrapAndRestart(t *testing.T, logStore func(*Config)) {
	dir := t.TempDir()
	cfg := testConfig(t, "solo", dir)
	logStore(&cfg)
	n := mustStart(t, cfg)
	if err := n.WaitLeader(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	id := session.NewID()
	r := create(t, n.Store(), id, "user", "alice")
	rec, err := n.Store().Load(ctxT(t, time.Second), id, session.LoadOptions{MinIndex: r.Index})
	if err != nil || string(rec.Values.Get("user")) != "alice" {
		t.Fatalf("load after create: %v %v", rec, err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	n2 := mustStart(t, cfg)
	waitFor(t, 10*time.Second, "restarted node to lead and replay", func() bool {
		return n2.IsLeader() && n2.fsm.AppliedIndex() >= r.Index
	})
	rec, err = n2.Store().Load(ctxT(t, time.Second), id, session.LoadOptions{MinIndex: r.Index})
	if err != nil || string(rec.Values.Get("user")) != "alice" {
		t.Fatalf("after restart: got %v, %v; want user=alice", rec, err)
	}
}

func TestStartRejectsBadConfigAndBusyDataDir(t *testing.T) {
	dir := t.TempDir()
	bad := testConfig(t, "x", dir)
	bad.DataDir = ""
	bad.GossipKeys = [][]byte{[]byte("short")}
	if _, err := Start(context.Background(), bad); !errors.Is(err, ErrConfig) {
		t.Fatalf("bad config: got %v, want ErrConfig", err)
	}
	cfg := testConfig(t, "a", dir)
	mustStart(t, cfg)
	cfg2 := testConfig(t, "a", dir) // same data dir, other ports
	if _, err := Start(context.Background(), cfg2); !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("second node on the same data dir: got %v, want ErrDataDirInUse", err)
	}
	inUse := testConfig(t, "b", dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	inUse.RaftAddr = ln.Addr().String()
	if _, err := Start(context.Background(), inUse); err == nil {
		t.Fatal("start on a raft address in use succeeded")
	}
}

func TestThreeNodeBootstrapForwardAndReadYourWrites(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	leader := leaderOf(nodes)
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "three voters", func() bool { return n.voters() == 3 })
	}
	fs := followersOf(nodes)
	id := session.NewID()
	// Commit through a follower, read on the other follower at once.
	r := create(t, fs[0].Store(), id, "k", "v")
	if fs[0].metrics.Forwarded.Load() == 0 {
		t.Error("commit on a follower was not forwarded")
	}
	rec, err := fs[1].Store().Load(ctxT(t, time.Second), id, session.LoadOptions{MinIndex: r.Index})
	if err != nil || string(rec.Values.Get("k")) != "v" {
		t.Fatalf("read-your-writes on the other follower: got %v, %v", rec, err)
	}
	// An index the replica hasn't reached makes the read wait, then fall
	// back to the leader, never answer from older state.
	upd, err := leader.Store().Commit(ctxT(t, time.Second), &session.Change{ID: id,
		Delta: session.Delta{Ops: []session.Op{{Kind: session.OpSet, Key: "k", Value: []byte("v2")}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		rec, err := n.Store().Load(ctxT(t, time.Second), id, session.LoadOptions{MinIndex: upd.Index})
		if err != nil || string(rec.Values.Get("k")) != "v2" {
			t.Fatalf("%s: read at index %d: got %v, %v; want k=v2", n.ID(), upd.Index, rec, err)
		}
		rec, err = n.Store().Load(ctxT(t, time.Second), id, session.LoadOptions{Level: session.Linearizable})
		if err != nil || string(rec.Values.Get("k")) != "v2" {
			t.Fatalf("%s: linearizable read: got %v, %v; want k=v2", n.ID(), rec, err)
		}
	}
}

func TestReadYourWritesFallsBackToLeader(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	f := followersOf(nodes)[0]
	id := session.NewID()
	r := create(t, leaderOf(nodes).Store(), id, "k", "v")
	// Ask for an index beyond what the follower has applied with no time
	// to wait: it must read on the leader rather than serve older state.
	before := f.metrics.ReadFallbacks.Load()
	rec, err := f.Store().Load(ctxT(t, time.Second), id, session.LoadOptions{MinIndex: r.Index + 1, Wait: time.Nanosecond})
	if err != nil && !errors.Is(err, session.ErrTimeout) && !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("unexpected error %v", err)
	}
	if err == nil && string(rec.Values.Get("k")) != "v" {
		t.Fatalf("got %v", rec)
	}
	if f.fsm.AppliedIndex() < r.Index+1 && f.metrics.ReadFallbacks.Load() == before {
		t.Fatal("a read the replica could not serve did not fall back to the leader")
	}
}

func TestJoinAsNonVoterAndPromotion(t *testing.T) {
	slow(t)
	for _, tc := range []struct {
		name       string
		voters     int
		wantVoters int
	}{
		{"voters=3 keeps 4th and 5th as read replicas", 3, 3},
		{"voters=5 promotes 4th and 5th", 5, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := startCluster(t, 3, func(c *Config) { c.Voters = tc.voters })
			dir := t.TempDir()
			for i := 4; i <= 5; i++ {
				cfg := testConfig(t, fmt.Sprintf("n%d", i), dir)
				cfg.Voters = tc.voters
				cfg.BootstrapExpect = 3
				cfg.Join = []string{nodes[1].GossipAddr()}
				nodes = append(nodes, mustStart(t, cfg))
			}
			leader := leaderOf(nodes)
			waitFor(t, 15*time.Second, "4th and 5th in the configuration", func() bool {
				_, ok4 := suffrage(leader, "n4")
				_, ok5 := suffrage(leader, "n5")
				return ok4 && ok5
			})
			waitFor(t, 15*time.Second, fmt.Sprintf("%d voters", tc.wantVoters), func() bool {
				return leader.voters() == tc.wantVoters
			})
			if tc.wantVoters == 3 {
				for _, id := range []string{"n4", "n5"} {
					if s, _ := suffrage(leader, id); s != raft.Nonvoter {
						t.Errorf("%s: got %v, want Nonvoter", id, s)
					}
				}
			}
			// A node that joined after the session existed serves it.
			id := session.NewID()
			r := create(t, nodes[0].Store(), id, "k", "v")
			rec, err := nodes[4].Store().Load(ctxT(t, 2*time.Second), id, session.LoadOptions{MinIndex: r.Index})
			if err != nil || string(rec.Values.Get("k")) != "v" {
				t.Fatalf("read on the new node: got %v, %v", rec, err)
			}
		})
	}
}

func TestLeaderCrashUnderLoadLosesNoAcknowledgedCommit(t *testing.T) {
	forEachLogStore(t, testLeaderCrashUnderLoadLosesNoAcknowledgedCommit)
}

func testLeaderCrashUnderLoadLosesNoAcknowledgedCommit(t *testing.T, logStore func(*Config)) {
	nodes := startCluster(t, 3, logStore)
	id := session.NewID()
	create(t, nodes[0].Store(), id)
	old := leaderOf(nodes)
	var survivors []*Node
	for _, n := range nodes {
		if n != old {
			survivors = append(survivors, n)
		}
	}
	var mu sync.Mutex
	acked := map[string]uint64{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := survivors[w%2].Store()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				r, err := s.Commit(ctx, &session.Change{ID: id, Delta: session.Delta{
					Ops: []session.Op{{Kind: session.OpSet, Key: key, Value: []byte("x")}}}})
				cancel()
				if err == nil {
					mu.Lock()
					acked[key] = r.Index
					mu.Unlock()
				}
			}
		}()
	}
	waitFor(t, 5*time.Second, "some commits before the crash", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 20
	})
	crashed := time.Now()
	old.shutdown() // a crash: no leadership transfer
	waitFor(t, 10*time.Second, "a new leader", func() bool { return leaderOf(survivors) != nil })
	failover := time.Since(crashed)
	mu.Lock()
	n0 := len(acked)
	mu.Unlock()
	waitFor(t, 10*time.Second, "commits after the crash", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= n0+20
	})
	close(stop)
	wg.Wait()
	t.Logf("new leader after %v; %d commits acknowledged", failover, len(acked))
	var maxIdx uint64
	for _, idx := range acked {
		maxIdx = max(maxIdx, idx)
	}
	for _, n := range survivors {
		rec, err := n.Store().Load(ctxT(t, 3*time.Second), id, session.LoadOptions{MinIndex: maxIdx})
		if err != nil {
			t.Fatalf("%s: %v", n.ID(), err)
		}
		for key := range acked {
			if _, ok := rec.Values.Lookup(key); !ok {
				t.Fatalf("%s: acknowledged write %s lost", n.ID(), key)
			}
		}
	}
}

func TestGracefulLeaveShrinksConfiguration(t *testing.T) {
	slow(t)
	nodes := startCluster(t, 3, nil)
	var leaver *Node
	for _, n := range nodes {
		if !n.IsLeader() {
			leaver = n
			break
		}
	}
	if err := leaver.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("leave: %v", err)
	}
	var rest []*Node
	for _, n := range nodes {
		if n != leaver {
			rest = append(rest, n)
		}
	}
	leader := leaderOf(rest)
	if leader == nil {
		t.Fatal("no leader after a follower left")
	}
	if _, ok := suffrage(leader, leaver.ID()); ok {
		t.Fatalf("%s still in the configuration after leaving", leaver.ID())
	}
	create(t, rest[0].Store(), session.NewID(), "k", "v")
}

func TestLeaderLeaveHandsOver(t *testing.T) {
	slow(t)
	nodes := startCluster(t, 3, nil)
	old := leaderOf(nodes)
	if err := old.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("leave: %v", err)
	}
	var rest []*Node
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	waitFor(t, 10*time.Second, "new leader without the old one", func() bool {
		l := leaderOf(rest)
		if l == nil {
			return false
		}
		_, ok := suffrage(l, old.ID())
		return !ok
	})
	create(t, rest[1].Store(), session.NewID())
}

func TestRestartedNodeRejoins(t *testing.T) { forEachLogStore(t, testRestartedNodeRejoins) }

func testRestartedNodeRejoins(t *testing.T, logStore func(*Config)) {
	nodes, cfgs := startClusterConfigs(t, 3, logStore)
	f := followersOf(nodes)[0]
	idx := 0
	for i, n := range nodes {
		if n == f {
			idx = i
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	id := session.NewID()
	r := create(t, leaderOf(nodes).Store(), id, "while", "away")
	// Same data dir, ID and addresses, as a restarted process has.
	cfg := cfgs[idx]
	cfg.Join = []string{leaderOf(nodes).GossipAddr()}
	back := mustStart(t, cfg)
	waitFor(t, 15*time.Second, "restarted node catches up", func() bool { return back.fsm.AppliedIndex() >= r.Index })
	rec, err := back.Store().Load(ctxT(t, time.Second), id, session.LoadOptions{Level: session.Local})
	if err != nil || string(rec.Values.Get("while")) != "away" {
		t.Fatalf("got %v, %v", rec, err)
	}
}

func TestWrongGossipKeyCannotJoin(t *testing.T) {
	slow(t)
	key := make([]byte, 32)
	rand.Read(key)
	nodes := startCluster(t, 1, func(c *Config) { c.GossipKeys = [][]byte{key} })
	other := make([]byte, 32)
	rand.Read(other)
	cfg := testConfig(t, "intruder", t.TempDir())
	cfg.GossipKeys = [][]byte{other}
	cfg.Join = []string{nodes[0].GossipAddr()}
	cfg.JoinOnly = true
	intruder := mustStart(t, cfg)
	// Give the join loop several attempts; the member list must stay 1.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if nodes[0].ml.NumMembers() != 1 || intruder.ml.NumMembers() != 1 {
			t.Fatal("a node with the wrong gossip key joined")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok := suffrage(nodes[0], "intruder"); ok {
		t.Fatal("intruder was added to raft")
	}
}

func TestGarbageOnRaftPort(t *testing.T) {
	nodes := startCluster(t, 1, nil)
	n := nodes[0]
	junk := make([]byte, 4096)
	for i := range 50 {
		c, err := net.Dial("tcp", n.RaftAddr())
		if err != nil {
			t.Fatal(err)
		}
		rand.Read(junk)
		switch i % 3 {
		case 0: // random bytes, any first byte
		case 1:
			junk[0] = protoForward // a forwarding stream with a garbage frame
		case 2:
			junk[0] = protoRaft // a raft stream with garbage
		}
		c.Write(junk)
		c.Close()
	}
	// A half-open connection that never sends a byte.
	idle, err := net.Dial("tcp", n.RaftAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	id := session.NewID()
	create(t, n.Store(), id, "still", "working")
	if !n.IsLeader() {
		t.Fatal("node lost leadership after garbage")
	}
}

func TestLeaderProposesExpire(t *testing.T) {
	nodes := startCluster(t, 1, func(c *Config) { c.ExpireInterval = 100 * time.Millisecond })
	n := nodes[0]
	id := session.NewID()
	_, err := n.Store().Commit(ctxT(t, time.Second), &session.Change{ID: id, Create: true,
		Delta: session.Delta{IdleTimeout: 200 * time.Millisecond, Lifetime: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	create(t, n.Store(), session.NewID()) // long-lived, must stay
	if got := n.fsm.Len(); got != 2 {
		t.Fatalf("got %d records, want 2", got)
	}
	waitFor(t, 5*time.Second, "the idle session to be removed by Expire", func() bool { return n.fsm.Len() == 1 })
	if _, err := n.Store().Load(ctxT(t, time.Second), id, session.LoadOptions{}); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("expired session: got %v, want ErrNotFound", err)
	}
}

func TestForwardingSurvivesLeaderRestart(t *testing.T) {
	forEachLogStore(t, testForwardingSurvivesLeaderRestart)
}

func testForwardingSurvivesLeaderRestart(t *testing.T, logStore func(*Config)) {
	nodes, cfgs := startClusterConfigs(t, 3, logStore)
	id := session.NewID()
	leader := leaderOf(nodes)
	f := followersOf(nodes)[0]
	create(t, f.Store(), id) // opens pooled connections from f to the leader
	var li int
	for i, n := range nodes {
		if n == leader {
			li = i
		}
	}
	leader.shutdown() // crash: pooled connections on f now point at a dead process
	cfg := cfgs[li]
	cfg.Join = []string{f.GossipAddr()}
	nodes[li] = mustStart(t, cfg)
	waitFor(t, 15*time.Second, "a leader all nodes know", func() bool { return leaderOf(nodes) != nil && allKnowLeader(nodes) })
	// Make the restarted node the leader again, so f forwards to the same
	// address it had pooled connections to.
	if l := leaderOf(nodes); l != nodes[li] {
		if err := l.raft.LeadershipTransferToServer(raft.ServerID(cfg.NodeID), raft.ServerAddress(cfg.RaftAddr)).Error(); err != nil {
			t.Logf("leadership transfer: %v (the test still checks forwarding to the new leader)", err)
		}
		waitFor(t, 10*time.Second, "a ready leader", func() bool { return leaderOf(nodes) != nil && allKnowLeader(nodes) })
	}
	if f == leaderOf(nodes) {
		f = followersOf(nodes)[0]
	}
	for i := range 20 {
		if _, err := f.Store().Commit(ctxT(t, 3*time.Second), &session.Change{ID: id, Delta: session.Delta{
			Ops: []session.Op{{Kind: session.OpIncr, Key: "n", Delta: 1}}}}); err != nil {
			t.Fatalf("commit %d after the leader restarted: %v", i, err)
		}
	}
}

func TestLogoutIsVisibleEverywhereWhenAcknowledged(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	fs := followersOf(nodes)
	for i := range 20 {
		id := session.NewID()
		r := create(t, fs[0].Store(), id, "user", "alice")
		// The old cookie still names index r.Index; the destroy goes through
		// one follower and the old cookie is replayed on every node at once.
		if _, err := fs[i%2].Store().Commit(ctxT(t, 3*time.Second), &session.Change{ID: id, Destroy: true}); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if rec, err := n.Store().Load(ctxT(t, time.Second), id, session.LoadOptions{MinIndex: r.Index}); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("round %d, %s: old cookie after logout: got %v, %v; want ErrNotFound", i, n.ID(), rec, err)
			}
		}
	}
}

func TestCutOffFollowerStopsServingLocalState(t *testing.T) {
	slow(t)
	nodes := startCluster(t, 3, func(c *Config) { c.MaxStale = 300 * time.Millisecond })
	f := followersOf(nodes)[0]
	id := session.NewID()
	r := create(t, leaderOf(nodes).Store(), id, "k", "v")
	waitFor(t, 5*time.Second, "follower applied the write", func() bool { return f.fsm.AppliedIndex() >= r.Index })
	for _, n := range nodes {
		if n != f {
			n.shutdown()
		}
	}
	waitFor(t, 5*time.Second, "the follower's last contact to age past MaxStale", func() bool {
		return time.Since(f.raft.LastContact()) > 300*time.Millisecond
	})
	_, err := f.Store().Load(ctxT(t, 5*time.Second), id, session.LoadOptions{MinIndex: r.Index})
	if !session.Unavailable(err) {
		t.Fatalf("read-your-writes read on a cut-off follower: got %v, want an unavailable error", err)
	}
	rec, err := f.Store().Load(ctxT(t, time.Second), id, session.LoadOptions{Level: session.Local})
	if err != nil || string(rec.Values.Get("k")) != "v" {
		t.Fatalf("local read: got %v, %v; want k=v", rec, err)
	}
}

func TestDeadVoterIsReplaced(t *testing.T) {
	slow(t)
	fast := func(c *Config) { c.DeadServerTimeout = time.Second }
	nodes := startCluster(t, 3, fast)
	cfg := testConfig(t, "spare", t.TempDir())
	fast(&cfg)
	cfg.BootstrapExpect = 3
	cfg.Join = []string{nodes[0].GossipAddr()}
	spare := mustStart(t, cfg)
	leader := leaderOf(nodes)
	waitFor(t, 15*time.Second, "the spare as a non-voter", func() bool {
		s, ok := suffrage(leader, "spare")
		return ok && s == raft.Nonvoter
	})
	victim := followersOf(nodes)[0]
	victim.shutdown() // dies without leaving
	waitFor(t, 30*time.Second, "the dead voter removed and the spare promoted", func() bool {
		_, dead := suffrage(leader, victim.ID())
		s, _ := suffrage(leader, "spare")
		return !dead && s == raft.Voter && leader.voters() == 3
	})
	create(t, spare.Store(), session.NewID())
}
