package browser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/raftsession/raftsession/internal/nodeproc"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

func TestMain(m *testing.M) {
	code := m.Run()
	nodeproc.Cleanup() // the node and lb binaries
	os.Exit(code)
}

// TestSessionSurvivesNodeKill is the README walkthrough in a real browser:
// log in through the round-robin load balancer, count views on several
// nodes, SIGKILL the node that served the last page, reload, and still be
// logged in with the same count.
func TestSessionSurvivesNodeKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser and a three-node cluster")
	}
	chromium := findChromium(t)
	c := startCluster(t, 3)

	ctx := startBrowser(t, chromium)

	// The first page: no session yet.
	p := c.load(t, ctx, "open the demo page", chromedp.Navigate(c.lbURL))
	if p.user != "" || p.views != 0 {
		t.Fatalf("fresh browser: user %q, views %d; want no user and 0 views", p.user, p.views)
	}

	// Log in through the form (it POSTs /api/login with fetch, then reloads).
	const user = "ada"
	if err := chromedp.Do(stepContext(t, ctx), chromedp.SetValue(chromedp.CSS(`#login input[name="user"]`), user)); err != nil {
		t.Fatalf("fill in the login form: %v", err)
	}
	p = c.load(t, ctx, "log in", chromedp.Click(chromedp.CSS(`#login button`)))
	if p.user != user {
		t.Fatalf("after login: user %q, want %q", p.user, user)
	}

	// Count views. Each click is a POST and a page load, and the load
	// balancer has no affinity, so they land on different nodes; each page
	// must already show the count the previous click made (read-your-writes).
	const clicks = 4
	seen := map[string]int{p.node: 1}
	for i := 1; i <= clicks; i++ {
		p = c.load(t, ctx, fmt.Sprintf("click +1 (%d)", i), chromedp.Click(chromedp.CSS(`#views-add button`)))
		if p.user != user || p.views != i {
			t.Fatalf("after click %d (page from %s): user %q, views %d; want %q, %d", i, p.node, p.user, p.views, user, i)
		}
		seen[p.node]++
	}
	if len(seen) < 2 {
		t.Fatalf("pages came from %v; want at least 2 distinct nodes behind a round-robin load balancer", seen)
	}
	t.Logf("pages served by %v", seen)

	// Kill the node that served the last page, the way a crash does.
	victim := p.node
	c.kill(t, victim)

	// Reload until a page comes back. A node may answer 503 while a new
	// leader is elected (when the victim led); it must never answer with
	// another user or an older count.
	for range 3 {
		p = c.loadRetry503(t, ctx, "reload after kill", chromedp.Reload())
		if p.node == victim {
			t.Fatalf("page from the killed node %s", victim)
		}
		if p.user != user || p.views != clicks {
			t.Fatalf("after killing %s, page from %s: user %q, views %d; want %q, %d", victim, p.node, p.user, p.views, user, clicks)
		}
	}

	// And the session still takes writes, once the survivors know a leader.
	c.waitReady(t, 30*time.Second)
	p = c.loadRetry503(t, ctx, "click +1 after kill", chromedp.Click(chromedp.CSS(`#views-add button`)))
	if p.user != user || p.views != clicks+1 {
		t.Fatalf("click after kill (page from %s): user %q, views %d; want %q, %d", p.node, p.user, p.views, user, clicks+1)
	}
}

// findChromium returns the browser to run, or skips the test when there is
// none and CI is unset.
func findChromium(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat(chromiumPath); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return chromiumPath
	}
	msg := chromiumPath + " not found: install the Debian package chromium (bash scripts/ci-deps)"
	if os.Getenv("CI") != "" {
		t.Fatalf("%s; CI is set, so this test must run", msg)
	}
	t.Skipf("%s to run the browser test (it is required when CI is set)", msg)
	return ""
}

type node struct {
	id     string
	admin  string // http://host:port of the admin listener
	proc   *nodeproc.Proc
	killed bool
}

type cluster struct {
	nodes []*node
	lbURL string
}

// startCluster starts n nodes that bootstrap together and the load balancer
// in front of their HTTP ports, and waits until every node is ready.
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	nodeBin := nodeproc.MustBuild(t, nodeproc.NodePackage)
	lbBin := nodeproc.MustBuild(t, nodeproc.LBPackage)
	logDir := t.TempDir()
	dataDir := t.TempDir()
	// Four ports a node (http, admin, raft, gossip) and one for the LB.
	ports, err := nodeproc.FreePorts(4*n + 1)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	httpAddr := func(i int) string { return addr(4 * i) }
	adminAddr := func(i int) string { return addr(4*i + 1) }
	raftAddr := func(i int) string { return addr(4*i + 2) }
	gossipAddr := func(i int) string { return addr(4*i + 3) }

	c := &cluster{lbURL: "http://" + addr(4*n) + "/"}
	var backends []string
	for i := range n {
		var join []string
		for j := range n {
			if j != i {
				join = append(join, gossipAddr(j))
			}
		}
		id := "node" + strconv.Itoa(i+1)
		p := nodeproc.MustStart(t, nodeproc.Spec{Path: nodeBin, Name: id, LogPath: filepath.Join(logDir, id+".log"), Args: []string{
			"-id", id,
			"-data", filepath.Join(dataDir, id),
			"-http", httpAddr(i),
			"-admin", adminAddr(i),
			"-raft", raftAddr(i), "-raft-advertise", raftAddr(i),
			"-gossip", gossipAddr(i), "-gossip-advertise", gossipAddr(i),
			"-join", strings.Join(join, ","),
			"-bootstrap-expect", strconv.Itoa(n),
		}})
		c.nodes = append(c.nodes, &node{id: id, admin: "http://" + adminAddr(i), proc: p})
		backends = append(backends, httpAddr(i))
	}
	lb := nodeproc.MustStart(t, nodeproc.Spec{Path: lbBin, Name: "lb", LogPath: filepath.Join(logDir, "lb.log"),
		Args: []string{"-listen", addr(4 * n), "-backends", strings.Join(backends, ",")}})

	start := time.Now()
	c.waitReady(t, 45*time.Second)
	if err := lb.WaitOK(c.lbURL, 10*time.Second); err != nil {
		t.Fatalf("waiting for the load balancer: %v", err)
	}
	t.Logf("cluster of %d nodes ready in %v", n, time.Since(start).Round(time.Millisecond))
	return c
}

