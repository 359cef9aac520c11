package httpmw

import (
	"strings"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

// cookieWant is what a response should do with the session cookie.
type cookieWant int

const (
	noCookie      cookieWant = iota
	browserCookie            // set, without Expires/Max-Age
	persistCookie            // set, with Expires/Max-Age in the future
	expiredCookie            // set, telling the browser to drop it
)

func (w cookieWant) String() string {
	return [...]string{"no cookie", "browser-session cookie", "persistent cookie", "expired cookie"}[w]
}

func kindOf(t *testing.T, r reply) cookieWant {
	t.Helper()
	c := r.cookie(t)
	switch {
	case c == nil:
		return noCookie
	case c.MaxAge < 0:
		return expiredCookie
	case c.MaxAge > 0:
		return persistCookie
	}
	return browserCookie
}

// The cookie and the store writes of one request, for each option and
// handler behaviour the express-session documentation describes, plus
// the rules of our own (index token, touch rate limit, re-signing).
func TestSetCookieRules(t *testing.T) {
	none := func(*env) string { return "" }
	existing := func(e *env) string { return e.login() }

	tests := []struct {
		name   string
		opt    Options
		setup  func(e *env) string // returns the cookie the request sends
		method string
		path   string
		want   cookieWant
		writes int64 // store commits the request makes
		check  func(t *testing.T, e *env, sent string, r reply)
	}{
		{name: "no cookie, handler only reads: nothing stored, no cookie",
			setup: none, method: "GET", path: "/get?k=user", want: noCookie, writes: 0},
		{name: "no cookie, handler ignores session: no Vary either",
			setup: none, method: "GET", path: "/noop", want: noCookie, writes: 0,
			check: func(t *testing.T, e *env, sent string, r reply) {
				if v := r.header.Get("Vary"); v != "" {
					t.Errorf("Vary = %q, want none", v)
				}
			}},
		{name: "no cookie, SaveUninitialized: empty session stored and cookie sent",
			opt: Options{SaveUninitialized: true}, setup: none, method: "GET", path: "/get?k=user",
			want: browserCookie, writes: 1},
		{name: "no cookie, handler sets a value: session created, cookie sent",
			setup: none, method: "POST", path: "/set?k=a&v=1", want: browserCookie, writes: 1,
			check: func(t *testing.T, e *env, sent string, r reply) {
				if v := r.header.Get("Vary"); v != "Cookie" {
					t.Errorf("Vary = %q, want Cookie", v)
				}
				if v := r.header.Get("Cache-Control"); v != `no-cache="Set-Cookie"` {
					t.Errorf("Cache-Control = %q", v)
				}
			}},
		{name: "existing session, read within TouchAfter: no write, no cookie",
			setup: existing, method: "GET", path: "/get?k=user", want: noCookie, writes: 0,
			check: func(t *testing.T, e *env, sent string, r reply) {
				if r.body != "alice" {
					t.Errorf("body %q, want alice", r.body)
				}
				if v := r.header.Get("Vary"); v != "Cookie" {
					t.Errorf("Vary = %q, want Cookie", v)
				}
			}},
		{name: "existing session, read after TouchAfter: one touch, cookie with new index",
			setup:  func(e *env) string { c := e.login(); e.clock.Advance(61 * time.Second); return c },
			method: "GET", path: "/get?k=user", want: browserCookie, writes: 1,
			check: func(t *testing.T, e *env, sent string, r reply) {
				got := r.cookie(t).Value
				if idOf(got) != idOf(sent) || got == sent {
					t.Errorf("cookie %q after touch of %q: want same ID, new index", got, sent)
				}
			}},
		{name: "existing session, TouchAfter negative: every read touches",
			opt: Options{TouchAfter: -1}, setup: existing, method: "GET", path: "/get?k=user",
			want: browserCookie, writes: 1},
		{name: "existing session, explicit Touch: written at once",
			setup: existing, method: "POST", path: "/touch", want: browserCookie, writes: 1},
		{name: "existing session, Resave: unchanged session written back",
			opt: Options{Resave: true}, setup: existing, method: "GET", path: "/get?k=user",
			want: browserCookie, writes: 1},
		{name: "existing session, Rolling: cookie on every response, no write",
			opt: Options{Rolling: true}, setup: existing, method: "GET", path: "/get?k=user",
			want: browserCookie, writes: 0,
			check: func(t *testing.T, e *env, sent string, r reply) {
				if got := r.cookie(t).Value; got != sent {
					t.Errorf("rolling cookie %q, want unchanged %q", got, sent)
				}
			}},
		{name: "existing session, Rolling and Persist: expiry follows the session",
			opt: Options{Rolling: true, Persist: true}, setup: existing, method: "GET", path: "/get?k=user",
			want: persistCookie, writes: 0,
			check: func(t *testing.T, e *env, sent string, r reply) {
				if c := r.cookie(t); c.MaxAge != int((30 * time.Minute).Seconds()) {
					t.Errorf("Max-Age %d, want the idle timeout %d", c.MaxAge, int((30 * time.Minute).Seconds()))
				}
			}},
		{name: "existing session, handler sets a value: one write, cookie with new index",
			setup: existing, method: "POST", path: "/set?k=a&v=1", want: browserCookie, writes: 1},
		{name: "Persist: new session gets a persistent cookie",
			opt: Options{Persist: true}, setup: none, method: "POST", path: "/set?k=a&v=1",
			want: persistCookie, writes: 1},
		{name: "RememberMe: persistent cookie for 30 days",
			setup: existing, method: "POST", path: "/remember", want: persistCookie, writes: 1,
			check: func(t *testing.T, e *env, sent string, r reply) {
				if c := r.cookie(t); c.MaxAge != 30*24*3600 {
					t.Errorf("Max-Age %d, want %d", c.MaxAge, 30*24*3600)
				}
			}},
		{name: "destroy existing: store delete and expired cookie",
			setup: existing, method: "POST", path: "/destroy", want: expiredCookie, writes: 1},
		{name: "destroy a session never stored, no cookie sent: nothing to do",
			setup: none, method: "POST", path: "/destroy", want: noCookie, writes: 0},
		{name: "regenerate (login): one rename, cookie with a new ID",
			setup: existing, method: "POST", path: "/login?user=bob", want: browserCookie, writes: 1,
			check: func(t *testing.T, e *env, sent string, r reply) {
				if idOf(r.cookie(t).Value) == idOf(sent) {
					t.Error("ID unchanged by Regenerate")
				}
			}},
		{name: "regenerate empty: one rename, new ID, no values",
			setup: existing, method: "POST", path: "/regenerate-empty", want: browserCookie, writes: 1,
			check: func(t *testing.T, e *env, sent string, r reply) {
				c := r.cookie(t).Value
				if idOf(c) == idOf(sent) {
					t.Error("ID unchanged by RegenerateEmpty")
				}
				if got := e.do("GET", "/keys", c).body; got != "" {
					t.Errorf("keys after RegenerateEmpty: %q, want none", got)
				}
			}},
		{name: "tampered cookie: treated as no cookie, no error",
			setup: func(e *env) string {
				c := []byte(e.login())
				c[3] ^= 1
				return string(c)
			},
			method: "GET", path: "/get?k=user", want: noCookie, writes: 0,
			check: func(t *testing.T, e *env, sent string, r reply) {
				if r.status != 200 || r.header.Get("X-New") != "1" || r.body != "" {
					t.Errorf("status %d, new %q, body %q: want a fresh session", r.status, r.header.Get("X-New"), r.body)
				}
			}},
		{name: "cookie signed by an older secret: verified and re-signed, no write",
			opt: Options{Secrets: [][]byte{testSecret, testOldSecret}},
			setup: func(e *env) string {
				old := newCookieCodec(e.m.opt.CookieName, [][]byte{testOldSecret})
				id, index, _, ok := e.m.cookie.Load().decode(e.login())
				if !ok {
					t.Fatal("cannot decode login cookie")
				}
				return old.encode(id, index)
			},
			method: "GET", path: "/get?k=user", want: browserCookie, writes: 0,
			check: func(t *testing.T, e *env, sent string, r reply) {
				if r.body != "alice" {
					t.Errorf("body %q, want alice", r.body)
				}
				if _, _, signer, ok := e.m.cookie.Load().decode(r.cookie(t).Value); !ok || signer != 0 {
					t.Errorf("re-signed cookie: ok %v signer %d, want current secret", ok, signer)
				}
			}},
		{name: "cookie of an expired session: fresh session, nothing stored",
			setup:  func(e *env) string { c := e.login(); e.clock.Advance(31 * time.Minute); return c },
			method: "GET", path: "/get?k=user", want: noCookie, writes: 0,
			check: func(t *testing.T, e *env, sent string, r reply) {
				if r.header.Get("X-New") != "1" || r.body != "" {
					t.Errorf("new %q body %q: want a fresh session", r.header.Get("X-New"), r.body)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustEnv(t, tc.opt, false)
			sent := tc.setup(e)
			before := e.store.commits.Load()
			r := e.do(tc.method, tc.path, sent)
			if r.status != 200 {
				t.Fatalf("status %d, body %q", r.status, r.body)
			}
			if got := kindOf(t, r); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if got := e.store.commits.Load() - before; got != tc.writes {
				t.Errorf("store commits: got %d, want %d", got, tc.writes)
			}
			if tc.check != nil {
				tc.check(t, e, sent, r)
			}
		})
	}
}

// The cookie a response sets always loads what the request wrote: the
// index it carries is the commit's.
func TestCookieCarriesCommitIndex(t *testing.T) {
	e := mustEnv(t, Options{}, false)
	c := e.do("POST", "/set?k=a&v=1", "").cookie(t).Value
	for i := range 3 {
		r := e.do("POST", "/set?k=a&v=x"+strings.Repeat("y", i), c)
		_, idx, _, ok := e.m.cookie.Load().decode(r.cookie(t).Value)
		rec, err := e.store.Load(t.Context(), idOf(c), session.LoadOptions{})
		if !ok || err != nil || idx != rec.Version {
			t.Fatalf("cookie index %d (ok %v), record version %v (err %v)", idx, ok, rec, err)
		}
		c = r.cookie(t).Value
	}
}
