package httpmw

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/raftsession/raftsession/session"
)

// sourceStore is a MemoryStore that also serves cookie secrets, the way
// cluster.Store serves its replicated keyring.
type sourceStore struct {
	*session.MemoryStore
	mu      sync.Mutex
	secrets [][]byte
	changed chan struct{}
	calls   int
}

func newSourceStore(t *testing.T) *sourceStore {
	s := &sourceStore{MemoryStore: session.NewMemoryStore(session.MemoryOptions{}), changed: make(chan struct{})}
	t.Cleanup(func() { s.Close() })
	return s
}

func (s *sourceStore) CookieSecrets() ([][]byte, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return s.secrets, s.changed
}

// set publishes new secrets and wakes the Managers that follow them.
func (s *sourceStore) set(secrets ...[]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets = secrets
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *sourceStore) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func sourceServer(t *testing.T, store session.Store, opt Options) (*Manager, *httptest.Server) {
	t.Helper()
	m, err := New(store, opt)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler(testRoutes(t)))
	t.Cleanup(srv.Close)
	return m, srv
}

// TestNoSecretMemoryStore is the new user's single-process app: no secret
// configured, and sessions work.
func TestNoSecretMemoryStore(t *testing.T) {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	m, srv := sourceServer(t, store, Options{})
	r := doOn(t, srv, "sid", "POST", "/login?user=alice", "")
	c := r.cookie(t)
	if r.status != 200 || c == nil {
		t.Fatalf("login: status %d, cookie %v", r.status, c)
	}
	if r := doOn(t, srv, "sid", "GET", "/get?k=user", c.Value); r.body != "alice" {
		t.Fatalf("got %q, want %q", r.body, "alice")
	}
	// The secret is random per Manager: another process (here another
	// Manager over the same store) does not accept the cookie.
	_, other := sourceServer(t, store, Options{})
	if r := doOn(t, other, "sid", "GET", "/get?k=user", c.Value); r.body != "" || r.header.Get("X-New") != "1" {
		t.Fatalf("another Manager accepted the cookie: body %q", r.body)
	}
	if len(m.cookie.Load().keys) != 1 {
		t.Fatalf("%d secrets, want one generated", len(m.cookie.Load().keys))
	}
}

// levelRecorder records the levels of the log records it is given.
type levelRecorder struct {
	mu     sync.Mutex
	levels []slog.Level
}

func (h *levelRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *levelRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *levelRecorder) WithGroup(string) slog.Handler            { return h }
func (h *levelRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.levels = append(h.levels, r.Level)
	return nil
}

func (h *levelRecorder) max() slog.Level {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.levels) == 0 {
		return slog.LevelDebug - 1
	}
	return slices.Max(h.levels)
}

func TestSecretSource(t *testing.T) {
	src := newSourceStore(t)
	logs := &levelRecorder{}
	_, srv := sourceServer(t, src, Options{Logger: slog.New(logs)})

	// No secret yet: requests are refused as unavailable, not served with
	// cookies nobody else could verify. A node that is starting has none
	// until it has caught up, so this is a warning, not an error.
	r := doOn(t, srv, "sid", "POST", "/login?user=alice", "")
	if r.status != 503 || r.header.Get("Retry-After") == "" || len(r.cookies) != 0 {
		t.Fatalf("before any secret: status %d, Retry-After %q, %d cookies; want 503, set, none", r.status, r.header.Get("Retry-After"), len(r.cookies))
	}
	if lvl := logs.max(); lvl != slog.LevelWarn {
		t.Fatalf("refusal before any secret logged at %v, want WARN", lvl)
	}

	src.set(testOldSecret)
	old := doOn(t, srv, "sid", "POST", "/login?user=alice", "").cookie(t)
	if old == nil {
		t.Fatal("no cookie once the source has a secret")
	}
	// Another Manager over the same source (another instance of the
	// app) verifies it: the point of replicated secrets.
	_, peer := sourceServer(t, src, Options{})
	if r := doOn(t, peer, "sid", "GET", "/get?k=user", old.Value); r.body != "alice" {
		t.Fatalf("peer instance: got %q, want %q", r.body, "alice")
	}

	// Rotation: the new secret signs, the old one still verifies and its
	// cookie is re-signed.
	src.set(testSecret, testOldSecret)
	r = doOn(t, srv, "sid", "GET", "/get?k=user", old.Value)
	if r.body != "alice" || r.cookie(t) == nil {
		t.Fatalf("after rotation: body %q, re-signed cookie %v", r.body, r.cookie(t))
	}
	resigned := r.cookie(t).Value

	// Unusable secrets from the source are refused; the last good ones stay.
	src.set([]byte("short"))
	if r := doOn(t, srv, "sid", "GET", "/get?k=user", resigned); r.body != "alice" {
		t.Fatalf("after a bad update: got %q, want %q", r.body, "alice")
	}

	// Retiring the old secret ends its cookies, not the re-signed ones.
	src.set(testSecret)
	if r := doOn(t, srv, "sid", "GET", "/get?k=user", old.Value); r.body != "" {
		t.Fatalf("cookie of a retired secret: got %q, want a new session", r.body)
	}
	if r := doOn(t, srv, "sid", "GET", "/get?k=user", resigned); r.body != "alice" {
		t.Fatalf("re-signed cookie: got %q, want %q", r.body, "alice")
	}
}

// TestSecretSourceAskedOnlyOnChange checks that requests do not call the
// source while its channel stays open.
func TestSecretSourceAskedOnlyOnChange(t *testing.T) {
	src := newSourceStore(t)
	src.set(testSecret)
	_, srv := sourceServer(t, src, Options{})
	before := src.callCount()
	for range 5 {
		doOn(t, srv, "sid", "GET", "/noop", "")
	}
	if got := src.callCount(); got != before {
		t.Fatalf("source asked %d times by unchanged requests, want 0", got-before)
	}
	src.set(testOldSecret)
	doOn(t, srv, "sid", "GET", "/noop", "")
	doOn(t, srv, "sid", "GET", "/noop", "")
	if got := src.callCount(); got != before+1 {
		t.Fatalf("source asked %d times after one change, want 1", got-before)
	}
}

// TestExplicitSecretsWinOverSource: Options.Secrets, when set, are used
// and the source is ignored.
func TestExplicitSecretsWinOverSource(t *testing.T) {
	src := newSourceStore(t)
	m, _ := sourceServer(t, src, Options{Secrets: [][]byte{testSecret}})
	if m.source != nil || src.callCount() != 0 {
		t.Fatal("a Manager with Options.Secrets asked the store for secrets")
	}
	if got := m.codec(); got == nil || len(got.keys) != 1 {
		t.Fatal("explicit secret not in use")
	}
}
