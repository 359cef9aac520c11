package httpmw

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftsession/raftsession/session"
)

// Manager loads, commits and cookies the sessions of the requests that
// pass through [Manager.Handler]. It is safe for concurrent use.
type Manager struct {
	store  session.Store
	opt    Options
	cfg    session.Config
	cookie atomic.Pointer[cookieCodec] // swapped whole; nil while a source has no secret
	load   session.LoadOptions

	// source, when set, provides the secrets (see SecretSource); sourced
	// is the channel of its last answer.
	source  SecretSource
	srcMu   sync.Mutex
	sourced atomic.Pointer[sourceState]
}

// New returns a Manager over store with opt's defaults filled in. Without
// [Options.Secrets] it takes the store's secrets when the store is a
// [SecretSource] (a cluster's replicated keyring) and otherwise signs with
// a random secret of this process. Limits and the read-your-writes wait
// default to the store's (see [Options.Limits], [Options.ConsistencyWait]).
// It fails when store is nil, when a secret is shorter than
// [MinSecretLen], when an option is invalid, or when Options.Limits allow
// more than the store enforces.
func New(store session.Store, opt Options) (*Manager, error) {
	if store == nil {
		return nil, errors.New("httpmw: nil store")
	}
	opt, err := opt.withDefaults(store)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		store: store,
		opt:   opt,
		load:  session.LoadOptions{Level: opt.Consistency, Wait: opt.ConsistencyWait},
	}
	m.initSecrets()
	gen := opt.IDGenerator
	m.cfg = session.Config{
		Store:       store,
		Codec:       opt.Codec,
		Limits:      opt.Limits,
		IdleTimeout: opt.IdleTimeout,
		Lifetime:    opt.Lifetime,
		Persist:     opt.Persist,
		NewID: func() string {
			if id := gen(); validID(id) {
				return id
			}
			// A cookie with this ID would never verify; log loudly and
			// keep the session working.
			opt.Logger.Error("httpmw: IDGenerator returned an invalid ID; using session.NewID")
			return session.NewID()
		},
		Level: opt.Consistency,
		Wait:  opt.ConsistencyWait,
		Now:   opt.Clock,
	}
	return m, nil
}

// SetSecrets replaces the cookie secrets while the Manager serves
// requests, for keys that change at run time (for example a keyring
// replicated through the store). The rules are those of
// [Options.Secrets]: the first signs, every one verifies, each at least
// [MinSecretLen] bytes, at least one. Requests already past reading their
// cookie finish with the secrets they started with; later requests use the
// new ones. The secrets are copied. Cookies signed by a secret that is no
// longer in the list stop verifying, so their sessions look new: keep an
// old secret until the cookies it signed have been re-signed or expired.
// A Manager that follows a [SecretSource] uses these secrets until the
// source's next change.
func (m *Manager) SetSecrets(secrets [][]byte) error {
	cp, err := copySecrets(secrets)
	if err != nil {
		return err
	}
	m.cookie.Store(newCookieCodec(m.opt.CookieName, cp))
	return nil
}

type ctxKey struct{}

// FromContext returns the session of the request whose context is ctx (or
// derives from it), or nil when the request did not pass through
// [Manager.Handler].
func FromContext(ctx context.Context) *session.Session {
	if c, ok := ctx.(*sessionContext); ok {
		return c.s
	}
	s, _ := ctx.Value(ctxKey{}).(*session.Session)
	return s
}

// sessionContext carries the session without the allocation of
// context.WithValue: it lives inside the request state.
type sessionContext struct {
	context.Context
	s *session.Session
}

func (c *sessionContext) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return c.s
	}
	return c.Context.Value(key)
}

func (c *sessionContext) String() string { return fmt.Sprint(c.Context) + ".WithSession" }

// Handler returns next wrapped in session handling: it loads the session
// named by the request's cookie (or starts a new one), makes it available
// through [FromContext], and commits the request's changes on the first
// WriteHeader, Write, ReadFrom or Flush, or when next returns, before any
// byte of the response leaves. See the package documentation for when the
// cookie is sent.
func (m *Manager) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.serve(next, w, r)
	})
}

