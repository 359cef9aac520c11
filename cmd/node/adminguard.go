package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// adminGuard stands in front of the admin listener's handlers.
//
// A browser on the operator's machine can be made to send requests to the
// admin listener by any web page. Three defences:
//   - DNS rebinding: a page on attacker.example whose name is re-pointed
//     at the node reads its answers as same-origin. Such requests carry
//     Host: attacker.example, so requests must name the listener: an IP
//     address, localhost, this host's name, or -admin-allowed-hosts (or
//     carry the admin token, which no such page has).
//   - Cross-site requests: a page elsewhere can POST a "simple" request
//     (a form, or fetch with a text body) without any CORS preflight. The
//     browser marks it with Origin and Sec-Fetch-Site; POSTs whose Origin
//     is not this listener, or whose Sec-Fetch-Site is not same-origin or
//     none, are refused, and so are the content types of simple requests,
//     which no admin endpoint takes.
//   - Strangers on the network: with a token, every POST must carry it
//     (and an address beyond loopback requires one; see Main.Run).
//
// The load-balancer probes /healthz and /readyz answer any Host: probes
// often name the node however the platform does, and they reveal nothing.
type adminGuard struct {
	next  http.Handler
	token [sha256.Size]byte // SHA-256 of the token; compared in constant time
	has   bool              // a token is set
	hosts map[string]bool   // allowed Host names besides IPs and localhost, lower case
}

func newAdminGuard(next http.Handler, token Secret, listenAddr string, extra []string) *adminGuard {
	g := &adminGuard{next: next, hosts: map[string]bool{"localhost": true}}
	if token != nil {
		g.token, g.has = sha256.Sum256(token), true
	}
	if h, _, err := net.SplitHostPort(listenAddr); err == nil && h != "" {
		g.hosts[strings.ToLower(h)] = true
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		g.hosts[strings.ToLower(h)] = true
	}
	for _, h := range extra {
		g.hosts[strings.ToLower(h)] = true
	}
	return g
}

func (g *adminGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	probe := r.URL.Path == "/healthz" || r.URL.Path == "/readyz"
	authed := g.has && g.validToken(r)
	if !probe && !authed && !g.knownHost(r.Host) {
		writeText(w, http.StatusForbidden, fmt.Sprintf("misdirected request: Host %q does not name this admin listener "+
			"(use its IP address or localhost, or add the name to -admin-allowed-hosts)", r.Host))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if why := crossSite(r); why != "" {
			writeText(w, http.StatusForbidden, "refused: "+why)
			return
		}
		if g.has && !authed {
			w.Header().Set("WWW-Authenticate", `Bearer realm="raftsession admin"`)
			writeText(w, http.StatusUnauthorized, "admin POSTs need the header: Authorization: Bearer <-admin-token>")
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

func (g *adminGuard) validToken(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	// Hashing first makes the comparison independent of the length too.
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], g.token[:]) == 1
}

// knownHost reports whether a Host header names this listener. IP
// addresses always do: a page can only make a browser send one by being
// loaded from that address, which rebinding cannot fake.
func (g *adminGuard) knownHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || g.hosts[host] || strings.HasSuffix(host, ".localhost") {
		return true
	}
	return false
}

// simpleTypes are the content types a cross-site page may POST without a
// CORS preflight.
var simpleTypes = map[string]bool{
	"application/x-www-form-urlencoded": true,
	"multipart/form-data":               true,
	"text/plain":                        true,
}

// crossSite says why a state-changing request looks like one a web page
// made a browser send, or "" when it does not.
func crossSite(r *http.Request) string {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return "cross-site request (Sec-Fetch-Site: " + s + ")"
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if o == "null" || err != nil || !strings.EqualFold(u.Host, r.Host) {
			return fmt.Sprintf("cross-site request (Origin %q is not %q)", o, r.Host)
		}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		if mt = strings.ToLower(strings.TrimSpace(mt)); simpleTypes[mt] {
			return "admin POSTs take no " + mt + " body (send none, or application/json)"
		}
	}
	return ""
}
