package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

// The demo app. Its HTTP contract is relied on by the end-to-end and
// browser tests; keep it exactly:
//
//	GET    /                         HTML page (never creates a session)
//	GET    /api/session              200 {"node","new","owner","values":{key:string}} (never creates a session)
//	PUT    /api/session/values/{key} body = text value; 204
//	GET    /api/session/values/{key} 200 text, or 404
//	DELETE /api/session/values/{key} 204
//	POST   /api/views                200 {"views":n} (atomic increment)
//	POST   /api/login?user=NAME      200 {"user":NAME}; new ID, data kept, user=NAME, owner user:NAME
//	POST   /api/logout               204; session destroyed, cookie expired
//	POST   /api/logout-everywhere    200 {"destroyed":n}
//	GET    /api/sessions             200 [{"key","created","last_seen","expires","current"}]
//
// The handlers expect to run behind an [httpmw.Manager], over any store;
// "list my sessions" and "log out everywhere" need a [session.OwnerStore].

// maxUserLen bounds login names (the owner "user:NAME" must fit the
// store's key limit with room to spare).
const maxUserLen = 64

// newDemo returns the demo app of node id. log receives handler errors
// that are not the client's fault.
func newDemo(id string, log *slog.Logger) http.Handler {
	d := &demo{node: id, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.page)
	mux.HandleFunc("GET /api/session", d.getSession)
	mux.HandleFunc("PUT /api/session/values/{key}", d.putValue)
	mux.HandleFunc("GET /api/session/values/{key}", d.getValue)
	mux.HandleFunc("DELETE /api/session/values/{key}", d.deleteValue)
	mux.HandleFunc("POST /api/views", d.views)
	mux.HandleFunc("POST /api/login", d.login)
	mux.HandleFunc("POST /api/logout", d.logout)
	mux.HandleFunc("POST /api/logout-everywhere", d.logoutEverywhere)
	mux.HandleFunc("GET /api/sessions", d.sessions)
	return mux
}

type demo struct {
	node string
	log  *slog.Logger
}

type sessionJSON struct {
	Node   string            `json:"node"`
	New    bool              `json:"new"`
	Owner  string            `json:"owner"`
	Values map[string]string `json:"values"`
}

type ownedJSON struct {
	Key      string    `json:"key"` // first bytes of the SHA-256 of the ID: tells sessions apart, opens none
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"last_seen"`
	Expires  time.Time `json:"expires"`
	Current  bool      `json:"current"`
}

func (d *demo) getSession(w http.ResponseWriter, r *http.Request) {
	s := httpmw.FromContext(r.Context())
	writeJSON(w, http.StatusOK, sessionJSON{Node: d.node, New: s.IsNew(), Owner: s.Owner(), Values: values(s)})
}

// values returns every value as text: strings as they are, anything else
// (the views counter, say) as its JSON.
func values(s *session.Session) map[string]string {
	out := map[string]string{}
	for _, k := range s.Keys() {
		out[k] = valueText(s, k)
	}
	return out
}

func valueText(s *session.Session, key string) string {
	var v any
	if err := s.Decode(key, &v); err != nil {
		return ""
	}
	if str, ok := v.(string); ok {
		return str
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func (d *demo) putValue(w http.ResponseWriter, r *http.Request) {
	s := httpmw.FromContext(r.Context())
	limit := int64(session.DefaultLimits().MaxValueBytes)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			http.Error(w, "value too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "could not read the body", http.StatusBadRequest)
		return
	}
	if !utf8.Valid(body) {
		http.Error(w, "value must be UTF-8 text", http.StatusBadRequest)
		return
	}
	if err := s.Set(r.PathValue("key"), string(body)); err != nil {
		d.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *demo) getValue(w http.ResponseWriter, r *http.Request) {
	s := httpmw.FromContext(r.Context())
	key := r.PathValue("key")
	if !s.Exists(key) {
		http.Error(w, "no such key", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, valueText(s, key))
}

func (d *demo) deleteValue(w http.ResponseWriter, r *http.Request) {
	if err := httpmw.FromContext(r.Context()).Delete(r.PathValue("key")); err != nil {
		d.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (d *demo) views(w http.ResponseWriter, r *http.Request) {
	n, err := httpmw.FromContext(r.Context()).Incr(r.Context(), "views", 1)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"views": n})
}

func (d *demo) login(w http.ResponseWriter, r *http.Request) {
	user := r.FormValue("user")
	if !validUser(user) {
		http.Error(w, "user: want 1 to 64 printable characters", http.StatusBadRequest)
		return
	}
	s := httpmw.FromContext(r.Context())
	err := s.Regenerate()
	if err == nil {
		err = s.Set("user", user)
	}
	if err == nil {
		err = s.SetOwner("user:" + user)
	}
	if err != nil {
		d.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"user": user})
}

func validUser(u string) bool {
	if u == "" || len(u) > maxUserLen || !utf8.ValidString(u) {
		return false
	}
	for _, c := range u {
		if !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

func (d *demo) logout(w http.ResponseWriter, r *http.Request) {
	if err := httpmw.FromContext(r.Context()).Destroy(r.Context()); err != nil {
		d.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// logoutEverywhere destroys every session of the user, this one included.
// A session nobody logged in to has no owner and nothing to destroy.
func (d *demo) logoutEverywhere(w http.ResponseWriter, r *http.Request) {
	s := httpmw.FromContext(r.Context())
	n := 0
	if s.Owner() != "" {
		var err error
		if n, err = s.DestroyOwned(r.Context(), false); err != nil {
			d.fail(w, r, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]int{"destroyed": n})
}

func (d *demo) sessions(w http.ResponseWriter, r *http.Request) {
	list, err := ownedSessions(r.Context(), httpmw.FromContext(r.Context()))
	if err != nil {
		d.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func ownedSessions(ctx context.Context, s *session.Session) ([]ownedJSON, error) {
	owned, err := s.ListOwned(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ownedJSON, 0, len(owned))
	for _, o := range owned {
		exp := o.IdleDeadline
		if o.AbsoluteDeadline.Before(exp) {
			exp = o.AbsoluteDeadline
		}
		out = append(out, ownedJSON{Key: hex.EncodeToString(o.Key[:4]), Created: o.Created.UTC(),
			LastSeen: o.LastSeen.UTC(), Expires: exp.UTC(), Current: o.Current})
	}
	return out, nil
}

// fail answers a handler error with the status its kind calls for.
func (d *demo) fail(w http.ResponseWriter, r *http.Request, err error) {
	if httpmw.StatusCode(err) >= 500 && !errors.Is(err, session.ErrQuota) {
		d.log.Warn("demo request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	httpmw.WriteError(w, r, err)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
