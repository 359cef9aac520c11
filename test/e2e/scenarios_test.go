package e2e

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftsession/raftsession/internal/nodeproc"
	"github.com/raftsession/raftsession/test/e2e/harness"
)

// scenario is one fault schedule run under concurrent load.
type scenario struct {
	name        string
	consistency string   // default ryw
	nodes       int      // default 3
	args        []string // extra node flags
	browsers    int      // single-tab browsers (default 6)
	twoTab      int      // two-tab browsers (linearizable only)
	// short marks the scenario that also runs under go test -short: one
	// fault, the commonest, so that a quick run still drives real
	// processes through a failover and the checker.
	short bool
	// fault runs while the load is on and must leave every node it
	// touched running, resumed and healed (or departed).
	fault func(r *run)
}

// run is one execution of a scenario.
type run struct {
	t      *testing.T
	c      *harness.Cluster
	w      *Workload
	dir    string
	report []string
	// staleAfterLogout counts old cookies still served right after logout
	// (logout-old-cookie): a failure.
	staleAfterLogout int
}

func (r *run) logf(format string, args ...any) {
	r.t.Helper()
	r.t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// must fails the run on err.
func (r *run) must(err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
}

// waitAcks waits until n more writes have been acknowledged.
func (r *run) waitAcks(n int, timeout time.Duration) {
	r.t.Helper()
	target := r.w.hist.Stats().Writes + n
	r.must(nodeproc.Poll(timeout, func() error {
		if got := r.w.hist.Stats().Writes; got < target {
			return fmt.Errorf("%d of %d acknowledged writes", got, target)
		}
		return nil
	}))
}

func (r *run) leader() *harness.Node {
	r.t.Helper()
	l, err := r.c.WaitLeader(30 * time.Second)
	r.must(err)
	return l
}

// follower returns a running voter that does not lead.
func (r *run) follower() *harness.Node {
	r.t.Helper()
	l := r.leader()
	// Right after start-up an election can still be settling: ask until
	// every node agrees on a leader again.
	var ls nodeproc.Status
	r.must(nodeproc.Poll(30*time.Second, func() error {
		var err error
		l, ls, err = r.c.Leader()
		return err
	}))
	for _, n := range r.c.Members() {
		if n != l && n.Running() && slices.Contains(ls.Voters(), n.ID) {
			return n
		}
	}
	r.t.Fatal("no follower voter")
	return nil
}

var nonWord = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// runScenario starts a cluster, runs the load and the fault, heals,
// checks the history and convergence, and adds a row to the summary.
func runScenario(t *testing.T, sc scenario, seed uint64) {
	if sc.consistency == "" {
		sc.consistency = "ryw"
	}
	if sc.browsers == 0 {
		sc.browsers = 6
	}
	name := nonWord.ReplaceAllString(t.Name(), "_")
	dir := filepath.Join(artifactsRoot, name)
	start := time.Now()
	c := harness.Start(t, harness.Options{Nodes: sc.nodes, Consistency: sc.consistency, Args: sc.args, Artifacts: dir})
	w := &Workload{Targets: c.Serving, Browsers: sc.browsers, TwoTab: sc.twoTab, Seed: seed, Users: fmt.Sprintf("s%d-", seed)}
	r := &run{t: t, c: c, w: w, dir: dir}
	stop := w.Run()
	stopped := false
	var h *History
	finish := func() *History {
		if !stopped {
			stopped = true
			h = stop()
		}
		return h
	}
	defer finish()
	// A run that stops early (t.Fatal in a fault or a wait) still counts
	// in the summary, as failed.
	counted := false
	defer func() {
		if !counted {
			summary.add(sc.name, finish().Stats(), Verdict{}, true)
		}
	}()
	r.logf("cluster up in %v; load running", time.Since(start).Round(time.Millisecond))
	r.waitAcks(50, 30*time.Second)
	sc.fault(r)
	r.waitAcks(50, 30*time.Second)
	h = finish()
	r.logf("load stopped")

	if err := c.WaitHealthy(60 * time.Second); err != nil {
		t.Errorf("cluster not healthy after the fault: %v", err)
	}
	sessions, err := c.WaitConverged(30 * time.Second)
	if err != nil {
		t.Errorf("replicas did not converge: %v", err)
	}
	var targets []string
	for _, n := range c.Members() {
		if n.Running() {
			targets = append(targets, n.URL())
		}
	}
	if err := w.FinalReads(targets); err != nil {
		t.Errorf("replicas disagree on session contents:\n%v", err)
	}
	v := Check(h, dir, name, time.Minute)
	st := h.Stats()
	if v.Violations > 0 {
		t.Errorf("%d of %d browsers saw a non-linearizable history; see %s", v.Violations, v.Browsers, strings.Join(v.Files, ", "))
	}
	if v.Inconclusive > 0 {
		t.Logf("checker ran out of time on %d browsers", v.Inconclusive)
	}
	r.logf("%s: %d sessions on every node; ops %d (acked writes %d, unknown %d, failed %d, reads %d, read failures %d); violations %d; max write gap %v; answers %v %s",
		sc.name, sessions, st.Ops, st.Writes, st.Unknown, st.Failed, st.Reads, st.ReadFailures, v.Violations,
		st.MaxWriteGap.Round(time.Millisecond), st.Statuses, strings.Join(r.report, "; "))
	if r.staleAfterLogout > 0 {
		t.Errorf("old cookie served %d times right after logout", r.staleAfterLogout)
	}
	summary.add(sc.name, st, v, t.Failed())
	counted = true
}

// scenarioTest runs sc once, unless a soak is on (TestSoak runs it then)
// or -short leaves it out.
func scenarioTest(t *testing.T, sc scenario) {
	if soakFor > 0 {
		t.Skip("E2E_SOAK is set: TestSoak runs this scenario")
	}
	if testing.Short() && !sc.short {
		t.Skip("-short runs only the kill-leader scenario")
	}
	runScenario(t, sc, 1)
}

// TestSoak loops over every scenario until E2E_SOAK has passed.
func TestSoak(t *testing.T) {
	if soakFor == 0 {
		t.Skip("set E2E_SOAK=20m (and -timeout 0) to soak")
	}
	deadline := time.Now().Add(soakFor)
	for i := uint64(1); time.Now().Before(deadline); i++ {
		for _, sc := range scenarios {
			if !time.Now().Before(deadline) {
				break
			}
			t.Run(fmt.Sprintf("%s/%d", sc.name, i), func(t *testing.T) { runScenario(t, sc, i) })
		}
	}
}

func TestKillLeader(t *testing.T)      { scenarioTest(t, killLeader) }
func TestRollingRestart(t *testing.T)  { scenarioTest(t, rollingRestart) }
func TestIsolateLeader(t *testing.T)   { scenarioTest(t, isolateLeader) }
func TestPauseLeader(t *testing.T)     { scenarioTest(t, pauseLeader) }
func TestSnapshotCatchUp(t *testing.T) { scenarioTest(t, snapshotCatchUp) }
func TestJoinUnderLoad(t *testing.T)   { scenarioTest(t, joinUnderLoad) }
func TestGracefulLeave(t *testing.T)   { scenarioTest(t, gracefulLeave) }
func TestFullRestart(t *testing.T)     { scenarioTest(t, fullRestart) }
func TestLogoutOldCookie(t *testing.T) { scenarioTest(t, logoutOldCookieLin) }

// TestLogoutOldCookieRYW is the same under the default consistency, where
// an old cookie's index predates the logout: it passes because a logout is
// acknowledged only once every replica applied it or stopped serving.
func TestLogoutOldCookieRYW(t *testing.T)   { scenarioTest(t, logoutOldCookieRYW) }
func TestTwoTabs(t *testing.T)              { scenarioTest(t, twoTabs) }
func TestLoseReplies(t *testing.T)          { scenarioTest(t, loseReplies) }
func TestLogoutCutOffFollower(t *testing.T) { scenarioTest(t, logoutCutOffFollower) }

var (
	logoutOldCookieLin = logoutOldCookie("logout-old-cookie", "linearizable")
	logoutOldCookieRYW = logoutOldCookie("logout-old-cookie-ryw", "ryw")
)

var scenarios = []scenario{killLeader, rollingRestart, isolateLeader, pauseLeader, snapshotCatchUp,
	joinUnderLoad, gracefulLeave, fullRestart, logoutOldCookieLin, logoutOldCookieRYW, twoTabs,
	loseReplies, logoutCutOffFollower}

// killLeader: kill -9 the leader and restart it; then kill -9 a follower
// and restart it.
var killLeader = scenario{name: "kill-leader", short: true, fault: func(r *run) {
	l := r.leader()
	r.logf("kill -9 leader %s", l.ID)
	r.must(l.Kill())
	nl := r.leader()
	r.logf("new leader %s", nl.ID)
	r.waitAcks(50, 30*time.Second)
	r.must(l.Restart())
	r.must(r.c.WaitHealthy(60 * time.Second))
	f := r.follower()
	r.logf("kill -9 follower %s", f.ID)
	r.must(f.Kill())
	r.waitAcks(50, 30*time.Second)
	r.must(f.Restart())
	r.must(r.c.WaitHealthy(60 * time.Second))
}}

// rollingRestart: SIGTERM and restart every node, one at a time.
var rollingRestart = scenario{name: "rolling-restart", fault: func(r *run) {
	for _, n := range r.c.Members() {
		r.logf("restart %s", n.ID)
		r.must(n.Stop(20 * time.Second))
		r.waitAcks(20, 30*time.Second)
		r.must(n.Restart())
		r.must(r.c.WaitHealthy(60 * time.Second))
	}
}}

// isolateLeader: cut the leader off; it must acknowledge no write it
// receives afterwards (the checker also holds every browser's reads to
// its acknowledged writes, wherever they were served).
var isolateLeader = scenario{name: "isolate-leader", fault: func(r *run) {
	l := r.leader()
	cut := r.w.hist.now()
	r.logf("isolate leader %s", l.ID)
	l.Isolate()
	nl := r.leader()
	r.logf("new leader %s", nl.ID)
	// Requests that land on the isolated node now take ForwardHold (2s)
	// to fail, since it no longer serves its own stale state, and each
	// login or logout waits 2×MaxStale for it: progress is slower.
	r.waitAcks(100, 60*time.Second)
	healAt := r.w.hist.now()
	r.logf("heal %s", l.ID)
	l.Heal()
	r.must(r.c.WaitHealthy(60 * time.Second))
	n := 0
	for _, op := range r.w.hist.Ops() {
		if op.Node == l.ID && op.Outcome == "ok" && op.Call > cut && op.Return < healAt &&
			(op.In.Kind == opPut || op.In.Kind == opViews || op.In.Kind == opLogin) {
			n++
			r.t.Errorf("isolated %s acknowledged %s", l.ID, describe(op.In, op.Out))
		}
	}
	r.report = append(r.report, fmt.Sprintf("writes acknowledged by the isolated node: %d", n))
}}

// pauseLeader: SIGSTOP the leader until the others have elected a new one
// and taken writes, then SIGCONT it. Requests in flight to the paused node
// wait in its listen queue (new ones go elsewhere, as a load balancer's
// health check would see to); the pause stays well under the browsers'
// request timeout, so they are answered after the resume rather than
// abandoned while the node may still act on them.
var pauseLeader = scenario{name: "pause-leader", fault: func(r *run) {
	l := r.leader()
	r.logf("pause leader %s", l.ID)
	r.must(l.Pause())
	resumed := false
	defer func() {
		if !resumed {
			_ = l.Resume()
		}
	}()
	before := r.w.hist.Stats().Writes
	nl := r.leader()
	r.logf("new leader %s", nl.ID)
	_ = nodeproc.Poll(4*time.Second, func() error {
		if r.w.hist.Stats().Writes < before+5 {
			return errors.New("waiting")
		}
		return nil
	})
	acked := r.w.hist.Stats().Writes - before
	r.report = append(r.report, fmt.Sprintf("%d writes acknowledged while %s was paused", acked, l.ID))
	if acked == 0 {
		// Forwarded writes in flight to the paused leader must give up
		// when the new leader is elected, not wait out CommitTimeout.
		r.t.Errorf("no write acknowledged within 4s of pausing leader %s although %s was elected", l.ID, nl.ID)
	}
	r.logf("resume %s", l.ID)
	r.must(l.Resume())
	resumed = true
	r.must(r.c.WaitHealthy(60 * time.Second))
}}

// snapshotCatchUp: isolate a follower until the others have compacted
// their logs past it; healed, it must catch up by snapshot.
var snapshotCatchUp = scenario{name: "snapshot-catch-up",
	args: []string{"-snapshot-threshold", "64", "-trailing-logs", "32", "-snapshot-interval", "1s"},
	fault: func(r *run) {
		f := r.follower()
		fs, err := f.Status()
		r.must(err)
		r.logf("isolate follower %s at last index %d", f.ID, fs.LastIndex)
		f.Isolate()
		r.must(nodeproc.Poll(90*time.Second, func() error {
			for _, n := range r.c.Members() {
				if n == f {
					continue
				}
				snaps := n.Snapshots()
				if len(snaps) == 0 || slices.Max(snaps) <= fs.LastIndex+40 {
					return fmt.Errorf("%s snapshots %v; follower at %d", n.ID, snaps, fs.LastIndex)
				}
			}
			return nil
		}))
		r.logf("others compacted past %d; heal %s", fs.LastIndex, f.ID)
		f.Heal()
		r.must(f.WaitCaughtUp(60 * time.Second))
		if snaps := f.Snapshots(); len(snaps) == 0 || slices.Max(snaps) <= fs.LastIndex {
			r.t.Errorf("%s caught up without installing a snapshot past %d (snapshots %v)", f.ID, fs.LastIndex, snaps)
		} else {
			r.report = append(r.report, fmt.Sprintf("%s installed snapshot at %d", f.ID, slices.Max(snaps)))
		}
	}}

// joinUnderLoad: a new node joins while the load runs, catches up, and
// serves the sessions created before it existed (the final reads go to
// every node, the new one included).
var joinUnderLoad = scenario{name: "join-under-load", fault: func(r *run) {
	r.waitAcks(100, 30*time.Second)
	n, err := r.c.AddNode()
	r.must(err)
	r.logf("added %s", n.ID)
	r.must(r.c.WaitHealthy(60 * time.Second))
	r.waitAcks(100, 30*time.Second)
	served := 0
	for _, op := range r.w.hist.Ops() {
		if op.Node == n.ID && op.Outcome == "ok" {
			served++
		}
	}
	if served == 0 {
		r.t.Errorf("%s served no request", n.ID)
	}
	r.report = append(r.report, fmt.Sprintf("%s served %d requests", n.ID, served))
}}

// gracefulLeave: a voter leaves; the configuration shrinks and writes go on.
var gracefulLeave = scenario{name: "graceful-leave", fault: func(r *run) {
	f := r.follower()
	r.logf("%s leaves", f.ID)
	r.must(f.Leave(30 * time.Second))
	r.must(nodeproc.Poll(30*time.Second, func() error {
		_, ls, err := r.c.Leader()
		if err != nil {
			return err
		}
		for _, m := range ls.Members {
			if m.ID == f.ID {
				return fmt.Errorf("%s still a member: %+v", f.ID, m)
			}
		}
		if v := ls.Voters(); len(v) != 2 {
			return fmt.Errorf("voters %v", v)
		}
		return nil
	}))
	r.waitAcks(100, 30*time.Second)
}}

// fullRestart: stop every node, start them all again; every acknowledged
// session is there (the final reads and the checker say so).
var fullRestart = scenario{name: "full-restart", fault: func(r *run) {
	ns := r.c.Members()
	for _, n := range ns {
		r.logf("stop %s", n.ID)
		r.must(n.Stop(20 * time.Second))
	}
	for _, n := range ns {
		r.must(n.Restart())
	}
	r.logf("all restarted")
	r.must(r.c.WaitHealthy(60 * time.Second))
}}

// twoTabs: browsers with two tabs editing different keys of one session
// at once, under linearizable reads, across a leader kill.
var twoTabs = scenario{name: "two-tabs", consistency: "linearizable", browsers: 2, twoTab: 6, fault: func(r *run) {
	r.waitAcks(100, 30*time.Second)
	l := r.leader()
	r.logf("kill -9 leader %s", l.ID)
	r.must(l.Kill())
	r.leader()
	r.waitAcks(100, 30*time.Second)
	r.must(l.Restart())
	r.must(r.c.WaitHealthy(60 * time.Second))
}}

// logoutOldCookie: log out on one node, then use the old cookie on
// another node at once: the session is gone; and a write with the old
// cookie does not bring it back (checked on the leader, which has applied
// the logout before it answered the write).
func logoutOldCookie(name, consistency string) scenario {
	return scenario{name: name, consistency: consistency, fault: func(r *run) {
		client := &http.Client{Timeout: 10 * time.Second}
		stale, resurrected := 0, 0
		const rounds = 30
		for i := range rounds {
			ns := r.c.Members()
			a, b, c := ns[i%len(ns)], ns[(i+1)%len(ns)], ns[(i+2)%len(ns)]
			j := &jar{}
			call := func(n *harness.Node, method, path, body string) (int, string) {
				return j.do(r.t, client, n, method, path, body)
			}
			if code, _ := call(a, http.MethodPut, "/api/session/values/secret", fmt.Sprint("v", i)); code != http.StatusNoContent {
				r.t.Fatalf("put: HTTP %d", code)
			}
			if code, _ := call(a, http.MethodPost, fmt.Sprintf("/api/login?user=old%d", i), ""); code != http.StatusOK {
				r.t.Fatalf("login: HTTP %d", code)
			}
			old := j.snapshot()
			if code, _ := call(a, http.MethodPost, "/api/logout", ""); code != http.StatusNoContent {
				r.t.Fatalf("logout: HTTP %d", code)
			}
			j.cookies = maps.Clone(old)
			if code, body := call(b, http.MethodGet, "/api/session", ""); code != http.StatusOK || !strings.Contains(body, `"new":true`) {
				stale++
				if stale <= 3 {
					r.logf("round %d: old cookie on %s right after logout on %s: HTTP %d %s", i, b.ID, a.ID, code, strings.TrimSpace(body))
				}
			}
			j.cookies = maps.Clone(old)
			call(c, http.MethodPut, "/api/session/values/late", "x")
			l := r.leader()
			j.cookies = maps.Clone(old)
			if code, body := call(l, http.MethodGet, "/api/session", ""); code != http.StatusOK || !strings.Contains(body, `"new":true`) {
				resurrected++
				r.t.Errorf("round %d: after a write with the old cookie on %s, leader %s serves the session: HTTP %d %s", i, c.ID, l.ID, code, body)
			}
		}
		r.report = append(r.report, fmt.Sprintf("%d rounds: old cookie still served %d times right after logout, resurrected %d", rounds, stale, resurrected))
		if stale > 0 {
			r.staleAfterLogout = stale
		}
	}}
}
