package httpmw

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/raftsession/raftsession/session"
)

// The benchmarks run one request through the middleware and a handler
// that reads (or sets) one value. Their side-by-side versions with
// github.com/alexedwards/scs/v2 live in the bench module (bench/micro), so
// that scs stays out of this module's requirements; results and the
// command are in docs/BENCHMARKS.md.

// benchWriter is a ResponseWriter that keeps nothing, so the numbers are
// the middleware's and not a recorder's.
type benchWriter struct{ h http.Header }

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) WriteHeader(int)             {}

// benchRun serves req to h b.N times with a fresh header map state.
func benchRun(b *testing.B, h http.Handler, req *http.Request) {
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

// raftsessionBench returns the middleware-wrapped handler and a request
// carrying the cookie of a session that holds user=alice.
func raftsessionBench(b *testing.B, handler http.HandlerFunc) (http.Handler, *http.Request) {
	m, req := storedAlice(b, testSecret)
	return m.Handler(handler), req
}

// storedAlice returns a Manager over a fresh MemoryStore signing with
// secret, and a request carrying the cookie of a session holding
// user=alice.
func storedAlice(tb testing.TB, secret []byte) (*Manager, *http.Request) {
	tb.Helper()
	store := session.NewMemoryStore(session.MemoryOptions{})
	tb.Cleanup(func() { store.Close() })
	m, err := New(store, Options{Secrets: [][]byte{secret}})
	if err != nil {
		tb.Fatal(err)
	}
	rec := httptest.NewRecorder()
	m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).Set("user", "alice")
	})).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(rec.Result().Cookies()[0])
	return m, req
}

// BenchmarkReadPath: a request that reads one value of an existing session
// and writes it to the response.
func BenchmarkReadPath(b *testing.B) {
	b.Run("httpmw", func(b *testing.B) {
		h, req := raftsessionBench(b, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, FromContext(r.Context()).GetString("user"))
		})
		benchRun(b, h, req)
	})
}

// BenchmarkWritePath: a request that sets one value of an existing session
// (committed to the store, cookie re-sent).
func BenchmarkWritePath(b *testing.B) {
	b.Run("httpmw", func(b *testing.B) {
		h, req := raftsessionBench(b, func(w http.ResponseWriter, r *http.Request) {
			if err := FromContext(r.Context()).Set("page", "/cart"); err != nil {
				b.Error(err)
			}
			io.WriteString(w, "ok")
		})
		benchRun(b, h, req)
	})
}
