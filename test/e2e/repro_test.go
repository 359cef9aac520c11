package e2e

import (
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftsession/raftsession/test/e2e/harness"
)

// TestLogoutLaggingReplicaRYW: under -consistency ryw a replica serves a
// session from local state once it has applied the cookie's index, and a
// cookie saved before a logout carries an index older than the logout. A
// replica cut off from the leader when the logout happens must still never
// serve the logged-out session to that cookie: it answers 503 (it cannot
// reach the leader) or a new, empty session.
func TestLogoutLaggingReplicaRYW(t *testing.T) {
	if soakFor > 0 {
		t.Skip("E2E_SOAK is set")
	}
	if testing.Short() {
		t.Skip("-short runs only the kill-leader scenario")
	}
	c := harness.Start(t, harness.Options{Consistency: "ryw",
		Artifacts: filepath.Join(artifactsRoot, "TestLogoutLaggingReplicaRYW")})
	l, err := c.WaitLeader(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var f *harness.Node
	for _, n := range c.Members() {
		if n != l {
			f = n
			break
		}
	}
	j := &jar{}
	call := func(n *harness.Node, method, path string) (int, string) {
		t.Helper()
		code, body := j.do(t, http.DefaultClient, n, method, path, "")
		return code, strings.TrimSpace(body)
	}
	if code, body := call(l, http.MethodPost, "/api/login?user=alice"); code != http.StatusOK {
		t.Fatalf("login: %d %s", code, body)
	}
	if err := f.WaitCaughtUp(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	old := j.snapshot()
	f.Isolate()
	defer f.Heal()
	if code, body := call(l, http.MethodPost, "/api/logout"); code != http.StatusNoContent {
		t.Fatalf("logout: %d %s", code, body)
	}
	// The replica never hears of the logout while it is cut off; the old
	// cookie must not find the session there, now or later.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		j.cookies = maps.Clone(old)
		code, body := call(f, http.MethodGet, "/api/session")
		if code == http.StatusOK && !strings.Contains(body, `"new":true`) {
			t.Fatalf("lagging replica %s served the logged-out session to its old cookie: %s", f.ID, body)
		}
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Fatalf("GET on %s: HTTP %d %s", f.ID, code, body)
		}
	}
}
