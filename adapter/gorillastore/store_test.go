package gorillastore

import (
	"encoding/gob"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/gorilla/sessions"

	"github.com/raftsession/raftsession/session"
)

type cart struct {
	Items []string
	Total int
}

func init() { gob.Register(cart{}) }

var testKey = []byte("0123456789abcdef0123456789abcdef")

// stores returns two Stores over b, as two instances of an app would
// have: with a shared key pair over the MemoryStore, with none (the
// cluster's replicated keys) over the cluster.
func stores(t *testing.T, b backend) (*Store, *Store) {
	t.Helper()
	var pairs [][]byte
	if b.Name == "memory" {
		pairs = [][]byte{testKey, nil}
	}
	one, err := NewStore(b.Store, pairs...)
	if err != nil {
		t.Fatal(err)
	}
	two, err := NewStore(b.Peer, pairs...)
	if err != nil {
		t.Fatal(err)
	}
	return one, two
}

// request runs fn as the handler of one request carrying cookies and
// returns the cookies the response set.
func request(t *testing.T, cookies []*http.Cookie, fn func(w http.ResponseWriter, r *http.Request)) []*http.Cookie {
	t.Helper()
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	fn(w, r)
	return w.Result().Cookies()
}

func mustGet(t *testing.T, s *Store, r *http.Request, name string) *sessions.Session {
	t.Helper()
	sess, err := s.Get(r, name)
	if err != nil {
		t.Fatalf("Get %s: %v", name, err)
	}
	return sess
}

func mustSave(t *testing.T, sess *sessions.Session, w http.ResponseWriter, r *http.Request) {
	t.Helper()
	if err := sess.Save(r, w); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

func TestStore(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			one, two := stores(t, b)
			t.Run("values across instances", func(t *testing.T) { testValues(t, one, two) })
			t.Run("concurrent requests keep both keys", func(t *testing.T) { testMerge(t, one, two) })
			t.Run("MaxAge<0 deletes", func(t *testing.T) { testDelete(t, one, two) })
			t.Run("flashes", func(t *testing.T) { testFlashes(t, one, two) })
			t.Run("several named sessions", func(t *testing.T) { testNamed(t, one, two) })
			t.Run("no resurrection", func(t *testing.T) { testNoResurrection(t, one, two) })
		})
	}
}

func testValues(t *testing.T, one, two *Store) {
	want := map[any]any{"user": "alice", "n": 42, 7: "int key", "cart": cart{Items: []string{"book"}, Total: 12}}
	cookies := request(t, nil, func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, one, r, "app")
		if !sess.IsNew {
			t.Error("first session is not new")
		}
		for k, v := range want {
			sess.Values[k] = v
		}
		mustSave(t, sess, w, r)
	})
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].Path != "/" || cookies[0].MaxAge != 86400*30 {
		t.Fatalf("cookie: %+v", cookies)
	}
	request(t, cookies, func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, two, r, "app")
		if sess.IsNew || !reflect.DeepEqual(sess.Values, want) {
			t.Fatalf("other instance reads new=%v %v, want %v", sess.IsNew, sess.Values, want)
		}
	})
}

// testMerge: two requests load the same session; one changes a, the other
// b; both changes survive (a whole-session save would lose one).
func testMerge(t *testing.T, one, two *Store) {
	cookies := request(t, nil, func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, one, r, "app")
		sess.Values["a"], sess.Values["b"] = "0", "0"
		mustSave(t, sess, w, r)
	})
	r1, r2 := httptest.NewRequest("GET", "/", nil), httptest.NewRequest("GET", "/", nil)
	r1.AddCookie(cookies[0])
	r2.AddCookie(cookies[0])
	s1, s2 := mustGet(t, one, r1, "app"), mustGet(t, two, r2, "app")
	s1.Values["a"] = "1"
	s2.Values["b"] = "2"
	w1, w2 := httptest.NewRecorder(), httptest.NewRecorder()
	mustSave(t, s1, w1, r1)
	mustSave(t, s2, w2, r2)
	request(t, w2.Result().Cookies(), func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, one, r, "app")
		if sess.Values["a"] != "1" || sess.Values["b"] != "2" {
			t.Fatalf("after concurrent saves: %v, want a=1 b=2", sess.Values)
		}
	})
}

func testDelete(t *testing.T, one, two *Store) {
	cookies := request(t, nil, func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, one, r, "app")
		sess.Values["user"] = "alice"
		mustSave(t, sess, w, r)
	})
	expired := request(t, cookies, func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, two, r, "app")
		sess.Options.MaxAge = -1
		mustSave(t, sess, w, r)
	})
	if len(expired) != 1 || expired[0].MaxAge >= 0 {
		t.Fatalf("delete did not expire the cookie: %+v", expired)
	}
	request(t, cookies, func(w http.ResponseWriter, r *http.Request) {
		if sess := mustGet(t, one, r, "app"); !sess.IsNew || len(sess.Values) != 0 {
			t.Fatalf("deleted session still loads: %v", sess.Values)
		}
	})
}

