package main

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

// TestDemoContract checks the demo app's HTTP contract, which the
// end-to-end and browser tests rely on, over a MemoryStore and over a
// real single-node cluster.
func TestDemoContract(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		store := session.NewMemoryStore(session.MemoryOptions{})
		t.Cleanup(func() { store.Close() })
		mgr, err := httpmw.New(store, httpmw.Options{Secrets: [][]byte{[]byte(strings.Repeat("k", 32))},
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(mgr.Handler(newDemo("mem", slog.New(slog.DiscardHandler))))
		t.Cleanup(srv.Close)
		checkContract(t, srv.URL, "mem")
	})
	t.Run("cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts a raft node")
		}
		m := mustRun(t, "")
		checkContract(t, "http://"+m.HTTPAddr(), "t1")
	})
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return v
}

func expect(t *testing.T, what string, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: got status %d (%q), want %d", what, r.status, r.body, status)
	}
}

func checkContract(t *testing.T, base, node string) {
	c := newClient(t)
	baseURL, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	sid := func() string {
		for _, ck := range c.http.Jar.Cookies(baseURL) {
			if ck.Name == "sid" {
				return ck.Value
			}
		}
		return ""
	}

	// Reading never creates a session.
	r := c.do("GET", base+"/api/session", "")
	expect(t, "GET /api/session", r, 200)
	s := decode[sessionJSON](t, r)
	if s.Node != node || !s.New || s.Owner != "" || len(s.Values) != 0 {
		t.Fatalf("fresh session: got %+v", s)
	}
	if r.header.Get("Set-Cookie") != "" {
		t.Fatal("GET /api/session set a cookie")
	}
	if got := r.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type: got %q", got)
	}
	r = c.do("GET", base+"/", "")
	expect(t, "GET /", r, 200)
	if !strings.Contains(r.body, node) || r.header.Get("Set-Cookie") != "" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: node missing, or a cookie was set, or not HTML: %v", r.header)
	}

	// Values.
	expect(t, "PUT value", c.do("PUT", base+"/api/session/values/color", "blue"), 204)
	r = c.do("GET", base+"/api/session/values/color", "")
	expect(t, "GET value", r, 200)
	if r.body != "blue" {
		t.Fatalf("GET value: got %q, want %q", r.body, "blue")
	}
	expect(t, "GET missing value", c.do("GET", base+"/api/session/values/nope", ""), 404)
	expect(t, "DELETE value", c.do("DELETE", base+"/api/session/values/color", ""), 204)
	expect(t, "GET deleted value", c.do("GET", base+"/api/session/values/color", ""), 404)
	expect(t, "PUT value", c.do("PUT", base+"/api/session/values/cart", "3 apples"), 204)

	// Views: concurrent increments on one session lose nothing.
	const n = 16
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.try("POST", base+"/api/views", "")
			if err != nil || r.status != 200 {
				t.Errorf("POST /api/views: %v %d %q", err, r.status, r.body)
			}
		}()
	}
	wg.Wait()
	r = c.do("POST", base+"/api/views", "")
	expect(t, "POST /api/views", r, 200)
	if v := decode[map[string]int64](t, r); v["views"] != n+1 {
		t.Fatalf("views: got %d, want %d", v["views"], n+1)
	}

	// Login regenerates the ID and keeps the data.
	before := sid()
	r = c.do("POST", base+"/api/login?user=alice", "")
	expect(t, "login", r, 200)
	if v := decode[map[string]string](t, r); v["user"] != "alice" {
		t.Fatalf("login: got %v", v)
	}
	if after := sid(); after == "" || strings.Split(after, ".")[0] == strings.Split(before, ".")[0] {
		t.Fatal("login did not change the session ID")
	}
	s = decode[sessionJSON](t, c.do("GET", base+"/api/session", ""))
	if s.New || s.Owner != "user:alice" || s.Values["user"] != "alice" || s.Values["cart"] != "3 apples" || s.Values["views"] != "17" {
		t.Fatalf("after login: got %+v", s)
	}
	expect(t, "login without user", c.do("POST", base+"/api/login", ""), 400)

	// A second device of the same user.
	other := newClient(t)
	expect(t, "login 2", other.do("POST", base+"/api/login?user=alice", ""), 200)
	r = c.do("GET", base+"/api/sessions", "")
	expect(t, "GET /api/sessions", r, 200)
	list := decode[[]ownedJSON](t, r)
	if len(list) != 2 {
		t.Fatalf("sessions: got %d, want 2: %s", len(list), r.body)
	}
	current := 0
	for _, o := range list {
		if o.Created.IsZero() || o.LastSeen.IsZero() {
			t.Errorf("session entry without times: %+v", o)
		}
		if o.Current {
			current++
		}
	}
	if current != 1 {
		t.Fatalf("sessions: %d marked current, want 1", current)
	}
	if !strings.Contains(c.do("GET", base+"/", "").body, "alice") {
		t.Fatal("the page does not show who is logged in")
	}

	// Log out everywhere destroys both.
	r = c.do("POST", base+"/api/logout-everywhere", "")
	expect(t, "logout-everywhere", r, 200)
	if v := decode[map[string]int](t, r); v["destroyed"] != 2 {
		t.Fatalf("logout-everywhere: got %v, want 2 destroyed", v)
	}
	if s := decode[sessionJSON](t, other.do("GET", base+"/api/session", "")); !s.New {
		t.Fatalf("other device still logged in: %+v", s)
	}
	if s := decode[sessionJSON](t, c.do("GET", base+"/api/session", "")); !s.New {
		t.Fatalf("this device still logged in: %+v", s)
	}

	// Logout destroys the session and expires the cookie.
	expect(t, "login 3", c.do("POST", base+"/api/login?user=bob", ""), 200)
	r = c.do("POST", base+"/api/logout", "")
	expect(t, "logout", r, 204)
	if sc := r.header.Get("Set-Cookie"); !strings.Contains(sc, "Max-Age=0") && !strings.Contains(sc, "1970") {
		t.Fatalf("logout did not expire the cookie: %q", sc)
	}
	if s := decode[sessionJSON](t, c.do("GET", base+"/api/session", "")); !s.New || s.Owner != "" {
		t.Fatalf("after logout: %+v", s)
	}
	r = c.do("GET", base+"/api/sessions", "")
	expect(t, "GET /api/sessions logged out", r, 200)
	if strings.TrimSpace(r.body) != "[]" {
		t.Fatalf("sessions when logged out: got %q, want []", r.body)
	}
}
