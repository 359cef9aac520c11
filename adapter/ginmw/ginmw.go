package ginmw

import (
	"bufio"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

// Sessions returns the gin middleware that loads the session of each
// request through m and commits it before the response is written.
func Sessions(m *httpmw.Manager) gin.HandlerFunc {
	return func(c *gin.Context) {
		orig, called := c.Writer, false
		m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			called = true
			c.Request = r
			c.Writer = &writer{ResponseWriter: orig, mw: w}
			c.Next()
		})).ServeHTTP(orig, c.Request)
		c.Writer = orig
		if !called {
			// The session could not be loaded; the error handler answered.
			c.Abort()
		}
	}
}

// Session returns the request's session, or nil when the request did not
// pass through [Sessions].
func Session(c *gin.Context) *session.Session {
	return httpmw.FromContext(c.Request.Context())
}

// writer is the gin.ResponseWriter handlers see: what writes goes through
// httpmw's writer, which commits the session first; the rest is gin's.
type writer struct {
	gin.ResponseWriter
	mw http.ResponseWriter
}

func (w *writer) WriteHeader(code int) { w.mw.WriteHeader(code) }

func (w *writer) Write(p []byte) (int, error) { return w.mw.Write(p) }

func (w *writer) WriteString(s string) (int, error) { return w.mw.Write([]byte(s)) }

// WriteHeaderNow commits the session (through WriteHeader with the status
// gin holds), then has gin write the header.
func (w *writer) WriteHeaderNow() {
	if !w.ResponseWriter.Written() {
		w.mw.WriteHeader(w.ResponseWriter.Status())
	}
	w.ResponseWriter.WriteHeaderNow()
}

func (w *writer) Flush() { _ = http.NewResponseController(w.mw).Flush() }

func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.mw).Hijack()
}

// Unwrap returns httpmw's writer, for http.ResponseController.
func (w *writer) Unwrap() http.ResponseWriter { return w.mw }
