package httpmw_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

func Example() {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	m, err := httpmw.New(store, httpmw.Options{
		Secrets: [][]byte{[]byte("use 32+ random bytes from a vault")},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := httpmw.FromContext(r.Context())
		s.Regenerate() // new ID, data kept: session fixation defence
		s.Set("user", r.FormValue("user"))
		s.SetOwner("user:" + r.FormValue("user"))
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", httpmw.FromContext(r.Context()).GetString("user"))
	})
	srv := httptest.NewServer(m.Handler(mux))
	defer srv.Close()

	resp, _ := http.Post(srv.URL+"/login?user=alice", "", nil)
	resp.Body.Close()
	cookie := resp.Cookies()[0]
	fmt.Println(resp.StatusCode, cookie.Name, cookie.HttpOnly, cookie.SameSite == http.SameSiteLaxMode)

	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	req.AddCookie(cookie)
	resp, _ = http.DefaultClient.Do(req)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body), len(resp.Cookies()))
	// Output:
	// 200 sid true true
	// hello alice 0
}

// Incr commits at once and the store does the addition, so concurrent
// requests of one browser never lose a count.
func ExampleFromContext() {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	m, _ := httpmw.New(store, httpmw.Options{Secrets: [][]byte{[]byte(strings.Repeat("k", 32))}})
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := httpmw.FromContext(r.Context()).Incr(r.Context(), "views", 1)
		if err != nil {
			httpmw.WriteError(w, r, err) // 503 while the store is unavailable
			return
		}
		fmt.Fprint(w, n)
	}))
	var cookie *http.Cookie
	for range 3 {
		req := httptest.NewRequest("POST", "/views", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if c := rec.Result().Cookies(); len(c) > 0 {
			cookie = c[0]
		}
		fmt.Println(rec.Body.String())
	}
	// Output:
	// 1
	// 2
	// 3
}

// A single-process app needs no secret: over a MemoryStore the Manager
// signs with a random secret of its own. Over a cluster's store it uses the
// cluster's replicated keyring instead.
func ExampleNew_noSecret() {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()
	m, err := httpmw.New(store, httpmw.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpmw.FromContext(r.Context()).Set("cart", 3)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/cart", nil))
	fmt.Println(rec.Code, len(rec.Result().Cookies()))
	// Output:
	// 200 1
}

// Limits are declared once, on the store (here MemoryOptions.Limits; for a
// cluster, cluster.Config.Limits): the middleware checks the same ones in
// Set, so a handler hears at once that a value does not fit. An option may
// make them stricter, never looser.
func ExampleNew_limits() {
	store := session.NewMemoryStore(session.MemoryOptions{Limits: session.Limits{MaxValueBytes: 16}})
	defer store.Close()
	if _, err := httpmw.New(store, httpmw.Options{Limits: session.Limits{MaxValueBytes: 1024}}); err != nil {
		fmt.Println(err)
	}
	m, err := httpmw.New(store, httpmw.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := httpmw.FromContext(r.Context()).Set("note", r.FormValue("note")); err != nil {
			httpmw.WriteError(w, r, err)
		}
	}))
	for _, note := range []string{"short", "much too long for this store"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/?note="+url.QueryEscape(note), nil))
		fmt.Println(rec.Code)
	}
	// Output:
	// httpmw: Options.Limits.MaxValueBytes is 1024 but the store enforces 16: the store would refuse what the middleware allows
	// 200
	// 413
}

// StatusCode maps session errors to the HTTP status that answers them.
func ExampleStatusCode() {
	fmt.Println(httpmw.StatusCode(session.ErrTooLarge))
	fmt.Println(httpmw.StatusCode(fmt.Errorf("commit: %w", session.ErrNoLeader)))
	fmt.Println(httpmw.StatusCode(session.ErrCASFailed))
	// Output:
	// 413
	// 503
	// 409
}
