package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// The attacks of issue 10 on the node's HTTP side, each against a real
// node process over TCP.

// send is client.try with request headers; a "Host" entry replaces the
// Host header.
func (c *client) send(method, url, body string, hdr map[string]string) response {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// signingKeyIDs reads the replicated signing keys' IDs from the status.
func signingKeyIDs(t *testing.T, c *client, admin string) []string {
	t.Helper()
	r := c.do("GET", admin+"/cluster/status", "")
	expect(t, "status", r, 200)
	var st statusJSON
	if err := json.Unmarshal([]byte(r.body), &st); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, k := range st.SigningKeys {
		ids = append(ids, k.ID)
	}
	return ids
}

// TestCrossSiteAdminPOST: any web page the operator visits can make the
// browser POST a "simple" request (no CORS preflight) to the admin
// listener on 127.0.0.1. Such requests must change nothing.
func TestCrossSiteAdminPOST(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a node process")
	}
	p := startProc(t, "-id", "x1", "-data", t.TempDir())
	c := newClient(t)
	p.waitReady(t)
	keys := signingKeyIDs(t, c, p.admin)
	host := strings.TrimPrefix(p.admin, "http://")
	for _, tc := range []struct {
		name string
		path string
		hdr  map[string]string
	}{
		{"text/plain fetch from another site", "/cluster/rotate-key", map[string]string{
			"Origin": "https://evil.example", "Content-Type": "text/plain;charset=UTF-8", "Sec-Fetch-Site": "cross-site"}},
		{"form post from another site", "/cluster/rotate-key", map[string]string{
			"Origin": "https://evil.example", "Content-Type": "application/x-www-form-urlencoded"}},
		{"form post, browser without Origin", "/cluster/rotate-key", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
		{"no-cors fetch without body", "/cluster/rotate-key", map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"same site, other port", "/cluster/rotate-key", map[string]string{"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}},
		{"leave from another site", "/cluster/leave", map[string]string{"Origin": "https://evil.example", "Content-Type": "text/plain"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.send("POST", p.admin+tc.path, "x=1", tc.hdr)
			expect(t, tc.name, r, 403)
			if got := signingKeyIDs(t, c, p.admin); !slices.Equal(got, keys) {
				t.Fatalf("the signing keys changed from %v to %v", keys, got)
			}
			expect(t, "readyz", c.do("GET", p.admin+"/readyz", ""), 200)
		})
	}
	// The operator's own requests still work: curl (no Origin) and the
	// listener's own origin.
	r := c.send("POST", p.admin+"/cluster/rotate-key", "", map[string]string{"Origin": "http://" + host, "Sec-Fetch-Site": "same-origin"})
	expect(t, "same-origin rotate-key", r, 200)
	if got := signingKeyIDs(t, c, p.admin); slices.Equal(got, keys) {
		t.Fatal("an allowed rotate-key rotated nothing")
	}
}

// TestDNSRebindingAdminGET: a page on rebind.attacker.example whose DNS
// name is re-pointed at 127.0.0.1 reads the admin listener's answers as
// same-origin. Its requests name the attacker's host, and are refused.
func TestDNSRebindingAdminGET(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a node process")
	}
	p := startProc(t, "-id", "r1", "-data", t.TempDir())
	c := newClient(t)
	p.waitReady(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(p.admin, "http://"))
	rebound := map[string]string{"Host": "rebind.attacker.example:" + port}
	for _, path := range []string{"/cluster/status", "/metrics"} {
		r := c.send("GET", p.admin+path, "", rebound)
		expect(t, "GET "+path+" with a rebound Host", r, 403)
		if strings.Contains(r.body, `"id"`) || strings.Contains(r.body, "raftsession_") {
			t.Fatalf("the refusal leaks the answer: %q", r.body)
		}
		expect(t, "GET "+path+" by IP", c.send("GET", p.admin+path, "", nil), 200)
		expect(t, "GET "+path+" by localhost", c.send("GET", p.admin+path, "", map[string]string{"Host": "localhost:" + port}), 200)
	}
	expect(t, "rebound POST", c.send("POST", p.admin+"/cluster/rotate-key", "", map[string]string{
		"Host": "rebind.attacker.example:" + port, "Origin": "http://rebind.attacker.example:" + port}), 403)
}

// TestAdminBeyondLoopbackNeedsToken: an admin listener strangers can
// reach refuses to start without -admin-token; with one, POSTs need it.
func TestAdminBeyondLoopbackNeedsToken(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node processes")
	}
	code, out := runRefused(t, "-id", "a1", "-data", t.TempDir(), "-admin", "0.0.0.0:0",
		"-http", "127.0.0.1:0", "-raft", "127.0.0.1:0", "-gossip", "127.0.0.1:0")
	msg := strings.TrimSpace(out)
	if code != 1 || strings.Contains(msg, "\n") || !strings.Contains(msg, "-admin-token") {
		t.Fatalf("got exit code %d and %q; want exit 1 and one line asking for -admin-token", code, msg)
	}

	const token = "e2e-admin-token-0123456789"
	p := startProcEnv(t, []string{"RAFTSESSION_ADMIN_TOKEN=" + token}, "-id", "a2", "-data", t.TempDir(), "-admin", "0.0.0.0:0")
	u, err := url.Parse(p.admin)
	if err != nil {
		t.Fatal(err)
	}
	admin := "http://127.0.0.1:" + u.Port()
	c := newClient(t)
	waitReady(t, admin)
	keys := signingKeyIDs(t, c, admin) // GETs need no token
	expect(t, "POST without a token", c.send("POST", admin+"/cluster/rotate-key", "", nil), 401)
	expect(t, "POST with a wrong token", c.send("POST", admin+"/cluster/rotate-key", "",
		map[string]string{"Authorization": "Bearer " + token[1:]}), 401)
	if got := signingKeyIDs(t, c, admin); !slices.Equal(got, keys) {
		t.Fatalf("a POST without the token rotated the keys: %v to %v", keys, got)
	}
	expect(t, "POST with the token", c.send("POST", admin+"/cluster/rotate-key", "",
		map[string]string{"Authorization": "Bearer " + token}), 200)
	if strings.Contains(p.Log(), token) {
		t.Fatal("the log shows the admin token")
	}
}

// TestSlowBodyCutOff: a client that sends its headers and then trickles
// the body must not hold a connection (and a goroutine) for ever; both
// listeners cut it off after -http-read-timeout.
func TestSlowBodyCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a node process")
	}
	p := startProcEnv(t, []string{"RAFTSESSION_HTTP_READ_TIMEOUT=1s"}, "-id", "b1", "-data", t.TempDir())
	p.waitReady(t)
	for _, tc := range []struct{ name, base, head string }{
		{"demo", p.http, "PUT /api/session/values/k HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"},
		// The handler ignores the body; the server still reads it to
		// reuse the connection.
		{"admin", p.admin, "GET /healthz HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := strings.TrimPrefix(tc.base, "http://")
			took := trickle(t, addr, fmt.Sprintf(tc.head, addr), 8*time.Second)
			if took < 500*time.Millisecond {
				t.Fatalf("closed after %v, before the read timeout: not the timeout at work", took)
			}
		})
	}
}

