package ginmw

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/raftsession/raftsession/cluster/clustertest"
	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

func init() { gin.SetMode(gin.TestMode) }

// backend is one store the tests run over (see clustertest.Backends).
type backend = clustertest.Backend

func backends(t *testing.T) []backend { return clustertest.Backends(t) }

// engine is a gin app over st; opt.Secrets is testSecret over a
// MemoryStore (two instances must share it) and none over a cluster.
func engine(t *testing.T, st session.Store) *httptest.Server {
	var opt httpmw.Options
	if _, ok := st.(*session.MemoryStore); ok {
		opt.Secrets = [][]byte{[]byte("0123456789abcdef0123456789abcdef")}
	}
	m, err := httpmw.New(st, opt)
	if err != nil {
		t.Fatal(err)
	}
	r := gin.New()
	r.Use(Sessions(m))
	r.POST("/login", func(c *gin.Context) {
		s := Session(c)
		if err := s.Regenerate(); err != nil {
			c.String(httpmw.StatusCode(err), err.Error())
			return
		}
		s.Set("user", c.Query("user"))
		s.SetOwner("user:" + c.Query("user"))
		c.JSON(http.StatusOK, gin.H{"user": c.Query("user")}) // gin writes: the commit comes first
	})
	r.POST("/incr", func(c *gin.Context) {
		n, err := Session(c).Incr(c.Request.Context(), "n", 1)
		if err != nil {
			c.String(httpmw.StatusCode(err), err.Error())
			return
		}
		c.String(http.StatusOK, strconv.FormatInt(n, 10))
	})
	r.POST("/cas", func(c *gin.Context) {
		var old any // absent "old": only if the key is absent
		if o, has := c.GetQuery("old"); has {
			old = o
		}
		ok, err := Session(c).CompareAndSwap(c.Request.Context(), "state", old, c.Query("new"))
		if err != nil {
			c.String(httpmw.StatusCode(err), err.Error())
			return
		}
		c.String(http.StatusOK, strconv.FormatBool(ok))
	})
	r.POST("/status-only", func(c *gin.Context) {
		Session(c).Set("seen", true)
		c.Status(http.StatusNoContent)
	})
	r.POST("/logout", func(c *gin.Context) {
		if err := Session(c).Destroy(c.Request.Context()); err != nil {
			c.String(httpmw.StatusCode(err), err.Error())
		}
	})
	r.GET("/", func(c *gin.Context) {
		s := Session(c)
		c.String(http.StatusOK, s.GetString("user")+"|"+strconv.Itoa(s.GetInt("n")))
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

type reply struct {
	status int
	body   string
	cookie *http.Cookie
}

func do(t *testing.T, srv *httptest.Server, method, path string, cookie *http.Cookie) reply {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		// Errorf, not Fatal: tests call this from their own goroutines too.
		t.Errorf("%s %s: %v", method, path, err)
		return reply{}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, body: string(body)}
	for _, c := range resp.Cookies() {
		if c.Name == "sid" {
			r.cookie = c
		}
	}
	return r
}

func TestGinNativeSession(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			one, two := engine(t, b.Store), engine(t, b.Peer)
			login := do(t, one, "POST", "/login?user=alice", nil)
			if login.status != 200 || login.cookie == nil {
				t.Fatalf("login: %d, cookie %v; want 200 and a cookie set before gin wrote", login.status, login.cookie)
			}
			cookie := login.cookie
			if r := do(t, two, "GET", "/", cookie); r.body != "alice|0" {
				t.Fatalf("other instance reads %q, want alice|0", r.body)
			}

			t.Run("concurrent increments", func(t *testing.T) {
				// Each response carries the index of its write; the
				// newest cookie must read all 20 on either instance.
				var mu sync.Mutex
				newest, newestIndex := cookie, uint64(0)
				var wg sync.WaitGroup
				for i := range 20 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						srv := one
						if i%2 == 1 {
							srv = two
						}
						r := do(t, srv, "POST", "/incr", cookie)
						if r.status != 200 || r.cookie == nil {
							t.Errorf("incr: %d %s, cookie %v", r.status, r.body, r.cookie)
							return
						}
						mu.Lock()
						defer mu.Unlock()
						if ix := indexOf(r.cookie); ix > newestIndex {
							newest, newestIndex = r.cookie, ix
						}
					}()
				}
				wg.Wait()
				for _, srv := range []*httptest.Server{one, two} {
					if r := do(t, srv, "GET", "/", newest); r.body != "alice|20" {
						t.Fatalf("after 20 increments on two instances: %q, want alice|20", r.body)
					}
				}
				cookie = newest
			})
			t.Run("compare and swap", func(t *testing.T) {
				for _, step := range []struct{ path, want string }{
					{"/cas?new=a", "true"},
					{"/cas?new=x", "false"}, // no longer absent
					{"/cas?old=a&new=b", "true"},
					{"/cas?old=a&new=c", "false"},
				} {
					if r := do(t, one, "POST", step.path, cookie); r.body != step.want {
						t.Fatalf("%s: %q, want %s", step.path, r.body, step.want)
					}
				}
			})
			t.Run("status only response", func(t *testing.T) {
				if r := do(t, one, "POST", "/status-only", cookie); r.status != 204 || r.cookie == nil {
					t.Fatalf("status-only: %d, cookie %v; want 204 and a cookie", r.status, r.cookie)
				}
			})
			t.Run("logout not undone", func(t *testing.T) {
				if r := do(t, two, "POST", "/logout", cookie); r.status != 200 || r.cookie == nil || r.cookie.MaxAge >= 0 {
					t.Fatalf("logout: %d, cookie %v", r.status, r.cookie)
				}
				if r := do(t, one, "POST", "/incr", cookie); r.body != "1" {
					t.Fatalf("old cookie after logout: %q, want a new session counting 1", r.body)
				}
				if r := do(t, one, "GET", "/", cookie); r.body != "|0" {
					t.Fatalf("old cookie reads %q after logout", r.body)
				}
			})
		})
	}
}

// indexOf returns the write index a session cookie carries
// ("<id>.<index>.<mac>").
func indexOf(c *http.Cookie) uint64 {
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return 0
	}
	n, _ := strconv.ParseUint(parts[1], 10, 64)
	return n
}

// downStore fails every operation as a store without a leader does.
type downStore struct{ *session.MemoryStore }

func (downStore) Commit(context.Context, *session.Change) (session.Result, error) {
	return session.Result{}, session.ErrNoLeader
}

// TestCommitFailureReplacesResponse: the commit happens before gin writes,
// so a failed commit gives the client the error handler's 503, not the
// handler's response.
func TestCommitFailureReplacesResponse(t *testing.T) {
	mem := session.NewMemoryStore(session.MemoryOptions{})
	defer mem.Close()
	srv := engine(t, downStore{mem})
	r := do(t, srv, "POST", "/login?user=alice", nil)
	if r.status != http.StatusServiceUnavailable || r.cookie != nil || r.body == `{"user":"alice"}` {
		t.Fatalf("login over a store without leader: %d %q cookie %v; want 503, no cookie", r.status, r.body, r.cookie)
	}
}