// request is the per-request state, allocated once: the context, the
// response writer wrapper and the cookie facts live together.
type request struct {
	ctx    sessionContext
	rw     responseWriter
	m      *Manager
	r      *http.Request // as passed to next
	cookie *cookieCodec  // the secrets this request verified with and signs with

	handle      *session.Handle // the middleware's side; ctx.s is the handler's
	cookieID    string          // ID of the loaded session, "" when none was loaded
	cookieIndex uint64
	hadCookie   bool // the request carried a session cookie, valid or not
	resign      bool // the cookie verified under an older secret

	vary [1]string // backing array of the Vary header

	started bool // the commit point has passed
	failed  bool // the commit failed and the error response replaced next's
}

func (m *Manager) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	rq := &request{m: m, cookie: m.codec()}
	if rq.cookie == nil {
		m.fail(w, r, "load", ErrNoSecrets)
		return
	}
	rq.rw = responseWriter{ResponseWriter: w, rq: rq}
	id, index, signer, present := rq.cookie.readCookie(r)
	rq.hadCookie = present
	var rec *session.Record
	if id != "" {
		opt := m.load
		opt.MinIndex = index
		var err error
		rec, err = m.store.Load(r.Context(), id, opt)
		switch {
		case err == nil:
			rq.cookieID, rq.cookieIndex, rq.resign = id, index, signer > 0
		case errors.Is(err, session.ErrNotFound):
			// Expired or destroyed: start afresh, as with no cookie.
			rec, index = nil, 0
		default:
			m.fail(w, r, "load", err)
			return
		}
	}
	rq.handle = session.Open(&m.cfg, id, rec, index)
	rq.ctx = sessionContext{Context: r.Context(), s: rq.handle.Session()}
	rq.r = r.WithContext(&rq.ctx)
	next.ServeHTTP(&rq.rw, rq.r)
	if !rq.started {
		rq.begin()
		return
	}
	if !rq.failed && rq.handle.Modified() {
		m.opt.Logger.LogAttrs(rq.r.Context(), slog.LevelWarn,
			"httpmw: session changed after the response started; change dropped (call Save before writing the body)",
			slog.String("method", r.Method), slog.String("path", r.URL.Path))
	}
}

// fail logs err and lets the ErrorHandler answer instead of the handler.
func (m *Manager) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	// Unavailable (503: no leader, timeout, not started yet) is the
	// cluster's weather, not a fault; a full store (ErrQuota) is.
	level := slog.LevelError
	if StatusCode(err) == http.StatusServiceUnavailable && !errors.Is(err, session.ErrQuota) {
		level = slog.LevelWarn
	}
	m.opt.Logger.LogAttrs(r.Context(), level, "httpmw: session "+op+" failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	// The handler's entity headers describe a body that will not be sent.
	h := w.Header()
	for _, k := range [...]string{"Content-Length", "Content-Type", "Content-Encoding", "Content-Range", "Content-Disposition", "Etag", "Last-Modified", "Set-Cookie"} {
		delete(h, k)
	}
	m.opt.ErrorHandler(w, r, err)
}

// begin is the commit point: it commits the session and sets the response
// headers that depend on it. It reports false when the commit failed and
// the error response has replaced the handler's.
func (rq *request) begin() bool {
	if rq.started {
		return !rq.failed
	}
	rq.started = true
	m, sess := rq.m, rq.handle
	status := sess.Status()
	touch := false
	if status == session.StatusStored {
		touch = m.opt.Resave || m.opt.TouchAfter < 0 || m.opt.Clock().Sub(sess.LastSeen()) >= m.opt.TouchAfter
	}
	if _, err := sess.CommitForResponse(rq.r.Context(), touch, m.opt.SaveUninitialized); err != nil {
		rq.failed = true
		m.fail(rq.rw.ResponseWriter, rq.r, "commit", err)
		return false
	}
	h := rq.rw.ResponseWriter.Header()
	cookie := false
	switch sess.Status() {
	case session.StatusStored:
		if id, index := sess.Session().ID(), sess.Index(); id != rq.cookieID || index != rq.cookieIndex || rq.resign || m.opt.Rolling {
			var expires time.Time
			if sess.Persistent() {
				expires = sess.Expiry()
			}
			rq.setCookie(h, rq.cookie.encode(id, index), expires, false)
			cookie = true
		}
	case session.StatusDestroyed:
		if rq.hadCookie {
			rq.setCookie(h, "", time.Time{}, true)
			cookie = true
		}
	case session.StatusGone:
		// A concurrent logout or login replaced this session and may have
		// sent a fresh cookie; any cookie sent here would clobber it.
	}
	if (cookie || sess.Used()) && !varyCookie(h) {
		if v := h["Vary"]; v == nil {
			// The request state outlives the response; using its array
			// saves Header.Add's allocation on every request.
			rq.vary[0] = "Cookie"
			h["Vary"] = rq.vary[:1:1]
		} else {
			h["Vary"] = append(v, "Cookie")
		}
	}
	return true
}

