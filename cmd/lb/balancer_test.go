package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend is an httptest server that answers with its name and counts the
// requests that reached its handler.
type backend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func newBackend(t *testing.T, name string, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{name: name}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Node", name)
			io.WriteString(w, name+" "+r.Method+" "+string(body))
		}
	}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) url(t *testing.T) *url.URL {
	t.Helper()
	u, err := url.Parse(b.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// deadAddr returns an address on which nothing listens, so connecting to it
// is refused.
func deadAddr(t *testing.T) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return &url.URL{Scheme: "http", Host: addr}
}

func newLB(t *testing.T, backends ...*url.URL) *httptest.Server {
	t.Helper()
	b := New(backends)
	srv := httptest.NewServer(b)
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		srv.Close()
		b.CloseIdleConnections()
	})
	return srv
}

func do(t *testing.T, method, url, body string) (status int, text string, hdr http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestRoundRobinOrder(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	c := newBackend(t, "c", nil)
	lb := newLB(t, a.url(t), b.url(t), c.url(t))

	var got []string
	for range 7 {
		status, body, hdr := do(t, http.MethodGet, lb.URL+"/", "")
		if status != http.StatusOK {
			t.Fatalf("status %d, want 200", status)
		}
		got = append(got, hdr.Get("X-Node"))
		name := strings.Fields(body)[0]
		if want := map[string]*backend{"a": a, "b": b, "c": c}[name].url(t).Host; hdr.Get("X-Backend") != want {
			t.Errorf("X-Backend = %q, want %q", hdr.Get("X-Backend"), want)
		}
	}
	if g, want := strings.Join(got, ""), "abcabca"; g != want {
		t.Errorf("order %q, want %q", g, want)
	}
}

func TestDeadBackendSkipped(t *testing.T) {
	a := newBackend(t, "a", nil)
	c := newBackend(t, "c", nil)
	lb := newLB(t, a.url(t), deadAddr(t), c.url(t))

	tests := []struct {
		method, body string
	}{
		{http.MethodGet, ""},
		{http.MethodPost, "payload"}, // refused before sending: safe to retry
		{http.MethodPut, "payload"},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			for i := range 6 {
				status, body, _ := do(t, tc.method, lb.URL+"/x", tc.body)
				if status != http.StatusOK {
					t.Fatalf("request %d: status %d (%q), want 200", i, status, body)
				}
				if !strings.HasSuffix(body, " "+tc.method+" "+tc.body) {
					t.Fatalf("request %d: body %q, want method and body echoed", i, body)
				}
			}
		})
	}
	if got := a.hits.Load() + c.hits.Load(); got != 18 {
		t.Errorf("live backends served %d requests, want 18", got)
	}
}

func TestAllBackendsDead(t *testing.T) {
	lb := newLB(t, deadAddr(t), deadAddr(t))
	status, _, _ := do(t, http.MethodGet, lb.URL+"/", "")
	if status != http.StatusBadGateway {
		t.Errorf("status %d, want 502", status)
	}
}

// dropAfterRead returns a handler that reads the request and then drops the
// connection without answering, like a backend killed while serving.
func dropAfterRead(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close()
	}
}

func TestPostNotReplayedAfterSent(t *testing.T) {
	dropper := newBackend(t, "dropper", dropAfterRead(t))
	other := newBackend(t, "other", nil)
	lb := newLB(t, dropper.url(t), other.url(t))

	// The first request goes to dropper, which has received the POST when it
	// fails: replaying it could apply it twice.
	status, _, _ := do(t, http.MethodPost, lb.URL+"/api/views", "")
	if status != http.StatusBadGateway {
		t.Errorf("status %d, want 502", status)
	}
	if got := dropper.hits.Load(); got != 1 {
		t.Errorf("dropper saw %d requests, want 1", got)
	}
	if got := other.hits.Load(); got != 0 {
		t.Errorf("POST was replayed: other backend saw %d requests, want 0", got)
	}
}

func TestIdempotentRetriedAfterSent(t *testing.T) {
	dropper := newBackend(t, "dropper", dropAfterRead(t))
	other := newBackend(t, "other", nil)
	lb := newLB(t, dropper.url(t), other.url(t))

	status, body, _ := do(t, http.MethodPut, lb.URL+"/api/session/values/k", "v")
	if status != http.StatusOK || body != "other PUT v" {
		t.Errorf("got %d %q, want 200 %q", status, body, "other PUT v")
	}
}

func TestLargeBodyStreamedNotRetried(t *testing.T) {
	a := newBackend(t, "a", nil)
	lb := newLB(t, deadAddr(t), a.url(t))

	big := strings.Repeat("x", maxReplayBody+10)
	status, _, _ := do(t, http.MethodPut, lb.URL+"/", big)
	if status != http.StatusBadGateway {
		t.Errorf("first request (dead backend, unbuffered body): status %d, want 502", status)
	}
	status, body, _ := do(t, http.MethodPut, lb.URL+"/", big)
	if status != http.StatusOK || len(body) != len("a PUT ")+len(big) {
		t.Errorf("second request: status %d, body length %d, want 200 and the body echoed", status, len(body))
	}
}

func TestConcurrentRequestsSpreadEvenly(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	lb := newLB(t, a.url(t), b.url(t))

	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			resp, err := http.Post(lb.URL+"/", "text/plain", bytes.NewReader([]byte("p")))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	if a.hits.Load() != 20 || b.hits.Load() != 20 {
		t.Errorf("hits a=%d b=%d, want 20 each", a.hits.Load(), b.hits.Load())
	}
}

func TestParseBackends(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "127.0.0.1:8091,127.0.0.1:8092", want: "http://127.0.0.1:8091 http://127.0.0.1:8092"},
		{in: " http://a:1 , https://b:2/ ", want: "http://a:1 https://b:2"},
		{in: "", wantErr: true},
		{in: "localhost", wantErr: true},
		{in: "ftp://a:1", wantErr: true},
		{in: "http://a:1/path", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			us, err := ParseBackends(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("got %v, want an error", us)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, u := range us {
				got = append(got, u.String())
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("got %q, want %q", g, tc.want)
			}
		})
	}
}

func TestRunFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no backends", nil, "no backends"},
		{"bad backend", []string{"-backends", "ftp://x:1"}, "scheme"},
		{"extra args", []string{"-backends", "a:1", "extra"}, "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := run(context.Background(), []string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: got %v, want flag.ErrHelp", err)
	}
}

func TestRunServesAndStops(t *testing.T) {
	a := newBackend(t, "a", nil)
	addr := deadAddr(t).Host // a free port
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, []string{"-listen", addr, "-backends", a.url(t).Host}, io.Discard) }()

	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			if resp.Header.Get("X-Node") != "a" {
				t.Errorf("X-Node = %q, want a", resp.Header.Get("X-Node"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lb never answered: %v", err)
		}
		select {
		case err := <-errc:
			t.Fatalf("run returned early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("run after cancel: %v", err)
	}
	if err := run(context.Background(), []string{"-listen", a.url(t).Host, "-backends", "x:1"}, io.Discard); err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Errorf("busy port: got %v, want a listen error", err)
	}
}
