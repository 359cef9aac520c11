package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAdminGuard checks each rule of the admin listener's guard on its
// own; the process tests in security_test.go check the attacks end to end.
func TestAdminGuard(t *testing.T) {
	const token = "the-admin-token-0123"
	reached := false
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached = true })
	open := newAdminGuard(next, nil, "127.0.0.1:8081", []string{"ops.example"})
	guarded := newAdminGuard(next, Secret(token), "0.0.0.0:8081", nil)
	type hdr = map[string]string
	for _, tc := range []struct {
		name   string
		g      *adminGuard
		method string
		path   string
		host   string
		h      hdr
		want   int
	}{
		{"GET by IP", open, "GET", "/cluster/status", "127.0.0.1:8081", nil, 200},
		{"GET by IPv6", open, "GET", "/cluster/status", "[::1]:8081", nil, 200},
		{"GET by localhost", open, "GET", "/metrics", "localhost:8081", nil, 200},
		{"GET by sub.localhost", open, "GET", "/metrics", "app.localhost:8081", nil, 200},
		{"GET by allowed name", open, "GET", "/metrics", "OPS.example:8081", nil, 200},
		{"GET rebound name", open, "GET", "/cluster/status", "rebind.attacker.example:8081", nil, 403},
		{"GET no Host", open, "GET", "/cluster/status", "", nil, 403},
		{"probe any Host", open, "GET", "/healthz", "rebind.attacker.example:8081", nil, 200},
		{"readyz any Host", open, "GET", "/readyz", "lb-name.internal", nil, 200},
		{"POST plain", open, "POST", "/cluster/rotate-key", "127.0.0.1:8081", nil, 200},
		{"POST json", open, "POST", "/cluster/rotate-key", "127.0.0.1:8081", hdr{"Content-Type": "application/json"}, 200},
		{"POST same origin", open, "POST", "/cluster/rotate-key", "127.0.0.1:8081",
			hdr{"Origin": "http://127.0.0.1:8081", "Sec-Fetch-Site": "same-origin"}, 200},
		{"POST typed in", open, "POST", "/cluster/rotate-key", "127.0.0.1:8081", hdr{"Sec-Fetch-Site": "none"}, 200},
		{"POST other origin", open, "POST", "/cluster/rotate-key", "127.0.0.1:8081", hdr{"Origin": "https://evil.example"}, 403},
		{"POST other port", open, "POST", "/cluster/rotate-key", "127.0.0.1:8081", hdr{"Origin": "http://127.0.0.1:9999"}, 403},
		{"POST null origin", open, "POST", "/cluster/rotate-key", "127.0.0.1:8081", hdr{"Origin": "null"}, 403},
		{"POST cross-site fetch", open, "POST", "/cluster/leave", "127.0.0.1:8081", hdr{"Sec-Fetch-Site": "cross-site"}, 403},
		{"POST same-site fetch", open, "POST", "/cluster/leave", "127.0.0.1:8081", hdr{"Sec-Fetch-Site": "same-site"}, 403},
		{"POST form", open, "POST", "/cluster/leave", "127.0.0.1:8081", hdr{"Content-Type": "application/x-www-form-urlencoded"}, 403},
		{"POST multipart", open, "POST", "/cluster/leave", "127.0.0.1:8081", hdr{"Content-Type": "multipart/form-data; boundary=x"}, 403},
		{"POST text", open, "POST", "/cluster/leave", "127.0.0.1:8081", hdr{"Content-Type": " Text/Plain ;charset=utf-8"}, 403},
		{"POST rebound name", open, "POST", "/cluster/leave", "rebind.attacker.example:8081",
			hdr{"Origin": "http://rebind.attacker.example:8081"}, 403},
		{"token: POST without", guarded, "POST", "/cluster/rotate-key", "10.0.0.1:8081", nil, 401},
		{"token: POST wrong", guarded, "POST", "/cluster/rotate-key", "10.0.0.1:8081", hdr{"Authorization": "Bearer " + token + "x"}, 401},
		{"token: POST basic", guarded, "POST", "/cluster/rotate-key", "10.0.0.1:8081", hdr{"Authorization": "Basic " + token}, 401},
		{"token: POST right", guarded, "POST", "/cluster/rotate-key", "10.0.0.1:8081", hdr{"Authorization": "Bearer " + token}, 200},
		{"token: cross-site still refused", guarded, "POST", "/cluster/rotate-key", "10.0.0.1:8081",
			hdr{"Authorization": "Bearer " + token, "Content-Type": "text/plain"}, 403},
		{"token: GET without", guarded, "GET", "/cluster/status", "10.0.0.1:8081", nil, 200},
		{"token: GET any Host with token", guarded, "GET", "/metrics", "prometheus-target.internal:8081",
			hdr{"Authorization": "bearer " + token}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reached = false
			r := httptest.NewRequest(tc.method, "http://x"+tc.path, strings.NewReader(""))
			r.Host = tc.host
			for k, v := range tc.h {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			tc.g.ServeHTTP(w, r)
			if w.Code != tc.want || reached != (tc.want == 200) {
				t.Fatalf("got %d (%q), handler reached %v; want %d", w.Code, strings.TrimSpace(w.Body.String()), reached, tc.want)
			}
			if w.Code == 401 && !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge")
			}
		})
	}
}