// trickle sends head, then one body byte every 100 ms, and returns how
// long the server took to close the connection; it fails the test if
// the server still reads after within.
func trickle(t *testing.T, addr, head string, within time.Duration) time.Duration {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn) // until the server closes (or the deferred Close)
		close(closed)
	}()
	tick := time.NewTicker(100 * time.Millisecond) // the trickle's pace, not a wait for a condition
	defer tick.Stop()
	limit := time.NewTimer(within)
	defer limit.Stop()
	for {
		select {
		case <-closed:
			return time.Since(start)
		case <-limit.C:
			t.Fatalf("the server still reads a trickled body after %v", within)
		case <-tick.C:
			conn.Write([]byte("x")) // fails once the server has closed; closed tells
		}
	}
}

// TestQuotaFullStore: with -max-sessions 2, a third new session gets 503
// with Retry-After, while the existing sessions keep working; a logout
// makes room.
func TestQuotaFullStore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a node process")
	}
	p := startProcEnv(t, []string{"RAFTSESSION_MAX_SESSIONS=2"}, "-id", "q1", "-data", t.TempDir())
	p.waitReady(t)
	alice, bob, carol := newBrowser(t), newBrowser(t), newBrowser(t)
	expect(t, "alice logs in", alice.do("POST", p.http+"/api/login?user=alice"), 200)
	expect(t, "bob logs in", bob.do("POST", p.http+"/api/login?user=bob"), 200)
	r := carol.do("POST", p.http+"/api/login?user=carol")
	expect(t, "carol logs in to a full store", r, 503)
	if got := r.header.Get("Retry-After"); got != "30" {
		t.Errorf("Retry-After: got %q, want 30", got)
	}
	if carol.sid != "" {
		t.Error("the refused login set a session cookie")
	}
	// Existing sessions keep working, writes included.
	expect(t, "alice counts", alice.do("POST", p.http+"/api/views"), 200)
	expect(t, "alice sets a value", alice.do("PUT", p.http+"/api/session/values/theme"), 204)
	if s := decode[sessionJSON](t, alice.do("GET", p.http+"/api/session")); s.Owner != "user:alice" || s.Values["views"] != "1" {
		t.Fatalf("alice's session: %+v", s)
	}
	expect(t, "bob logs out", bob.do("POST", p.http+"/api/logout"), 204)
	expect(t, "carol logs in once there is room", carol.do("POST", p.http+"/api/login?user=carol"), 200)
}

