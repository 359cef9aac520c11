package e2e

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftsession/raftsession/internal/nodeproc"
	"github.com/raftsession/raftsession/test/e2e/harness"
)

// loseReplies: the leader applies what followers forward and every third
// answer it sends back on those connections is lost, the connection cut,
// while browsers increment views on every node (two in three land on a
// follower and are forwarded). Each lost reply is an unknown outcome the
// follower must turn into a retry under the same request number, which
// the state machine applies at most once: no increment counts twice (the
// checker sees views jump otherwise) and no browser sees an unknown
// outcome. The leader is killed as well, with replies still being lost,
// so retries also cross a change of leader.
var loseReplies = scenario{name: "lose-replies", fault: func(r *run) {
	l := r.leader()
	before := r.w.hist.Stats()
	lostBefore := r.c.LostReplies()
	r.logf("lose every 3rd reply of leader %s", l.ID)
	l.LoseReplies(3)
	r.waitAcks(150, 60*time.Second)
	l.LoseReplies(0)
	r.logf("kill -9 leader %s, then lose replies of the next", l.ID)
	r.must(l.Kill())
	nl := r.leader()
	nl.LoseReplies(3)
	r.waitAcks(100, 60*time.Second)
	nl.LoseReplies(0)
	r.must(l.Restart())
	r.must(r.c.WaitHealthy(60 * time.Second))
	after := r.w.hist.Stats()
	lost := r.c.LostReplies() - lostBefore
	unknown := after.Unknown - before.Unknown
	r.report = append(r.report, fmt.Sprintf("%d replies lost, %d writes of unknown outcome", lost, unknown))
	if lost == 0 {
		r.t.Error("no reply was lost: the fault did nothing")
	}
	// A kill -9 can still leave a write in flight to the dead leader
	// unanswered past ForwardHold only if no leader is elected in time;
	// lost replies alone must never surface.
	if unknown > 2 {
		r.t.Errorf("%d writes ended with an unknown outcome while replies were lost; retries should have answered them", unknown)
	}
}}

// logoutCutOffFollower: browsers log in, a follower is cut off from the
// others, the browsers log out on the connected side, and then replay
// their pre-logout cookies on the cut-off follower. It has not applied the
// logouts and cannot be told; it must stop serving its own state once it
// has been out of touch with the leader for MaxStale, so every replay is
// refused (503, no leader in reach) or finds no session, never the
// logged-in user.
var logoutCutOffFollower = scenario{name: "logout-cut-off-follower", fault: func(r *run) {
	f := r.follower()
	var others []*harness.Node
	for _, n := range r.c.Members() {
		if n != f {
			others = append(others, n)
		}
	}
	const users = 10
	old := make([]map[string]string, users)
	for i := range users {
		j := &jar{}
		if code, _ := r.call(others[i%len(others)], j, http.MethodPost, fmt.Sprintf("/api/login?user=cut%d", i)); code != http.StatusOK {
			r.t.Fatalf("login: HTTP %d", code)
		}
		old[i] = j.snapshot()
		// The follower has the logged-in session before it is cut off.
		r.must(nodeproc.Poll(10*time.Second, func() error {
			code, body := r.call(f, &jar{cookies: maps.Clone(old[i])}, http.MethodGet, "/api/session")
			if code != http.StatusOK || !strings.Contains(body, fmt.Sprintf(`"user":"cut%d"`, i)) {
				return fmt.Errorf("follower %s: HTTP %d %s", f.ID, code, body)
			}
			return nil
		}))
	}
	r.logf("isolate follower %s", f.ID)
	f.Isolate()
	for i := range users {
		j := &jar{cookies: maps.Clone(old[i])}
		if code, _ := r.call(others[(i+1)%len(others)], j, http.MethodPost, "/api/logout"); code != http.StatusNoContent {
			r.t.Fatalf("logout: HTTP %d", code)
		}
	}
	served := 0
	for i := range users {
		code, body := r.call(f, &jar{cookies: maps.Clone(old[i])}, http.MethodGet, "/api/session")
		if code == http.StatusOK && strings.Contains(body, fmt.Sprintf(`"user":"cut%d"`, i)) {
			served++
			r.t.Errorf("cut-off follower %s served a logged-out session: %s", f.ID, strings.TrimSpace(body))
		}
	}
	r.report = append(r.report, fmt.Sprintf("%d of %d logged-out sessions served by the cut-off follower", served, users))
	r.logf("heal %s", f.ID)
	f.Heal()
	r.must(r.c.WaitHealthy(60 * time.Second))
}}

// call sends one request with j's cookies to n and updates j.
func (r *run) call(n *harness.Node, j *jar, method, path string) (int, string) {
	r.t.Helper()
	return j.do(r.t, &http.Client{Timeout: 10 * time.Second}, n, method, path, "")
}

// do sends one request with j's cookies to n, reads the answer and keeps
// the cookies it sets, as a browser would. A transport error fails t.
func (j *jar) do(t testing.TB, c *http.Client, n *harness.Node, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, n.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if h := j.header(); h != "" {
		req.Header.Set("Cookie", h)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, n.ID, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	j.update(resp.Cookies())
	return resp.StatusCode, string(data)
}