func testFlashes(t *testing.T, one, two *Store) {
	cookies := request(t, nil, func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, one, r, "app")
		sess.AddFlash("saved")
		sess.AddFlash("twice", "notice")
		mustSave(t, sess, w, r)
	})
	cookies = request(t, cookies, func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, two, r, "app")
		if f := sess.Flashes(); !reflect.DeepEqual(f, []any{"saved"}) {
			t.Fatalf("flashes: %v, want [saved]", f)
		}
		mustSave(t, sess, w, r)
	})
	request(t, cookies, func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, one, r, "app")
		if f := sess.Flashes(); len(f) != 0 {
			t.Fatalf("flashes after reading: %v, want none", f)
		}
		if f := sess.Flashes("notice"); !reflect.DeepEqual(f, []any{"twice"}) {
			t.Fatalf("notice flashes: %v, want [twice]", f)
		}
	})
}

func testNamed(t *testing.T, one, two *Store) {
	cookies := request(t, nil, func(w http.ResponseWriter, r *http.Request) {
		a, b := mustGet(t, one, r, "a"), mustGet(t, one, r, "b")
		a.Values["k"], b.Values["k"] = "A", "B"
		if err := sessions.Save(r, w); err != nil {
			t.Fatal(err)
		}
	})
	if len(cookies) != 2 {
		t.Fatalf("%d cookies, want one per session", len(cookies))
	}
	request(t, cookies, func(w http.ResponseWriter, r *http.Request) {
		a, b := mustGet(t, two, r, "a"), mustGet(t, two, r, "b")
		if a.Values["k"] != "A" || b.Values["k"] != "B" || a.ID == b.ID {
			t.Fatalf("a=%v b=%v", a.Values, b.Values)
		}
	})
}

// testNoResurrection: a request that loaded the session before another
// deleted it saves nothing and sets no cookie.
func testNoResurrection(t *testing.T, one, two *Store) {
	cookies := request(t, nil, func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, one, r, "app")
		sess.Values["user"] = "alice"
		mustSave(t, sess, w, r)
	})
	late := httptest.NewRequest("GET", "/", nil)
	late.AddCookie(cookies[0])
	lateSess := mustGet(t, one, late, "app")
	request(t, cookies, func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, two, r, "app")
		sess.Options.MaxAge = -1
		mustSave(t, sess, w, r)
	})
	lateSess.Values["cart"] = "late"
	w := httptest.NewRecorder()
	mustSave(t, lateSess, w, late)
	if got := w.Result().Cookies(); len(got) != 0 {
		t.Fatalf("late save set cookies %v, want none", got)
	}
	request(t, cookies, func(w http.ResponseWriter, r *http.Request) {
		if sess := mustGet(t, two, r, "app"); !sess.IsNew {
			t.Fatalf("late save brought the session back: %v", sess.Values)
		}
	})
}

func TestTamperedCookie(t *testing.T) {
	mem := session.NewMemoryStore(session.MemoryOptions{})
	defer mem.Close()
	s, err := NewStore(mem, testKey)
	if err != nil {
		t.Fatal(err)
	}
	cookies := request(t, nil, func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, s, r, "app")
		sess.Values["user"] = "alice"
		mustSave(t, sess, w, r)
	})
	cookies[0].Value = strings.ToUpper(cookies[0].Value[:10]) + cookies[0].Value[10:]
	request(t, cookies, func(w http.ResponseWriter, r *http.Request) {
		sess, err := s.Get(r, "app")
		if err == nil || !sess.IsNew || len(sess.Values) != 0 {
			t.Fatalf("tampered cookie: err %v, new %v, values %v", err, sess.IsNew, sess.Values)
		}
	})
	if _, err := NewStore(mem, nil); err == nil {
		t.Fatal("NewStore accepted an empty authentication key")
	}
}

// TestNoKeysMemoryStore: with no key pairs over a MemoryStore, a random
// key of the Store is used.
func TestNoKeysMemoryStore(t *testing.T) {
	mem := session.NewMemoryStore(session.MemoryOptions{})
	defer mem.Close()
	s, _ := NewStore(mem)
	other, _ := NewStore(mem)
	cookies := request(t, nil, func(w http.ResponseWriter, r *http.Request) {
		sess := mustGet(t, s, r, "app")
		sess.Values["user"] = "alice"
		mustSave(t, sess, w, r)
	})
	request(t, cookies, func(w http.ResponseWriter, r *http.Request) {
		if sess := mustGet(t, s, r, "app"); sess.Values["user"] != "alice" {
			t.Fatalf("got %v", sess.Values)
		}
		if sess, _ := other.New(r, "app"); !sess.IsNew {
			t.Fatal("another Store's random key verified the cookie")
		}
	})
}