// TestCookieFlags: behind a TLS-terminating proxy the node sees plain
// HTTP; -cookie-secure and -trust-proxy still mark the cookie Secure, and
// a __Host- name comes out with the attributes browsers require of it.
func TestCookieFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("starts raft nodes")
	}
	login := func(m *Main, hdr map[string]string) *http.Cookie {
		t.Helper()
		r := newClient(t).send("POST", "http://"+m.HTTPAddr()+"/api/login?user=alice", "", hdr)
		expect(t, "login", r, 200)
		cookies := (&http.Response{Header: r.header}).Cookies()
		if len(cookies) != 1 {
			t.Fatalf("got cookies %v, want one", r.header["Set-Cookie"])
		}
		return cookies[0]
	}
	host := mustRun(t, "", "-cookie-secure", "-cookie-name", "__Host-sid")
	if c := login(host, nil); c.Name != "__Host-sid" || !c.Secure || c.Path != "/" || c.Domain != "" {
		t.Errorf("-cookie-secure -cookie-name __Host-sid: got %s", c)
	}
	proxied := mustRun(t, "", "-trust-proxy")
	if c := login(proxied, nil); c.Name != "sid" || c.Secure {
		t.Errorf("-trust-proxy, plain request: got %s, want sid without Secure", c)
	}
	if c := login(proxied, map[string]string{"X-Forwarded-Proto": "https"}); !c.Secure {
		t.Errorf("-trust-proxy, X-Forwarded-Proto https: got %s, want Secure", c)
	}
}

// TestRequestSizeLimits: bodies over -http-max-body-bytes get 413 on
// both listeners, and header blocks over -http-max-header-bytes (plus the
// 4 KiB net/http allows on top) 431.
func TestRequestSizeLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a raft node")
	}
	m := mustRun(t, "", "-http-max-body-bytes", "4096", "-http-max-header-bytes", "4096")
	c := newClient(t)
	big := strings.Repeat("x", 5000)
	expect(t, "demo body", c.send("PUT", "http://"+m.HTTPAddr()+"/api/session/values/k", big, nil), 413)
	expect(t, "admin body", c.send("POST", "http://"+m.AdminAddr()+"/cluster/rotate-key", big, nil), 413)
	expect(t, "small body", c.send("PUT", "http://"+m.HTTPAddr()+"/api/session/values/k", "small", nil), 204)
	expect(t, "headers", c.send("GET", "http://"+m.HTTPAddr()+"/api/session", "", map[string]string{"X-Big": strings.Repeat("h", 16<<10)}), 431)
}

// TestQuotaThroughFollower: the quota is cluster-wide and decided by the
// state machine; a create forwarded by a follower comes back as
// session.ErrQuota across the wire, hence the same 503 and Retry-After.
func TestQuotaThroughFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node processes")
	}
	env := []string{"RAFTSESSION_MAX_SESSIONS=1"}
	n1 := startProcEnv(t, env, "-id", "f1", "-data", t.TempDir(), "-bootstrap-expect", "3")
	n2 := startProcEnv(t, env, "-id", "f2", "-data", t.TempDir(), "-bootstrap-expect", "3", "-join", n1.gossip)
	n3 := startProcEnv(t, env, "-id", "f3", "-data", t.TempDir(), "-bootstrap-expect", "3", "-join", n1.gossip)
	c := newClient(t)
	var follower *proc
	for _, n := range []*proc{n1, n2, n3} {
		n.waitReady(t)
		var st statusJSON
		if err := json.Unmarshal([]byte(c.do("GET", n.admin+"/cluster/status", "").body), &st); err != nil {
			t.Fatal(err)
		}
		if st.State == "Follower" {
			follower = n
		}
	}
	if follower == nil {
		t.Fatal("no follower")
	}
	alice, bob := newBrowser(t), newBrowser(t)
	expect(t, "alice logs in", alice.do("POST", n1.http+"/api/login?user=alice"), 200)
	r := bob.do("POST", follower.http+"/api/login?user=bob")
	expect(t, "bob logs in on a follower of a full cluster", r, 503)
	if got := r.header.Get("Retry-After"); got != "30" {
		t.Errorf("Retry-After: got %q, want %q (the quota error lost its kind on the way)", got, "30")
	}
	expect(t, "alice counts on the follower", alice.do("POST", follower.http+"/api/views"), 200)
}

// TestClusterBeyondLoopbackNeedsKey: a node whose raft or gossip address
// leaves loopback refuses to start without a cluster key, with one line
// that says what to do; with the key in the environment it runs.
func TestClusterBeyondLoopbackNeedsKey(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node processes")
	}
	args := []string{"-data", t.TempDir(), "-admin", "127.0.0.1:0", "-http", "127.0.0.1:0",
		"-raft", "0.0.0.0:0", "-raft-advertise", "127.0.0.1:7000", "-gossip", "127.0.0.1:0"}
	code, out := runRefused(t, append([]string{"-id", "c1"}, args...)...)
	msg := strings.TrimSpace(out)
	if code != 1 || strings.Contains(msg, "\n") || !strings.Contains(msg, "cluster key") {
		t.Fatalf("got exit code %d and %q; want exit 1 and one line asking for a cluster key", code, msg)
	}
	p := startProcEnv(t, []string{"RAFTSESSION_CLUSTER_KEY=" + strings.Repeat("A", 43) + "="}, append([]string{"-id", "c2"}, args...)...)
	p.waitReady(t)
}
