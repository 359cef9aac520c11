package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	urls := make(chan []string, 1)
	done := make(chan error, 1)
	addrs := []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"}
	go func() { done <- run(ctx, addrs, t.TempDir(), func(u []string) { urls <- u }) }()
	var inst []string
	select {
	case inst = <-urls:
	case err := <-done:
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	call := func(method, url string) string {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
		}
		_, after, _ := strings.Cut(strings.TrimSpace(string(b)), ": ")
		return after
	}
	call("POST", inst[0]+"/login?user=alice")
	for _, u := range inst {
		if got := call("GET", u+"/"); got != `hello "alice"` {
			t.Fatalf("%s reads %q, want alice", u, got)
		}
	}
	call("POST", inst[1]+"/logout")
	if got := call("GET", inst[2]+"/"); got != `hello ""` {
		t.Fatalf("after logout: %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
