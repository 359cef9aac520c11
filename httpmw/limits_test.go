package httpmw

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

// setHandler answers 413 when Set refuses the value in the "v" query
// parameter: the handler learns at once, before any commit.
var setHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if err := FromContext(r.Context()).Set("k", r.URL.Query().Get("v")); errors.Is(err, session.ErrTooLarge) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	}
})

// The limits Session.Set checks are the store's unless an option makes
// them stricter; a looser option is refused by New.
func TestLimitsComeFromTheStore(t *testing.T) {
	store := session.NewMemoryStore(session.MemoryOptions{Limits: session.Limits{MaxValueBytes: 16}})
	defer store.Close()
	tests := []struct {
		name   string
		limits session.Limits
		value  int // bytes of the value (JSON-encoded: plus two quotes)
		want   int
	}{
		{"store's limit, fits", session.Limits{}, 14, http.StatusOK},
		{"store's limit, too large", session.Limits{}, 15, http.StatusRequestEntityTooLarge},
		{"stricter option", session.Limits{MaxValueBytes: 8}, 7, http.StatusRequestEntityTooLarge},
		{"other fields stay the store's", session.Limits{MaxKeys: 4}, 15, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(store, Options{Secrets: [][]byte{testSecret}, Limits: tc.limits})
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			m.Handler(setHandler).ServeHTTP(w, httptest.NewRequest("GET", "/?v="+strings.Repeat("x", tc.value), nil))
			if w.Code != tc.want {
				t.Errorf("status: got %d, want %d", w.Code, tc.want)
			}
		})
	}
	_, err := New(store, Options{Secrets: [][]byte{testSecret}, Limits: session.Limits{MaxValueBytes: 17}})
	if err == nil || !strings.Contains(err.Error(), "MaxValueBytes is 17 but the store enforces 16") {
		t.Errorf("New with limits above the store's: got %v, want the MaxValueBytes conflict", err)
	}
}

// opaqueStore hides the store's optional abilities, as a wrapper that
// knows nothing of them would.
type opaqueStore struct{ s session.Store }

func (o opaqueStore) Load(ctx context.Context, id string, opt session.LoadOptions) (*session.Record, error) {
	return o.s.Load(ctx, id, opt)
}

func (o opaqueStore) Commit(ctx context.Context, c *session.Change) (session.Result, error) {
	return o.s.Commit(ctx, c)
}

// A store that does not report its limits gets the defaults, and any
// option: New cannot know that it conflicts.
func TestLimitsOfAnOpaqueStore(t *testing.T) {
	mem := session.NewMemoryStore(session.MemoryOptions{})
	defer mem.Close()
	store := opaqueStore{mem}
	if got, want := session.LimitsOf(store), session.DefaultLimits(); got != want {
		t.Errorf("LimitsOf: got %+v, want %+v", got, want)
	}
	if _, err := New(store, Options{Secrets: [][]byte{testSecret}, Limits: session.Limits{MaxValueBytes: 1 << 20}}); err != nil {
		t.Errorf("New: got %v, want nil", err)
	}
}

// waitRecorder records the Wait of every load.
type waitRecorder struct {
	*session.MemoryStore
	mu    sync.Mutex
	waits []time.Duration
}

func (s *waitRecorder) Load(ctx context.Context, id string, opt session.LoadOptions) (*session.Record, error) {
	s.mu.Lock()
	s.waits = append(s.waits, opt.Wait)
	s.mu.Unlock()
	return s.MemoryStore.Load(ctx, id, opt)
}

// The read-your-writes wait is the store's unless ConsistencyWait
// overrides it: with the option zero, the middleware's load and the
// handler's Reload leave Wait zero, which a store reads as its own
// default (a cluster's Config.ReadWait).
func TestConsistencyWaitDefaultsToTheStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  time.Duration
	}{
		{"store's", 0},
		{"option", 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &waitRecorder{MemoryStore: session.NewMemoryStore(session.MemoryOptions{})}
			defer store.Close()
			m, err := New(store, Options{Secrets: [][]byte{testSecret}, ConsistencyWait: tc.opt})
			if err != nil {
				t.Fatal(err)
			}
			h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := FromContext(r.Context())
				if s.IsNew() {
					s.Set("k", "v")
					return
				}
				if err := s.Reload(r.Context()); err != nil {
					t.Error(err)
				}
			}))
			first := httptest.NewRecorder()
			h.ServeHTTP(first, httptest.NewRequest("GET", "/", nil))
			req := httptest.NewRequest("GET", "/", nil)
			for _, c := range first.Result().Cookies() {
				req.AddCookie(c)
			}
			h.ServeHTTP(httptest.NewRecorder(), req)
			store.mu.Lock()
			defer store.mu.Unlock()
			if len(store.waits) != 2 || store.waits[0] != tc.opt || store.waits[1] != tc.opt {
				t.Errorf("Wait of the load and the Reload: got %v, want [%v %v]", store.waits, tc.opt, tc.opt)
			}
		})
	}
}
