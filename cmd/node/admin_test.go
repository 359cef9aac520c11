package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftsession/raftsession/cluster"
	"github.com/raftsession/raftsession/internal/nodeproc"
)

func TestAdminEndpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a raft node")
	}
	m := mustRunWith(t, "", nil)
	c := newClient(t)
	admin, app := "http://"+m.AdminAddr(), "http://"+m.HTTPAddr()

	r := c.do("GET", admin+"/healthz", "")
	expect(t, "healthz", r, 200)
	if r.header.Get("X-Node") != "t1" {
		t.Errorf("admin X-Node: got %q, want t1", r.header.Get("X-Node"))
	}
	expect(t, "readyz", c.do("GET", admin+"/readyz", ""), 200)
	// The only voter cannot leave; the refusal changes nothing.
	expect(t, "leave of the last voter", c.do("POST", admin+"/cluster/leave", ""), 409)
	expect(t, "readyz after a refused leave", c.do("GET", admin+"/readyz", ""), 200)
	select {
	case <-m.Done():
		t.Fatal("a refused leave stopped the node")
	default:
	}

	expect(t, "login", c.do("POST", app+"/api/login?user=alice", ""), 200)
	r = c.do("GET", admin+"/cluster/status", "")
	expect(t, "status", r, 200)
	var st statusJSON
	if err := json.Unmarshal([]byte(r.body), &st); err != nil {
		t.Fatal(err)
	}
	if st.ID != "t1" || st.State != "Leader" || st.Sessions != 1 || !st.Ready || st.KeySource != "replicated" || len(st.SigningKeys) != 1 {
		t.Fatalf("status: got %s", r.body)
	}
	// Keys never appear: the status has IDs only.
	for _, k := range m.Node().Store().SigningKeys() {
		if strings.Contains(r.body, string(k.Secret)) || strings.Contains(r.body, b64(k.Secret)) {
			t.Fatal("status shows a signing key")
		}
	}

	r = c.do("GET", admin+"/metrics", "")
	expect(t, "metrics", r, 200)
	for _, name := range []string{"raftsession_raft_state{state=\"Leader\"} 1", "raftsession_raft_term",
		"raftsession_raft_applied_index", "raftsession_raft_commit_index", "raftsession_raft_last_contact_seconds",
		"raftsession_sessions 1", "raftsession_commits_total", "raftsession_commit_duration_seconds_bucket",
		"raftsession_forwarded_total", "raftsession_read_waits_total", "raftsession_read_fallbacks_total",
		"raftsession_node_port_refused_total", "raftsession_commit_retries_total",
		"raftsession_batch_entries_total", "raftsession_batch_commands_total", "raftsession_batch_holds_total",
		"raftsession_batch_hold_misses_total", "raft_commitTime", "go_goroutines"} {
		if !strings.Contains(r.body, name) {
			t.Errorf("metrics lack %s", name)
		}
	}

	// Rotation: old cookies keep working across one rotation (and are
	// re-signed); keys older than the two newest are retired; a rotation
	// within the grace period of the previous one is refused. Each
	// rotation waits out cluster.SigningKeyGrace.
	first := m.Node().Store().SigningKeys()[0].ID
	var rot rotateResult
	for i := range 2 {
		r = c.do("POST", admin+"/cluster/rotate-key", "")
		expect(t, "rotate-key", r, 200)
		if i == 0 {
			expect(t, "rotate-key too soon", c.do("POST", admin+"/cluster/rotate-key", ""), 409)
		}
		if err := json.Unmarshal([]byte(r.body), &rot); err != nil {
			t.Fatal(err)
		}
		if len(rot.Keys) != 2 || rot.Keys[0] != rot.Primary {
			t.Fatalf("rotation %d: got %s", i, r.body)
		}
		s := decode[sessionJSON](t, c.do("GET", app+"/api/session", ""))
		if s.Owner != "user:alice" {
			t.Fatalf("rotation %d logged the user out: %+v", i, s)
		}
		nodeproc.WaitFor(t, 10*time.Second, "the new key to sign", func() error {
			if id := m.keys.signing(); id != rot.Primary {
				return fmt.Errorf("signing with %s", id)
			}
			return nil
		})
		// This request re-signs the cookie with the new key.
		if s := decode[sessionJSON](t, c.do("GET", app+"/api/session", "")); s.Owner != "user:alice" {
			t.Fatalf("rotation %d logged the user out: %+v", i, s)
		}
	}
	keys := m.Node().Store().SigningKeys()
	if len(keys) != 2 || keys[0].ID != rot.Primary {
		t.Fatalf("after two rotations: %d keys, primary %s; want 2, %s", len(keys), keys[0].ID, rot.Primary)
	}
	for _, k := range keys {
		if k.ID == first {
			t.Fatal("the first key was not retired")
		}
	}
}

func TestStaticSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a raft node")
	}
	m := mustRun(t, "", "-secret", strings.Repeat("x", 32))
	c := newClient(t)
	expect(t, "login", c.do("POST", "http://"+m.HTTPAddr()+"/api/login?user=alice", ""), 200)
	expect(t, "rotate-key with -secret", c.do("POST", "http://"+m.AdminAddr()+"/cluster/rotate-key", ""), 409)
	var st statusJSON
	if err := json.Unmarshal([]byte(c.do("GET", "http://"+m.AdminAddr()+"/cluster/status", "").body), &st); err != nil {
		t.Fatal(err)
	}
	if st.KeySource != "flag" || len(st.SigningKeys) != 0 {
		t.Fatalf("with -secret: key source %q, %d replicated keys shown; want flag, none", st.KeySource, len(st.SigningKeys))
	}
}

// TestRestartKeepsSessions restarts a Main on the same data directory.
func TestRestartKeepsSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a raft node")
	}
	dir := t.TempDir()
	m := mustRun(t, dir)
	c := newClient(t)
	expect(t, "login", c.do("POST", "http://"+m.HTTPAddr()+"/api/login?user=alice", ""), 200)
	jar := c.http.Jar
	old := "http://" + m.HTTPAddr()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2 := mustRun(t, dir)
	// The cookie jar is per host:port; move the cookie to the new port.
	c2 := newClient(t)
	u2 := mustParse(t, "http://"+m2.HTTPAddr())
	c2.http.Jar.SetCookies(u2, jar.Cookies(mustParse(t, old)))
	s := decode[sessionJSON](t, c2.do("GET", "http://"+m2.HTTPAddr()+"/api/session", ""))
	if s.New || s.Owner != "user:alice" {
		t.Fatalf("after restart: got %+v, want alice's session", s)
	}
}

func TestRunErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft nodes")
	}
	held := mustRun(t, "")
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherCluster := t.TempDir()
	{
		m := NewMain()
		m.Stderr = testLogWriter{t}
		if err := m.ParseFlags([]string{"-id", "o1", "-data", otherCluster, "-http", "127.0.0.1:0", "-admin", "127.0.0.1:0",
			"-raft", "127.0.0.1:0", "-gossip", "127.0.0.1:0", "-cluster-name", "other"}, envOf(nil)); err != nil {
			t.Fatal(err)
		}
		if err := m.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"http address in use", []string{"-http", held.HTTPAddr()}, "-http " + held.HTTPAddr() + ": address already in use"},
		{"admin address in use", []string{"-admin", held.AdminAddr()}, "-admin " + held.AdminAddr() + ": address already in use"},
		{"raft address in use", []string{"-raft", held.Node().RaftAddr()}, "-raft"},
		{"data dir in use", []string{"-data", held.Config.DataDir}, "in use by another running node"},
		{"data dir is a file", []string{"-data", filepath.Join(notDir, "sub")}, "-data"},
		{"data dir of another cluster", []string{"-data", otherCluster}, `belongs to cluster "other"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMain()
			m.Stderr = testLogWriter{t}
			args := append([]string{"-id", "e1", "-data", t.TempDir(), "-http", "127.0.0.1:0", "-admin", "127.0.0.1:0",
				"-raft", "127.0.0.1:0", "-gossip", "127.0.0.1:0", "-log-level", "error"}, tc.args...)
			if err := m.ParseFlags(args, envOf(nil)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := m.Run(ctx)
			if err == nil {
				m.Close()
				t.Fatal("Run succeeded")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("got %q, want one line containing %q", msg, tc.want)
			}
			m.Close() // after a failed Run: harmless
		})
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// -leave-on-terminate on the only voter cannot leave; the node must still
// stop cleanly (raft shut down, data dir released) so it can start again.
func TestLeaveOnTerminateLastVoterStillCloses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a raft node")
	}
	dir := t.TempDir()
	m := mustRun(t, dir, "-leave-on-terminate")
	if err := m.Close(); err == nil || !errors.Is(err, cluster.ErrLastVoter) {
		t.Fatalf("close of the last voter with -leave-on-terminate: %v, want ErrLastVoter reported", err)
	}
	mustRun(t, dir) // fails with "data dir in use" if the node was never closed
}
