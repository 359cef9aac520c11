package httpmw

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

// OWASP Session Management: the ID carries at least 128 bits of entropy.
func TestOWASPIDEntropy(t *testing.T) {
	e := mustEnv(t, Options{}, false)
	seen := map[string]bool{}
	for range 20 {
		id := idOf(e.do("POST", "/set?k=a&v=1", "").cookie(t).Value)
		raw, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(id) < 43 || len(raw)*8 < 256 {
			t.Fatalf("ID %q: %d chars, %d bits (err %v), want ≥ 43 chars and 256 random bits", id, len(id), len(raw)*8, err)
		}
		if seen[id] {
			t.Fatalf("ID %q issued twice", id)
		}
		seen[id] = true
	}
}

// OWASP: HttpOnly, SameSite, Path and Secure as configured and by default.
func TestOWASPCookieAttributes(t *testing.T) {
	tests := []struct {
		name  string
		opt   Options
		tls   bool
		hdr   []string
		check func(c *http.Cookie) string
	}{
		{"defaults over plain HTTP", Options{}, false, nil, func(c *http.Cookie) string {
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure || c.Domain != "" || c.Name != "sid" {
				return "want sid, HttpOnly, SameSite=Lax, Path=/, no Secure, host-only"
			}
			return ""
		}},
		{"defaults over TLS: Secure", Options{}, true, nil, func(c *http.Cookie) string {
			if !c.Secure || !c.HttpOnly {
				return "want Secure and HttpOnly"
			}
			return ""
		}},
		{"X-Forwarded-Proto ignored without TrustProxy", Options{}, false, []string{"X-Forwarded-Proto", "https"}, func(c *http.Cookie) string {
			if c.Secure {
				return "want no Secure"
			}
			return ""
		}},
		{"X-Forwarded-Proto honoured with TrustProxy", Options{TrustProxy: true}, false, []string{"X-Forwarded-Proto", "https"}, func(c *http.Cookie) string {
			if !c.Secure {
				return "want Secure"
			}
			return ""
		}},
		{"explicit settings", Options{CookieName: "app", Path: "/app", Domain: "example.com", HttpOnly: Off, Secure: On, SameSite: http.SameSiteStrictMode, Partitioned: true}, false, nil,
			func(c *http.Cookie) string {
				if c.Name != "app" || c.Path != "/app" || c.Domain != "example.com" || c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || !c.Partitioned {
					return "want the configured attributes"
				}
				return ""
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustEnv(t, tc.opt, tc.tls)
			r := e.do("POST", "/set?k=a&v=1", "", tc.hdr...)
			c := r.cookie(t)
			if c == nil {
				t.Fatal("no cookie")
			}
			if msg := tc.check(c); msg != "" {
				t.Errorf("cookie %q: %s", r.header.Get("Set-Cookie"), msg)
			}
		})
	}
}

// OWASP: the ID changes at login, and the pre-login ID is dead at once.
func TestOWASPRegenerateAtLogin(t *testing.T) {
	e := mustEnv(t, Options{}, false)
	before := e.do("POST", "/set?k=cart&v=3", "").cookie(t).Value
	after := e.do("POST", "/login?user=alice", before).cookie(t).Value
	if idOf(after) == idOf(before) {
		t.Fatal("login kept the session ID")
	}
	if r := e.do("GET", "/keys", after); r.body != "cart,user" {
		t.Errorf("after login keys %q, want cart,user (data kept)", r.body)
	}
	if r := e.do("GET", "/get?k=cart", before); r.header.Get("X-New") != "1" || r.body != "" {
		t.Errorf("pre-login cookie still loads the session (%q)", r.body)
	}
}

