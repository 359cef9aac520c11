package scsstore_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/alexedwards/scs/v2"

	"github.com/raftsession/raftsession/adapter/scsstore"
	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

// An scs application keeps its code; only the store changes. Over a
// cluster it is sm.Store = scsstore.New(node.Store()).
func ExampleNew() {
	store := session.NewMemoryStore(session.MemoryOptions{})
	defer store.Close()

	sm := scs.New()
	sm.Store = scsstore.New(store)
	sm.ErrorFunc = httpmw.WriteError // 503 while the store is unavailable

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		sm.RenewToken(r.Context())
		sm.Put(r.Context(), "user", "alice")
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+sm.GetString(r.Context(), "user"))
	})
	h := sm.LoadAndSave(mux)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(rec.Result().Cookies()[0])
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Body.String())
	// Output: hello alice
}
