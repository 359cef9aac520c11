package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/raftsession/raftsession/internal/nodeproc"
)

func TestMain(m *testing.M) {
	code := m.Run()
	nodeproc.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// client is a cookie-keeping HTTP client whose connections are closed at
// the end of the test (goleak would see their goroutines).
type client struct {
	t    testing.TB
	http *http.Client
}

func newClient(t testing.TB) *client {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, http: &http.Client{Jar: jar, Transport: tr, Timeout: 10 * time.Second}}
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request; base is "http://host:port".
func (c *client) do(method, url, body string) response {
	c.t.Helper()
	r, err := c.try(method, url, body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func (c *client) try(method, url, body string) (response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	if err != nil {
		return response{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}, err
}

// testLogWriter sends a Main's logs to t.Log.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // a line after the test ended must not crash
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// mustRun starts a single-node Main on free ports with data under dir
// (a new temp dir when empty) and closes it at the end of the test.
func mustRun(t testing.TB, dir string, args ...string) *Main {
	t.Helper()
	return mustRunWith(t, dir, nil, args...)
}

// mustRunWith is mustRun with a hook that adjusts the Main before Run.
func mustRunWith(t testing.TB, dir string, adjust func(*Main), args ...string) *Main {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	m := NewMain()
	m.Stderr = testLogWriter{t}
	base := []string{"-id", "t1", "-data", dir, "-http", "127.0.0.1:0", "-admin", "127.0.0.1:0",
		"-raft", "127.0.0.1:0", "-gossip", "127.0.0.1:0", "-log-level", "warn"}
	if err := m.ParseFlags(append(base, args...), func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	waitReady(t, "http://"+m.AdminAddr())
	return m
}

// waitReady waits until the admin listener at base says ready.
func waitReady(t testing.TB, base string) {
	t.Helper()
	nodeproc.WaitFor(t, 30*time.Second, base+"/readyz", func() error { return nodeproc.GetOK(base + "/readyz") })
}
