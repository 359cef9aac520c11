package echomw

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	gsessions "github.com/gorilla/sessions"
	contrib "github.com/labstack/echo-contrib/session"
	"github.com/labstack/echo/v4"

	"github.com/raftsession/raftsession/adapter/gorillastore"
	"github.com/raftsession/raftsession/cluster/clustertest"
	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

// backend is one store the tests run over (see clustertest.Backends).
type backend = clustertest.Backend

func backends(t *testing.T) []backend { return clustertest.Backends(t) }

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef")
	errPayment = errors.New("payment declined")
)

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
		r.cookie = c
	}
	return r
}

// nativeApp is echo with httpmw's session.
func nativeApp(t *testing.T, st session.Store) *httptest.Server {
	opt := httpmw.Options{}
	if _, ok := st.(*session.MemoryStore); ok {
		opt.Secrets = [][]byte{testSecret} // two instances share a MemoryStore
	}
	m, err := httpmw.New(st, opt)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.Use(Sessions(m))
	e.POST("/cart", func(c echo.Context) error {
		if err := Session(c).Set("cart", c.QueryParam("item")); err != nil {
			return err
		}
		return c.String(http.StatusOK, "ok")
	})
	e.POST("/pay", func(c echo.Context) error {
		n, err := Session(c).Incr(c.Request().Context(), "attempts", 1)
		if err != nil {
			return echo.NewHTTPError(httpmw.StatusCode(err))
		}
		Session(c).Set("last", "declined "+strconv.FormatInt(n, 10))
		return echo.NewHTTPError(http.StatusPaymentRequired, errPayment.Error())
	})
	e.GET("/", func(c echo.Context) error {
		s := Session(c)
		return c.String(http.StatusOK, s.GetString("cart")+"|"+s.GetString("last"))
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func TestNativeSession(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			one, two := nativeApp(t, b.Store), nativeApp(t, b.Peer)
			r := do(t, one, "POST", "/cart?item=book", nil)
			if r.status != 200 || r.cookie == nil {
				t.Fatalf("cart: %d, cookie %v", r.status, r.cookie)
			}
			// A handler returning an error: echo answers with its status,
			// and what the handler changed is committed first.
			pay := do(t, two, "POST", "/pay", r.cookie)
			if pay.status != http.StatusPaymentRequired || pay.cookie == nil {
				t.Fatalf("pay: %d %q, cookie %v; want 402 with the new cookie", pay.status, pay.body, pay.cookie)
			}
			if got := do(t, one, "GET", "/", pay.cookie); got.body != "book|declined 1" {
				t.Fatalf("after the failed payment: %q, want book|declined 1", got.body)
			}
		})
	}
}

// downStore fails commits as a store without a leader does.
type downStore struct{ *session.MemoryStore }

func (downStore) Commit(context.Context, *session.Change) (session.Result, error) {
	return session.Result{}, session.ErrNoLeader
}

// TestNativeCommitFailure: a commit that fails when the handler returns
// (with or without its own error) is answered 503 by httpmw.
func TestNativeCommitFailure(t *testing.T) {
	mem := session.NewMemoryStore(session.MemoryOptions{})
	defer mem.Close()
	srv := nativeApp(t, downStore{mem})
	for _, path := range []string{"/cart?item=book", "/pay"} {
		if r := do(t, srv, "POST", path, nil); r.status != http.StatusServiceUnavailable || r.cookie != nil {
			t.Fatalf("%s over a store without leader: %d %q cookie %v; want 503, no cookie", path, r.status, r.body, r.cookie)
		}
	}
}

// contribApp is echo with echo-contrib/session over gorillastore.
func contribApp(t *testing.T, st session.Store) *httptest.Server {
	var pairs [][]byte
	if _, ok := st.(*session.MemoryStore); ok {
		pairs = [][]byte{testSecret}
	}
	store, err := gorillastore.NewStore(st, pairs...)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.Use(contrib.Middleware(store))
	get := func(c echo.Context) *gsessions.Session {
		sess, err := contrib.Get("app", c)
		if err != nil {
			t.Errorf("session.Get: %v", err)
		}
		return sess
	}
	e.POST("/cart", func(c echo.Context) error {
		sess := get(c)
		sess.Values["cart"] = c.QueryParam("item")
		if err := sess.Save(c.Request(), c.Response()); err != nil {
			return echo.NewHTTPError(httpmw.StatusCode(err))
		}
		return c.String(http.StatusOK, "ok")
	})
	e.POST("/pay", func(c echo.Context) error {
		sess := get(c)
		sess.Values["last"] = "declined"
		if err := sess.Save(c.Request(), c.Response()); err != nil {
			return echo.NewHTTPError(httpmw.StatusCode(err))
		}
		sess.Values["unsaved"] = "lost" // changed after Save: not stored
		return echo.NewHTTPError(http.StatusPaymentRequired, errPayment.Error())
	})
	e.GET("/", func(c echo.Context) error {
		sess := get(c)
		cart, _ := sess.Values["cart"].(string)
		last, _ := sess.Values["last"].(string)
		unsaved, _ := sess.Values["unsaved"].(string)
		return c.String(http.StatusOK, cart+"|"+last+"|"+unsaved)
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func TestEchoContribSession(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			one, two := contribApp(t, b.Store), contribApp(t, b.Peer)
			r := do(t, one, "POST", "/cart?item=book", nil)
			if r.status != 200 || r.cookie == nil {
				t.Fatalf("cart: %d, cookie %v", r.status, r.cookie)
			}
			pay := do(t, two, "POST", "/pay", r.cookie)
			if pay.status != http.StatusPaymentRequired || pay.cookie == nil {
				t.Fatalf("pay: %d %q, cookie %v; want 402 with the saved session's cookie", pay.status, pay.body, pay.cookie)
			}
			if got := do(t, one, "GET", "/", pay.cookie); got.body != "book|declined|" {
				t.Fatalf("after the failed payment: %q, want book|declined|", got.body)
			}
		})
	}
}
