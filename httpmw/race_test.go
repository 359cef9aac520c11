package httpmw

import (
	"errors"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

// gate makes requests meet: each handler that calls arrive blocks until
// the test opens the gate, so the test knows every request has loaded its
// session before any of them commits.
type gate struct {
	arrived chan struct{}
	open    chan struct{}
}

func newGate() *gate { return &gate{arrived: make(chan struct{}, 128), open: make(chan struct{})} }

func (g *gate) arrive() {
	g.arrived <- struct{}{}
	<-g.open
}

// waitArrivals waits for n arrivals, failing the test after a deadline.
func (g *gate) waitArrivals(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for range n {
		select {
		case <-g.arrived:
		case <-deadline:
			t.Fatalf("requests did not arrive at the gate in time")
		}
	}
}

// Two requests that loaded the same session and change different keys
// both survive: the commit is a delta, not a whole-session save.
func TestConcurrentSetsOfDifferentKeysBothSurvive(t *testing.T) {
	g := newGate()
	e := mustEnv(t, Options{}, false, func(mux *http.ServeMux) {
		mux.HandleFunc("POST /slow-set", func(w http.ResponseWriter, r *http.Request) {
			s := FromContext(r.Context())
			_ = s.GetString("user") // read first, as a real handler would
			g.arrive()
			if err := s.Set(r.URL.Query().Get("k"), "v"); err != nil {
				t.Error(err)
			}
		})
	})
	c := e.login()
	var wg sync.WaitGroup
	for _, k := range []string{"a", "b"} {
		wg.Go(func() {
			if r := e.do("POST", "/slow-set?k="+k, c); r.status != 200 {
				t.Errorf("set %s: status %d", k, r.status)
			}
		})
	}
	g.waitArrivals(t, 2)
	close(g.open)
	wg.Wait()
	if got := e.do("GET", "/keys", c).body; got != "a,b,user" {
		t.Errorf("keys %q, want a,b,user", got)
	}
}

// 64 concurrent increments of one counter give exactly 64, each request
// seeing a different value.
func TestConcurrentIncrementsLoseNothing(t *testing.T) {
	const n = 64
	g := newGate()
	e := mustEnv(t, Options{}, false, func(mux *http.ServeMux) {
		mux.HandleFunc("POST /slow-incr", func(w http.ResponseWriter, r *http.Request) {
			s := FromContext(r.Context())
			g.arrive()
			v, err := s.Incr(r.Context(), "n", 1)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			w.Write([]byte(strconv.FormatInt(v, 10)))
		})
	})
	c := e.login()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen []int
	)
	for range n {
		wg.Go(func() {
			r := e.do("POST", "/slow-incr", c)
			v, err := strconv.Atoi(r.body)
			if r.status != 200 || err != nil {
				t.Errorf("status %d body %q", r.status, r.body)
				return
			}
			mu.Lock()
			seen = append(seen, v)
			mu.Unlock()
		})
	}
	g.waitArrivals(t, n)
	close(g.open)
	wg.Wait()
	sort.Ints(seen)
	for i, v := range seen {
		if v != i+1 {
			t.Fatalf("increments returned %v, want 1..%d", seen, n)
		}
	}
	rec, err := e.store.Load(t.Context(), idOf(c), session.LoadOptions{})
	if err != nil || string(rec.Values.Get("n")) != strconv.Itoa(n) {
		t.Fatalf("stored counter %q (err %v), want %d", rec.Values.Get("n"), err, n)
	}
}

// A request that loaded the session before a concurrent logout cannot
// bring it back, and sends no cookie; its response otherwise goes out.
func TestLogoutRaceDoesNotResurrect(t *testing.T) {
	for _, op := range []string{"set", "touch", "regenerate", "incr"} {
		t.Run(op, func(t *testing.T) {
			g := newGate()
			e := mustEnv(t, Options{}, false, func(mux *http.ServeMux) {
				mux.HandleFunc("POST /slow", func(w http.ResponseWriter, r *http.Request) {
					s := FromContext(r.Context())
					if s.GetString("user") != "alice" {
						t.Error("slow request did not load the session")
					}
					g.arrive()
					switch op {
					case "set":
						s.Set("late", "write")
					case "touch":
						s.Touch()
					case "regenerate":
						s.Regenerate()
					case "incr":
						if _, err := s.Incr(r.Context(), "n", 1); !errors.Is(err, session.ErrNotFound) {
							t.Errorf("Incr after logout: %v, want ErrNotFound", err)
						}
					}
					w.Write([]byte("done"))
				})
			})
			c := e.login()
			slow := make(chan reply, 1)
			go func() { slow <- e.do("POST", "/slow", c) }()
			g.waitArrivals(t, 1)

			out := e.do("POST", "/destroy", c)
			if kindOf(t, out) != expiredCookie {
				t.Fatalf("logout: %v, want expired cookie", kindOf(t, out))
			}
			close(g.open)
			r := <-slow

			if r.status != 200 || r.body != "done" {
				t.Errorf("slow request: status %d body %q, want 200 done", r.status, r.body)
			}
			if len(r.cookies) != 0 {
				t.Errorf("slow request set cookies %v, want none", r.cookies)
			}
			if n, _ := e.store.Count(t.Context()); n != 0 {
				t.Errorf("%d sessions in the store after logout, want 0", n)
			}
			if g := e.do("GET", "/get?k=user", c); g.header.Get("X-New") != "1" || g.body != "" {
				t.Errorf("old cookie still loads the session (body %q)", g.body)
			}
		})
	}
}

// A login in another tab (Regenerate) while a slow request runs: the slow
// request's write is dropped and it sends no cookie, so the fresh cookie
// of the login stays valid in the browser.
func TestConcurrentLoginKeepsFreshCookie(t *testing.T) {
	g := newGate()
	e := mustEnv(t, Options{}, false, func(mux *http.ServeMux) {
		mux.HandleFunc("POST /slow", func(w http.ResponseWriter, r *http.Request) {
			s := FromContext(r.Context())
			g.arrive()
			s.Set("late", "write")
		})
	})
	anon := e.do("POST", "/set?k=cart&v=3", "").cookie(t).Value
	slow := make(chan reply, 1)
	go func() { slow <- e.do("POST", "/slow", anon) }()
	g.waitArrivals(t, 1)
	fresh := e.do("POST", "/login?user=alice", anon).cookie(t).Value
	close(g.open)
	if r := <-slow; len(r.cookies) != 0 {
		t.Errorf("slow request set cookies %v, want none", r.cookies)
	}
	if got := e.do("GET", "/keys", fresh).body; got != "cart,user" {
		t.Errorf("keys under the fresh cookie %q, want cart,user", got)
	}
}
