package scsstore

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/alexedwards/scs/v2"

	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

// app is one instance of an scs application over a Store: a test server
// whose slow route waits, after loading the session, until released.
type app struct {
	sm      *scs.SessionManager
	srv     *httptest.Server
	loaded  chan struct{}
	release chan struct{}
}

func newApp(t *testing.T, st session.Store) *app {
	a := &app{sm: scs.New(), loaded: make(chan struct{}, 1), release: make(chan struct{})}
	a.sm.Store = New(st)
	a.sm.ErrorFunc = httpmw.WriteError
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if err := a.sm.RenewToken(r.Context()); err != nil {
			httpmw.WriteError(w, r, err)
			return
		}
		a.sm.Put(r.Context(), "user", r.URL.Query().Get("user"))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := a.sm.Destroy(r.Context()); err != nil {
			httpmw.WriteError(w, r, err)
		}
	})
	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
		a.sm.Put(r.Context(), "cart", r.URL.Query().Get("item"))
	})
	mux.HandleFunc("POST /slow-cart", func(w http.ResponseWriter, r *http.Request) {
		_ = a.sm.GetString(r.Context(), "user")
		a.loaded <- struct{}{}
		<-a.release
		a.sm.Put(r.Context(), "cart", "late")
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, a.sm.GetString(r.Context(), "user")+"|"+a.sm.GetString(r.Context(), "cart"))
	})
	a.srv = httptest.NewServer(a.sm.LoadAndSave(mux))
	t.Cleanup(a.srv.Close)
	return a
}

// do sends a request with the token (none when empty) and returns the
// status, the body and the token the response set ("" when none).
func (a *app) do(t *testing.T, method, path, token string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(method, a.srv.URL+path, nil)
	if token != "" {
		req.AddCookie(&http.Cookie{Name: a.sm.Cookie.Name, Value: token})
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		// Errorf, not Fatal: tests call this from their own goroutines too.
		t.Errorf("%s %s: %v", method, path, err)
		return 0, "", ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	set := ""
	for _, c := range resp.Cookies() {
		if c.Name == a.sm.Cookie.Name {
			set = c.Value
		}
	}
	return resp.StatusCode, string(body), set
}

// TestSCSApp runs an scs application on two instances over the backends:
// sessions move between instances, and neither a logout nor a login
// through one instance is undone by a request the other was still running.
func TestSCSApp(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			one, two := newApp(t, b.Store), newApp(t, b.Peer)
			_, _, token := one.do(t, "POST", "/login?user=alice", "")
			if token == "" {
				t.Fatal("login set no cookie")
			}
			one.do(t, "POST", "/cart?item=book", token)
			if _, body, _ := two.do(t, "GET", "/", token); body != "alice|book" {
				t.Fatalf("other instance reads %q, want alice|book", body)
			}

			t.Run("logout not undone by a late request", func(t *testing.T) {
				testLateRequest(t, one, two, token, "/logout", "|")
			})
			_, _, token = one.do(t, "POST", "/login?user=carol", "")
			t.Run("login not undone by a late request", func(t *testing.T) {
				testLateRequest(t, one, two, token, "/login?user=bob", "bob|")
			})
		})
	}
}

// testLateRequest starts a slow request on instance one with token, runs
// path on instance two while it is in flight, then lets the slow request
// commit: it must fail with 409 and set no cookie, and the session must be
// as path left it (want, read with the cookie path set, or with the old
// token when it set none).
func testLateRequest(t *testing.T, one, two *app, token, path, want string) {
	var wg sync.WaitGroup
	var status int
	var set string
	wg.Add(1)
	done := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(done)
		status, _, set = one.do(t, "POST", "/slow-cart", token)
	}()
	select {
	case <-one.loaded:
	case <-done:
		t.Fatalf("the slow request ended before its handler loaded the session: status %d", status)
	}
	_, _, fresh := two.do(t, "POST", path, token)
	close(one.release)
	wg.Wait()
	one.release = make(chan struct{})
	if status != http.StatusConflict || set != "" {
		t.Fatalf("late request: status %d, cookie %q; want 409 and no cookie", status, set)
	}
	if _, body, _ := two.do(t, "GET", "/", token); body != "|" {
		t.Fatalf("old token reads %q, want an empty new session", body)
	}
	if fresh != "" && fresh != token {
		if _, body, _ := one.do(t, "GET", "/", fresh); body != want {
			t.Fatalf("new token reads %q, want %q", body, want)
		}
	}
}