func varyCookie(h http.Header) bool {
	for _, v := range h["Vary"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); strings.EqualFold(f, "Cookie") || f == "*" {
				return true
			}
		}
	}
	return false
}

// setCookie adds the session cookie to h: persistent until expires when it
// is not zero, a browser-session cookie otherwise, or an expired one that
// makes the browser drop it.
func (rq *request) setCookie(h http.Header, value string, expires time.Time, expire bool) {
	o := &rq.m.opt
	c := http.Cookie{
		Name:     o.CookieName,
		Value:    value,
		Path:     o.Path,
		Domain:   o.Domain,
		HttpOnly: o.HttpOnly != Off,
		Secure:   rq.secure(),
		SameSite: o.SameSite,
	}
	c.Partitioned = o.Partitioned && c.Secure
	switch {
	case expire:
		c.Expires, c.MaxAge = time.Unix(1, 0), -1
	case !expires.IsZero():
		left := expires.Sub(o.Clock())
		c.MaxAge = int((left + time.Second - 1) / time.Second)
		if c.MaxAge <= 0 {
			c.MaxAge = 1
		}
		c.Expires = expires.Add(time.Second - 1).Truncate(time.Second).UTC()
	}
	h.Add("Set-Cookie", c.String())
	h.Add("Cache-Control", `no-cache="Set-Cookie"`)
}

func (rq *request) secure() bool {
	switch rq.m.opt.Secure {
	case On:
		return true
	case Off:
		return false
	}
	if rq.r.TLS != nil {
		return true
	}
	if rq.m.opt.TrustProxy {
		proto, _, _ := strings.Cut(rq.r.Header.Get("X-Forwarded-Proto"), ",")
		return strings.EqualFold(strings.TrimSpace(proto), "https")
	}
	return false
}

// errReplaced is what writes after a failed commit return: the error
// response has been sent instead of the handler's.
var errReplaced = errors.New("httpmw: session commit failed; the response was replaced by the error handler's")

// responseWriter commits the session before the first byte of the
// response. Its Unwrap lets http.ResponseController reach the underlying
// writer's features.
type responseWriter struct {
	http.ResponseWriter
	rq *request
}

// WriteHeader commits the session, then writes the header. Informational
// (1xx) headers other than 101 pass through without committing.
func (w *responseWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.rq.begin() {
		w.ResponseWriter.WriteHeader(code)
	}
}

// Write commits the session on first use, then writes p.
func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.rq.begin() {
		return 0, errReplaced
	}
	return w.ResponseWriter.Write(p)
}

// ReadFrom commits the session, then copies src with the underlying
// writer's ReadFrom when it has one (sendfile for *os.File).
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if !w.rq.begin() {
		return 0, errReplaced
	}
	return io.Copy(w.ResponseWriter, src)
}

// Flush commits the session, then flushes.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError commits the session, then flushes, reporting the underlying
// writer's error (http.ErrNotSupported when it cannot flush).
func (w *responseWriter) FlushError() error {
	if !w.rq.begin() {
		return errReplaced
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack commits the session (its cookie cannot be sent any more), then
// hands over the connection.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.rq.begin() {
		return nil, nil, errReplaced
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
