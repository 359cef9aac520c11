package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// maxReplayBody is the largest request body buffered so that the request can
// be resent to another backend. Larger bodies are streamed, and their
// requests are never retried.
const maxReplayBody = 1 << 20

// Balancer is an http.Handler that proxies each request to the next backend
// in round-robin order, moving on to the following backend when one cannot be
// reached (see the package documentation for when a request is retried).
// It is safe for concurrent use.
type Balancer struct {
	// Logger receives one line per failed backend attempt. Default: discard.
	Logger *slog.Logger

	backends  []*url.URL
	next      atomic.Uint64
	transport *http.Transport
	proxy     *httputil.ReverseProxy
}

// New returns a Balancer over backends, which must be non-empty absolute
// http(s) URLs such as those returned by [ParseBackends].
func New(backends []*url.URL) *Balancer {
	b := &Balancer{
		backends: backends,
		transport: &http.Transport{
			// Never route through an HTTP proxy from the environment: the
			// backends are local.
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
	}
	b.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			// The backend is chosen per attempt in RoundTrip; keep the
			// client's Host so the app sees the address the browser used.
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "backend.invalid"
			pr.Out.Host = pr.In.Host
		},
		Transport:    roundTripperFunc(b.roundTrip),
		ErrorHandler: b.proxyError,
	}
	return b
}

// ParseBackends parses a comma-separated list of backend addresses. Each is
// host:port or an http:// or https:// URL without a path.
func ParseBackends(list string) ([]*url.URL, error) {
	var out []*url.URL
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		raw := s
		if !strings.Contains(raw, "://") {
			raw = "http://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("backend %q: %w", s, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("backend %q: scheme must be http or https", s)
		}
		if u.Host == "" || u.Port() == "" {
			return nil, fmt.Errorf("backend %q: want host:port", s)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("backend %q: want host:port without path, query or user", s)
		}
		out = append(out, &url.URL{Scheme: u.Scheme, Host: u.Host})
	}
	if len(out) == 0 {
		return nil, errors.New("no backends: give -backends host:port,host:port,...")
	}
	return out, nil
}

// ServeHTTP proxies r to a backend.
func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.proxy.ServeHTTP(w, r)
}

// CloseIdleConnections closes idle connections to the backends.
func (b *Balancer) CloseIdleConnections() {
	b.transport.CloseIdleConnections()
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// roundTrip sends req to backends in round-robin order until one answers or
// the retry rules of the package documentation say stop.
func (b *Balancer) roundTrip(req *http.Request) (*http.Response, error) {
	body, replayable, err := bufferBody(req)
	if err != nil {
		return nil, err
	}
	n := uint64(len(b.backends))
	start := b.next.Add(1) - 1
	var errs []error
	for i := range n {
		backend := b.backends[(start+i)%n]
		var gotConn atomic.Bool
		ctx := httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) },
		})
		out := req.Clone(ctx)
		out.URL.Scheme = backend.Scheme
		out.URL.Host = backend.Host
		if replayable {
			out.Body = body()
			out.GetBody = func() (io.ReadCloser, error) { return body(), nil }
		}

		resp, err := b.transport.RoundTrip(out)
		if err == nil {
			resp.Header.Set("X-Backend", backend.Host)
			return resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", backend.Host, err))
		if req.Context().Err() != nil {
			break // the client went away; nobody wants an answer
		}
		// A failed dial means no byte of this request reached the backend,
		// even if the transport had first tried a stale pooled connection.
		sent := gotConn.Load() && !isDialError(err)
		retry := replayable && (!sent || idempotent(req.Method))
		b.log().Warn("backend failed", "backend", backend.Host, "method", req.Method,
			"path", req.URL.Path, "sent", sent, "retry", retry && i+1 < n, "err", err)
		if !retry {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// bufferBody reads req's body, up to maxReplayBody, so that it can be sent
// more than once. body returns a fresh reader over it on each call. When the
// body is larger, req.Body is left streaming and replayable is false.
func bufferBody(req *http.Request) (body func() io.ReadCloser, replayable bool, err error) {
	if req.Body == nil || req.Body == http.NoBody {
		return func() io.ReadCloser { return http.NoBody }, true, nil
	}
	buf, err := io.ReadAll(io.LimitReader(req.Body, maxReplayBody+1))
	if err != nil {
		req.Body.Close()
		return nil, false, fmt.Errorf("read request body: %w", err)
	}
	if len(buf) > maxReplayBody {
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
		return nil, false, nil
	}
	req.Body.Close()
	return func() io.ReadCloser { return io.NopCloser(bytes.NewReader(buf)) }, true, nil
}

// idempotent reports whether a request with this method may be sent twice
// (RFC 9110, section 9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace,
		http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (b *Balancer) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() == nil {
		b.log().Error("no backend answered", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	http.Error(w, "lb: no backend answered", http.StatusBadGateway)
}

func (b *Balancer) log() *slog.Logger {
	if b.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Logger
}

func hosts(us []*url.URL) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Host
	}
	return out
}
