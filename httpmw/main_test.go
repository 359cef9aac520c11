package httpmw

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftsession/raftsession/session"
	"github.com/raftsession/raftsession/session/storetest"
)

// TestMain fails the package's tests if any goroutine outlives them: a
// store janitor, a test server, or a request the middleware left behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	testSecret    = []byte("0123456789abcdef0123456789abcdef")
	testOldSecret = []byte("fedcba9876543210fedcba9876543210")
)

// countingStore counts commits, so tests can tell "no store write".
type countingStore struct {
	*session.MemoryStore
	commits atomic.Int64
}

func (s *countingStore) Commit(ctx context.Context, c *session.Change) (session.Result, error) {
	s.commits.Add(1)
	return s.MemoryStore.Commit(ctx, c)
}

// env is one middleware over one store, served by a real HTTP server.
type env struct {
	t     *testing.T
	clock *storetest.Clock // shared by the store and the middleware
	store *countingStore
	m     *Manager
	srv   *httptest.Server
}

// mustEnv starts a test server whose routes exercise the session, plus
// routes; opt's Secrets and Clock are filled in when empty.
func mustEnv(t *testing.T, opt Options, tls bool, routes ...func(*http.ServeMux)) *env {
	t.Helper()
	e := &env{t: t, clock: storetest.NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))}
	e.store = &countingStore{MemoryStore: session.NewMemoryStore(session.MemoryOptions{Now: e.clock.Now})}
	t.Cleanup(func() { e.store.Close() })
	if opt.Secrets == nil {
		opt.Secrets = [][]byte{testSecret}
	}
	if opt.Clock == nil {
		opt.Clock = e.clock.Now
	}
	m, err := New(e.store, opt)
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	mux := testRoutes(t)
	for _, add := range routes {
		add(mux)
	}
	h := m.Handler(mux)
	if tls {
		e.srv = httptest.NewTLSServer(h)
	} else {
		e.srv = httptest.NewServer(h)
	}
	t.Cleanup(e.srv.Close)
	return e
}

func testRoutes(t *testing.T) *http.ServeMux {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, err error) {
		t.Errorf("handler: %v", err)
		http.Error(w, err.Error(), http.StatusTeapot)
	}
	mux.HandleFunc("GET /noop", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if s.IsNew() {
			w.Header().Set("X-New", "1")
		}
		io.WriteString(w, s.GetString(r.URL.Query().Get("k")))
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Join(FromContext(r.Context()).Keys(), ","))
	})
	mux.HandleFunc("POST /set", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if err := FromContext(r.Context()).Set(q.Get("k"), q.Get("v")); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("POST /destroy", func(w http.ResponseWriter, r *http.Request) {
		if err := FromContext(r.Context()).Destroy(r.Context()); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		user := r.URL.Query().Get("user")
		if err := s.Regenerate(); err != nil {
			fail(w, err)
			return
		}
		if err := s.Set("user", user); err != nil {
			fail(w, err)
			return
		}
		if err := s.SetOwner("user:" + user); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("POST /regenerate-empty", func(w http.ResponseWriter, r *http.Request) {
		if err := FromContext(r.Context()).RegenerateEmpty(); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("POST /remember", func(w http.ResponseWriter, r *http.Request) {
		if err := FromContext(r.Context()).RememberMe(30 * 24 * time.Hour); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("POST /touch", func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).Touch()
	})
	mux.HandleFunc("POST /incr", func(w http.ResponseWriter, r *http.Request) {
		n, err := FromContext(r.Context()).Incr(r.Context(), "n", 1)
		if err != nil {
			fail(w, err)
			return
		}
		io.WriteString(w, strconv.FormatInt(n, 10))
	})
	return mux
}

// reply is what a test needs from one response.
type reply struct {
	status  int
	body    string
	header  http.Header
	cookies []*http.Cookie // Set-Cookie for the session cookie
}

// cookie returns the one session cookie the response set, or nil.
func (r reply) cookie(t *testing.T) *http.Cookie {
	t.Helper()
	switch len(r.cookies) {
	case 0:
		return nil
	case 1:
		return r.cookies[0]
	}
	t.Fatalf("%d session cookies set, want at most 1", len(r.cookies))
	return nil
}

// do sends one request with the session cookie value (none when empty).
func (e *env) do(method, path, cookie string, hdr ...string) reply {
	e.t.Helper()
	return doOn(e.t, e.srv, e.m.opt.CookieName, method, path, cookie, hdr...)
}

func doOn(t testing.TB, srv *httptest.Server, name, method, path, cookie string, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: name, Value: cookie})
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, body: string(body), header: resp.Header}
	for _, c := range resp.Cookies() {
		if c.Name == name {
			r.cookies = append(r.cookies, c)
		}
	}
	return r
}

// login creates a session holding user=alice and returns its cookie.
func (e *env) login() string {
	e.t.Helper()
	r := e.do("POST", "/login?user=alice", "")
	c := r.cookie(e.t)
	if r.status != 200 || c == nil {
		e.t.Fatalf("login: status %d, cookie %v", r.status, c)
	}
	return c.Value
}

// idOf returns the session ID part of a cookie value.
func idOf(v string) string {
	id, _, _ := strings.Cut(v, ".")
	return id
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
