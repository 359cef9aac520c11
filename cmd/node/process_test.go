package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is one node process built from this package.
type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	addrs   chan map[string]string // the "serving" log line's addresses
	http    string                 // http://host:port of the demo app
	admin   string                 // http://host:port of the admin listener
	gossip  string                 // host:port
	exited  chan struct{}
	waitErr error
	mu      sync.Mutex
	log     strings.Builder
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
	p := &proc{t: t, addrs: make(chan map[string]string, 1), exited: make(chan struct{})}
	p.cmd = exec.Command(nodeBinary(t), append(base, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.scan(stderr)
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("log of %v:\n%s", args, p.logText())
		}
	})
	select {
	case a := <-p.addrs:
		p.http, p.admin, p.gossip = "http://"+a["http"], "http://"+a["admin"], a["gossip"]
	case <-p.exited:
		t.Fatalf("node exited before serving: %v\n%s", p.waitErr, p.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("node did not start serving\n%s", p.logText())
	}
	return p
}

func (p *proc) scan(r io.Reader) {
	sc := bufio.NewScanner(r)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.log.WriteString(line + "\n")
		p.mu.Unlock()
		if !sent && strings.Contains(line, "msg=serving") {
			a := map[string]string{}
			for _, f := range strings.Fields(line) {
				if k, v, ok := strings.Cut(f, "="); ok {
					a[k] = v
				}
			}
			p.addrs <- a
			sent = true
		}
	}
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Fatalf("node did not exit within %v\n%s", timeout, p.logText())
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode()
	}
	if p.waitErr != nil {
		p.t.Fatal(p.waitErr)
	}
	return 0
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
	req, err := http.NewRequestWithContext(context.Background(), method, url, nil)
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
	body, err := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.Name == "sid" {
			b.sid = ck.Value
			if ck.MaxAge < 0 {
				b.sid = ""
			}
		}
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}, err
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
	c := newClient(t)
	waitReady(t, c, p.admin)
	b := newBrowser(t)
	expect(t, "login", b.do("POST", p.http+"/api/login?user=alice"), 200)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM: got %d, want 0\n%s", code, p.logText())
	}
	if !strings.Contains(p.logText(), "msg=stopped") {
		t.Fatalf("no orderly stop in the log:\n%s", p.logText())
	}

	p2 := startProc(t, args...)
	waitReady(t, c, p2.admin)
	r := b.do("GET", p2.http+"/api/session")
	expect(t, "session after restart", r, 200)
	if s := decode[sessionJSON](t, r); s.New || s.Owner != "user:alice" {
		t.Fatalf("after restart: got %+v, want alice's session", s)
	}
	if r.header.Get("X-Node") != "s1" {
		t.Errorf("X-Node: got %q, want s1", r.header.Get("X-Node"))
	}

	// Bad flags exit 1 with one line, no panic.
	out, err := exec.Command(nodeBinary(t), "-voters", "0").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
		t.Fatalf("bad flag: err %v, output %q; want exit 1 and one line", err, out)
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
	c := newClient(t)
	for _, n := range []*proc{n1, n2, n3} {
		waitReady(t, c, n.admin)
	}

	b := newBrowser(t)
	expect(t, "login on p1", b.do("POST", n1.http+"/api/login?user=alice"), 200)
	expect(t, "views on p2", b.do("POST", n2.http+"/api/views"), 200)
	r := b.do("GET", n3.http+"/api/session")
	if s := decode[sessionJSON](t, r); s.Node != "p3" || s.Owner != "user:alice" || s.Values["views"] != "1" {
		t.Fatalf("read on p3: got %+v", s)
	}

	if err := n1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	n1.wait(10 * time.Second)
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
	waitFor(t, 20*time.Second, "a write after p1 died", func() bool {
		r, err := b.try("POST", n3.http+"/api/views")
		if err != nil || r.status != 200 {
			return false
		}
		views = decode[map[string]int64](t, r)
		return true
	})
	if views["views"] < 2 {
		t.Fatalf("views after the failover write: got %d, want at least 2", views["views"])
	}
	if s := decode[sessionJSON](t, b.do("GET", n2.http+"/api/session")); s.Values["views"] != strconv.FormatInt(views["views"], 10) {
		t.Fatalf("p2 after the write on p3: got %+v, want views %d", s, views["views"])
	}
}
