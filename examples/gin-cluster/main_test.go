package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"testing"

	"github.com/gin-gonic/gin"
)

func TestRun(t *testing.T) {
	gin.SetMode(gin.TestMode)
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
	call := func(method, url string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %v", method, url, resp.StatusCode, err)
		}
		return out
	}
	call("POST", inst[0]+"/login?user=alice")
	call("POST", inst[1]+"/views")
	call("POST", inst[2]+"/views")
	got := call("GET", inst[1]+"/")
	if got["user"] != "alice" || got["views"] != float64(2) {
		t.Fatalf("instance 2 reads %v, want alice with 2 views", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