// waitReady waits until every node that has not been killed answers 200 on
// /readyz (joined, a leader known, caught up).
func (c *cluster) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	for _, nd := range c.nodes {
		if nd.killed {
			continue
		}
		if err := nd.proc.WaitOK(nd.admin+"/readyz", timeout); err != nil {
			t.Fatalf("waiting for %s to be ready: %v", nd.id, err)
		}
	}
}

// kill sends SIGKILL to the node with this id and waits for it to die.
func (c *cluster) kill(t *testing.T, id string) {
	t.Helper()
	for _, nd := range c.nodes {
		if nd.id == id {
			role := "unknown"
			if st, err := nodeproc.GetStatus(nd.admin); err == nil {
				role = st.State
			}
			if err := nd.proc.Kill(); err != nil {
				t.Fatalf("kill %s: %v", id, err)
			}
			nd.killed = true
			t.Logf("killed %s, raft state %s, with SIGKILL", id, role)
			return
		}
	}
	t.Fatalf("no node %q (page showed an unknown node name)", id)
}

// startBrowser starts headless chromium with the project's launch flags and
// a fresh profile; t.Cleanup closes it.
func startBrowser(t *testing.T, chromium string) context.Context {
	t.Helper()
	browserOut := &lockedWriter{w: new(strings.Builder)}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(browserOut),
	)
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		if t.Failed() {
			t.Logf("----- chromium output -----\n%s", browserOut.String())
		}
	})
	// The first action starts the browser and ties its life to ctx, which
	// has no deadline; each step below gets its own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// lockedWriter collects the browser's output, written by chromedp's
// goroutine and read by the test.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.w)
}

// stepContext bounds one browser step.
func stepContext(t *testing.T, ctx context.Context) context.Context {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// page is what the demo page shows.
type page struct {
	status int
	node   string // #node, the node that rendered the page
	user   string // #user, empty when not logged in
	views  int    // #views
}

// load runs action, which must make the tab load the demo page (a
// navigation, or a form whose script reloads the page), and reads the page.
// It fails the test unless the page came back with 200.
func (c *cluster) load(t *testing.T, ctx context.Context, what string, action chromedp.Action[chromedp.Void]) page {
	t.Helper()
	p, err := c.try(ctx, action)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if p.status != http.StatusOK {
		t.Fatalf("%s: page status %d, want 200", what, p.status)
	}
	return p
}

// loadRetry503 is load for the moments after a node died: a 503 (no leader
// yet) is retried by reloading, for a bounded time.
func (c *cluster) loadRetry503(t *testing.T, ctx context.Context, what string, action chromedp.Action[chromedp.Void]) page {
	t.Helper()
	var p page
	err := nodeproc.Poll(20*time.Second, func() error {
		var err error
		p, err = c.try(ctx, action)
		action = chromedp.Reload()
		switch {
		case err != nil:
			return nodeproc.Abort(err)
		case p.status == http.StatusOK:
			return nil
		case p.status != http.StatusServiceUnavailable:
			return nodeproc.Abort(fmt.Errorf("page status %d, want 200 (or 503 while a leader is elected)", p.status))
		}
		t.Logf("%s: 503 from %s, reloading", what, p.node)
		return errors.New("still 503")
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return p
}

func (c *cluster) try(ctx context.Context, action chromedp.Action[chromedp.Void]) (page, error) {
	var p page
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(sctx, action)
	if err != nil {
		// A form whose request failed shows why in #error instead of
		// reloading.
		ectx, ecancel := context.WithTimeout(ctx, 2*time.Second)
		defer ecancel()
		if msg, e := chromedp.Run(ectx, chromedp.Text(chromedp.CSS("#error"), chromedp.NodeReady)); e == nil && msg != "" {
			return p, fmt.Errorf("%w (page says %q)", err, msg)
		}
		return p, err
	}
	if resp == nil {
		return p, errors.New("no page load followed")
	}
	p.status = int(resp.Status)
	p.node = header(resp.Headers, "X-Node")
	if p.status != http.StatusOK {
		return p, nil
	}
	shown, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS("#node")))
	if err != nil {
		return p, fmt.Errorf("read #node: %w", err)
	}
	if shown != p.node {
		return p, fmt.Errorf("page shows node %q, X-Node header says %q", shown, p.node)
	}
	if p.user, err = chromedp.Run(sctx, chromedp.Text(chromedp.CSS("#user"), chromedp.NodeReady)); err != nil {
		return p, fmt.Errorf("read #user: %w", err)
	}
	views, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS("#views")))
	if err != nil {
		return p, fmt.Errorf("read #views: %w", err)
	}
	if p.views, err = strconv.Atoi(strings.TrimSpace(views)); err != nil {
		return p, fmt.Errorf("#views is %q, not a number", views)
	}
	return p, nil
}

// header reads a response header from the browser's map, whose keys keep
// the case the server sent.
func header(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}
