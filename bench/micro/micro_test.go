package micro

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"

	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

// benchWriter is a ResponseWriter that keeps nothing, so the numbers are
// the middleware's and not a recorder's.
type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(int)             {}

func benchRun(b *testing.B, h http.Handler, req *http.Request) {
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// httpmwBench returns handler behind httpmw over a MemoryStore and a
// request carrying the cookie of a session that holds user=alice.
func httpmwBench(b *testing.B, handler http.HandlerFunc) (http.Handler, *http.Request) {
	store := session.NewMemoryStore(session.MemoryOptions{})
	b.Cleanup(func() { store.Close() })
	m, err := httpmw.New(store, httpmw.Options{})
	if err != nil {
		b.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpmw.FromContext(r.Context()).Set("user", "alice")
	})).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(rec.Result().Cookies()[0])
	return m.Handler(handler), req
}

// scsBench is the same with scs LoadAndSave over its memstore.
func scsBench(b *testing.B, handler func(sm *scs.SessionManager) http.HandlerFunc) (http.Handler, *http.Request) {
	sm := scs.New()
	store := memstore.NewWithCleanupInterval(0)
	sm.Store = store
	rec := httptest.NewRecorder()
	sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "user", "alice")
	})).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(rec.Result().Cookies()[0])
	return sm.LoadAndSave(handler(sm)), req
}

// BenchmarkReadPath: a request that reads one value of an existing session
// and writes it to the response.
func BenchmarkReadPath(b *testing.B) {
	b.Run("httpmw", func(b *testing.B) {
		h, req := httpmwBench(b, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, httpmw.FromContext(r.Context()).GetString("user"))
		})
		benchRun(b, h, req)
	})
	b.Run("scs", func(b *testing.B) {
		h, req := scsBench(b, func(sm *scs.SessionManager) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, sm.GetString(r.Context(), "user"))
			}
		})
		benchRun(b, h, req)
	})
}

// BenchmarkWritePath: a request that sets one value of an existing session
// (committed to the store, cookie re-sent).
func BenchmarkWritePath(b *testing.B) {
	b.Run("httpmw", func(b *testing.B) {
		h, req := httpmwBench(b, func(w http.ResponseWriter, r *http.Request) {
			if err := httpmw.FromContext(r.Context()).Set("page", "/cart"); err != nil {
				b.Error(err)
			}
			io.WriteString(w, "ok")
		})
		benchRun(b, h, req)
	})
	b.Run("scs", func(b *testing.B) {
		h, req := scsBench(b, func(sm *scs.SessionManager) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				sm.Put(r.Context(), "page", "/cart")
				io.WriteString(w, "ok")
			}
		})
		benchRun(b, h, req)
	})
}
