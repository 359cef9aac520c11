package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftsession/raftsession/internal/nodeproc"
)

// proc is one node process built from this package, with the addresses
// it bound.
type proc struct {
	*nodeproc.Proc
	http   string // http://host:port of the demo app
	admin  string // http://host:port of the admin listener
	gossip string // host:port
}

// startProc runs the node binary with args (free ports on 127.0.0.1
// unless args say otherwise) and waits until it serves.
func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	return startProcEnv(t, nil, args...)
}

// startProcEnv is startProc with extra environment variables
// (RAFTSESSION_<FLAG>=value).
func startProcEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	base := []string{"-http", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-raft", "127.0.0.1:0", "-gossip", "127.0.0.1:0"}
	name := "node"
	if i := slices.Index(args, "-id"); i >= 0 && i+1 < len(args) {
		name += " " + args[i+1]
	}
	p := nodeproc.MustStart(t, nodeproc.Spec{Path: nodeproc.MustBuild(t, nodeproc.NodePackage),
		Name: name, Args: append(base, args...), Env: env})
	a, err := p.WaitServing(30 * time.Second)
	if err != nil {
		t.Fatalf("node did not start serving: %v", err)
	}
	return &proc{Proc: p, http: "http://" + a["http"], admin: "http://" + a["admin"], gossip: a["gossip"]}
}

// waitReady waits until the node says ready on its admin listener, and
// fails t at once if the process exits.
func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	if err := p.WaitOK(p.admin+"/readyz", 30*time.Second); err != nil {
		t.Fatalf("waiting for %s to be ready: %v", p.Name(), err)
	}
}

// runRefused runs the node binary with args, which it must refuse to
// start with, and returns its exit code and output. It fails t when the
// node is still running after 20s (it started instead).
func runRefused(t *testing.T, args ...string) (code int, out string) {
	t.Helper()
	p := nodeproc.MustStart(t, nodeproc.Spec{Path: nodeproc.MustBuild(t, nodeproc.NodePackage), Args: args})
	if err := p.WaitExit(20 * time.Second); err != nil {
		t.Fatalf("the node started with %v, want a refusal:\n%s", args, p.Log())
	}
	return p.ExitCode(), p.Log()
}

// browser carries one session cookie to any node, as a browser behind a
// load balancer would.
type browser struct {
	t   *testing.T
	c   *client
	sid string
}

func newBrowser(t *testing.T) *browser {
	c := newClient(t)
	c.http.Jar = nil
	return &browser{t: t, c: c}
}

func (b *browser) try(method, url string) (response, error) {
	return b.send(context.Background(), method, url, nil)
}

// send is try with a context and a request body (nil for none).
func (b *browser) send(ctx context.Context, method, url string, body io.Reader) (response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return response{}, err
	}
	if b.sid != "" {
		req.AddCookie(&http.Cookie{Name: "sid", Value: b.sid})
	}
	resp, err := b.c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.Name == "sid" {
			b.sid = ck.Value
			if ck.MaxAge < 0 {
				b.sid = ""
			}
		}
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(got)}, err
}

func (b *browser) do(method, url string) response {
	b.t.Helper()
	r, err := b.try(method, url)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

// TestSignalAndRestart runs the real binary: SIGTERM stops it with exit
// code 0, and a restart on the same data directory still has the session.
func TestSignalAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node processes")
	}
	data := t.TempDir()
	args := []string{"-id", "s1", "-data", data}
	p := startProc(t, args...)
	p.waitReady(t)
	b := newBrowser(t)
	expect(t, "login", b.do("POST", p.http+"/api/login?user=alice"), 200)
	if err := p.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if code := p.ExitCode(); code != 0 {
		t.Fatalf("exit code after SIGTERM: got %d, want 0\n%s", code, p.Log())
	}
	if !strings.Contains(p.Log(), "msg=stopped") {
		t.Fatalf("no orderly stop in the log:\n%s", p.Log())
	}

	p2 := startProc(t, args...)
	p2.waitReady(t)
	r := b.do("GET", p2.http+"/api/session")
	expect(t, "session after restart", r, 200)
	if s := decode[sessionJSON](t, r); s.New || s.Owner != "user:alice" {
		t.Fatalf("after restart: got %+v, want alice's session", s)
	}
	if r.header.Get("X-Node") != "s1" {
		t.Errorf("X-Node: got %q, want s1", r.header.Get("X-Node"))
	}

	// Bad flags exit 1 with one line, no panic.
	if code, out := runRefused(t, "-voters", "0"); code != 1 || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("bad flag: exit code %d, output %q; want exit 1 and one line", code, out)
	}
}

// TestThreeProcesses runs three node processes that bootstrap together:
// a session made on one node is read on another with the same cookie, and
// survives kill -9 of the node it was made on.
func TestThreeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node processes")
	}
	n1 := startProc(t, "-id", "p1", "-data", t.TempDir(), "-bootstrap-expect", "3")
	n2 := startProc(t, "-id", "p2", "-data", t.TempDir(), "-bootstrap-expect", "3", "-join", n1.gossip)
	n3 := startProc(t, "-id", "p3", "-data", t.TempDir(), "-bootstrap-expect", "3", "-join", n1.gossip)
	for _, n := range []*proc{n1, n2, n3} {
		n.waitReady(t)
	}

	b := newBrowser(t)
	expect(t, "login on p1", b.do("POST", n1.http+"/api/login?user=alice"), 200)
	expect(t, "views on p2", b.do("POST", n2.http+"/api/views"), 200)
	r := b.do("GET", n3.http+"/api/session")
	if s := decode[sessionJSON](t, r); s.Node != "p3" || s.Owner != "user:alice" || s.Values["views"] != "1" {
		t.Fatalf("read on p3: got %+v", s)
	}

	if err := n1.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*proc{n2, n3} {
		s := decode[sessionJSON](t, b.do("GET", n.http+"/api/session"))
		if s.Owner != "user:alice" {
			t.Fatalf("after kill -9 of p1, %s: got %+v", n.http, s)
		}
	}
	// Writes resume once the two survivors elect a leader.
	// (A 503 during the election has an unknown outcome, so the count may
	// end up above 2; it must never go back.)
	var views map[string]int64
	nodeproc.WaitFor(t, 20*time.Second, "a write after p1 died", func() error {
		r, err := b.try("POST", n3.http+"/api/views")
		if err != nil {
			return err
		}
		if r.status != 200 {
			return fmt.Errorf("POST /api/views: %d %s", r.status, r.body)
		}
		views = decode[map[string]int64](t, r)
		return nil
	})
	if views["views"] < 2 {
		t.Fatalf("views after the failover write: got %d, want at least 2", views["views"])
	}
	if s := decode[sessionJSON](t, b.do("GET", n2.http+"/api/session")); s.Values["views"] != strconv.FormatInt(views["views"], 10) {
		t.Fatalf("p2 after the write on p3: got %+v, want views %d", s, views["views"])
	}
}
