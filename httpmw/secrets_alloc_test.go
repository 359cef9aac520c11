//go:build !race

package httpmw

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/raftsession/raftsession/session"
)

// The race detector makes sync.Pool drop items at random, so allocation
// counts are only meaningful without it.

// TestSetSecretsKeepsReadPathAllocs checks that a swap adds no
// allocation to the read path: the codec is loaded with one atomic read.
func TestSetSecretsKeepsReadPathAllocs(t *testing.T) {
	store := session.NewMemoryStore(session.MemoryOptions{})
	t.Cleanup(func() { store.Close() })
	m, err := New(store, Options{Secrets: [][]byte{testOldSecret}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).Set("user", "alice")
	})).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(rec.Result().Cookies()[0])
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = FromContext(r.Context()).GetString("user")
	}))
	w := &benchWriter{h: http.Header{}}
	run := func() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	before := testing.AllocsPerRun(200, run)
	// The signing secret stays first, so the request does the same work
	// as before the swap.
	if err := m.SetSecrets([][]byte{testOldSecret, testSecret}); err != nil {
		t.Fatal(err)
	}
	after := testing.AllocsPerRun(200, run)
	if after > before {
		t.Fatalf("read path allocates %v per request after SetSecrets, %v before", after, before)
	}
}
