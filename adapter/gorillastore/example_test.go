package gorillastore_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/raftsession/raftsession/adapter/gorillastore"
	"github.com/raftsession/raftsession/session"
)

// A gorilla/sessions app keeps its code; the store is a raftsession store
// (node.Store() on a cluster).
func ExampleNewStore() {
	mem := session.NewMemoryStore(session.MemoryOptions{})
	defer mem.Close()
	store, err := gorillastore.NewStore(mem)
	if err != nil {
		fmt.Println(err)
		return
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, _ := store.Get(r, "app")
		n, _ := sess.Values["visits"].(int)
		sess.Values["visits"] = n + 1
		if err := sess.Save(r, w); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, n+1)
	})
	var cookie *http.Cookie
	for range 2 {
		req := httptest.NewRequest("GET", "/", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		cookie = rec.Result().Cookies()[0]
		fmt.Println(rec.Body.String())
	}
	// Output:
	// 1
	// 2
}