// OWASP: logout invalidates the session on the server, not only in the
// browser: replaying the old cookie finds nothing.
func TestOWASPLogoutInvalidatesServerSide(t *testing.T) {
	e := mustEnv(t, Options{}, false)
	c := e.login()
	if r := e.do("POST", "/destroy", c); kindOf(t, r) != expiredCookie {
		t.Fatalf("logout: %v", kindOf(t, r))
	}
	r := e.do("GET", "/get?k=user", c)
	if r.header.Get("X-New") != "1" || r.body != "" || len(r.cookies) != 0 {
		t.Errorf("replayed cookie: new %q body %q cookies %v, want a fresh empty session", r.header.Get("X-New"), r.body, r.cookies)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	tests := []struct {
		name string
		opt  Options
	}{
		{"short secret", Options{Secrets: [][]byte{[]byte("short")}}},
		{"short second secret", Options{Secrets: [][]byte{testSecret, []byte("short")}}},
		{"bad cookie name", Options{Secrets: [][]byte{testSecret}, CookieName: "a b"}},
		{"SameSite None without Secure", Options{Secrets: [][]byte{testSecret}, SameSite: http.SameSiteNoneMode, Secure: Off}},
		{"weak ID generator", Options{Secrets: [][]byte{testSecret}, IDGenerator: func() string { return "short" }}},
		{"negative idle timeout", Options{Secrets: [][]byte{testSecret}, IdleTimeout: -1}},
		{"limits above the store's", Options{Secrets: [][]byte{testSecret}, Limits: session.Limits{MaxValueBytes: session.DefaultLimits().MaxValueBytes + 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(store, tc.opt); err == nil {
				t.Error("New succeeded, want an error")
			}
		})
	}
	if _, err := New(nil, Options{Secrets: [][]byte{testSecret}}); err == nil {
		t.Error("New(nil store) succeeded")
	}
}

// failingStore fails commits (or loads) with err.
type failingStore struct {
	*session.MemoryStore
	loadErr, commitErr error
}

func (s *failingStore) Load(ctx context.Context, id string, opt session.LoadOptions) (*session.Record, error) {
	if s.loadErr != nil {
		return nil, s.loadErr
	}
	return s.MemoryStore.Load(ctx, id, opt)
}

func (s *failingStore) Commit(ctx context.Context, c *session.Change) (session.Result, error) {
	if s.commitErr != nil {
		return session.Result{}, s.commitErr
	}
	return s.MemoryStore.Commit(ctx, c)
}

// A failed commit replaces the response with the error handler's: the
// status of StatusCode (503 and Retry-After for an unavailable or full
// store), no internals, no cookie, and none of the handler's bytes.
func TestCommitFailure(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		load     bool
		want     int
		retry    bool
		withBody bool
	}{
		{"no leader on commit", session.ErrNoLeader, false, 503, true, false},
		{"timeout on commit, handler writes body", session.ErrTimeout, false, 503, true, true},
		{"too large on commit", session.ErrTooLarge, false, 413, false, true},
		{"quota on commit", session.ErrQuota, false, 503, true, false},
		{"no leader on load", session.ErrNoLeader, true, 503, true, false},
		{"internal error on load", errors.New("disk on fire"), true, 500, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := session.NewMemoryStore(session.MemoryOptions{})
			defer mem.Close()
			fs := &failingStore{MemoryStore: mem}
			m, err := New(fs, Options{Secrets: [][]byte{testSecret}, Logger: discardLogger()})
			if err != nil {
				t.Fatal(err)
			}
			h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				FromContext(r.Context()).Set("k", "v")
				if tc.withBody {
					w.Header().Set("Content-Type", "application/json")
					if _, err := io.WriteString(w, `{"secret":"handler body"}`); !errors.Is(err, errReplaced) {
						t.Errorf("Write after failed commit: %v, want errReplaced", err)
					}
				}
			}))
			srv := httptest.NewServer(h)
			defer srv.Close()
			cookie := ""
			if tc.load {
				okm, _ := New(mem, Options{Secrets: [][]byte{testSecret}})
				rec := httptest.NewRecorder()
				okm.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					FromContext(r.Context()).Set("k", "v")
				})).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
				cookie = rec.Result().Cookies()[0].Value
				fs.loadErr = tc.err
			} else {
				fs.commitErr = tc.err
			}
			r := doOn(t, srv, "sid", "GET", "/", cookie)
			if r.status != tc.want {
				t.Errorf("status %d, want %d", r.status, tc.want)
			}
			if got := r.header.Get("Retry-After") != ""; got != tc.retry {
				t.Errorf("Retry-After present %v, want %v", got, tc.retry)
			}
			if len(r.cookies) != 0 {
				t.Errorf("cookies %v, want none", r.cookies)
			}
			if strings.Contains(r.body, "handler body") || strings.Contains(r.body, "fire") || strings.Contains(r.body, "session:") {
				t.Errorf("body leaks: %q", r.body)
			}
		})
	}
}

// The commit happens before the first byte: a handler that streams sees
// its session stored by the time the client reads the headers.
func TestCommitBeforeFirstByte(t *testing.T) {
	proceed := make(chan struct{})
	e := mustEnv(t, Options{}, false, func(mux *http.ServeMux) {
		mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
			FromContext(r.Context()).Set("k", "v")
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("Flush through ResponseController: %v", err)
			}
			<-proceed
			io.WriteString(w, "tail")
		})
	})
	defer func() {
		select {
		case <-proceed:
		default:
			close(proceed)
		}
	}()
	resp, err := e.srv.Client().Get(e.srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Headers are here while the handler still blocks.
	var cookie string
	for _, c := range resp.Cookies() {
		cookie = c.Value
	}
	if cookie == "" {
		t.Fatal("no cookie with the flushed headers")
	}
	if _, err := e.store.Load(t.Context(), idOf(cookie), session.LoadOptions{}); err != nil {
		t.Errorf("session not stored when headers arrived: %v", err)
	}
	close(proceed)
	if b, _ := io.ReadAll(resp.Body); string(b) != "tail" {
		t.Errorf("body %q", b)
	}
}

// Writes after the response started are dropped (and logged), and Save
// before streaming is the way to keep them.
func TestSaveBeforeStreaming(t *testing.T) {
	e := mustEnv(t, Options{Logger: discardLogger()}, false, func(mux *http.ServeMux) {
		mux.HandleFunc("POST /late", func(w http.ResponseWriter, r *http.Request) {
			s := FromContext(r.Context())
			io.WriteString(w, "started")
			s.Set("late", "x")
		})
		mux.HandleFunc("POST /saved", func(w http.ResponseWriter, r *http.Request) {
			s := FromContext(r.Context())
			w.WriteHeader(http.StatusAccepted)
			s.Set("saved", "x")
			if err := s.Save(r.Context()); err != nil {
				t.Error(err)
			}
		})
	})
	c := e.login()
	e.do("POST", "/late", c)
	e.do("POST", "/saved", c)
	if got := e.do("GET", "/keys", c).body; got != "saved,user" {
		t.Errorf("keys %q, want saved,user", got)
	}
}

func TestFromContext(t *testing.T) {
	if FromContext(context.Background()) != nil {
		t.Error("session outside the middleware")
	}
	e := mustEnv(t, Options{}, false, func(mux *http.ServeMux) {
		mux.HandleFunc("GET /derived", func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
			defer cancel()
			if FromContext(ctx) != FromContext(r.Context()) || FromContext(ctx) == nil {
				t.Error("derived context lost the session")
			}
		})
	})
	e.do("GET", "/derived", "")
}
