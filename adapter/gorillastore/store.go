package gorillastore

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"weak"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/raftsession/raftsession/session"
)

var _ sessions.Store = (*Store)(nil)

// ZeroMaxAgeLifetime is how long a session lives in the store when its
// Options.MaxAge is 0 (a cookie that ends with the browser session, which
// the server cannot observe).
const ZeroMaxAgeLifetime = 24 * time.Hour

// Store is a gorilla/sessions Store over a session.Store. It is safe for
// concurrent use.
type Store struct {
	// Options are the defaults of new sessions: Path "/", MaxAge 30 days,
	// HttpOnly, SameSite Lax. MaxAge is also how long a session lives
	// without a Save; MaxAge < 0 in a session's Options makes Save delete
	// it.
	Options *sessions.Options

	st   session.Store
	keys *keys

	mu     sync.Mutex
	loaded map[weak.Pointer[sessions.Session]]*snapshot // what New read or Save wrote, for Save's diff
}

// NewStore returns a Store over st. keyPairs are securecookie's
// authentication and encryption key pairs, as for gorilla's stores: the
// first pair signs, every pair verifies. Without keyPairs the Store takes
// the cookie secrets of st when st offers them (httpmw.SecretSource, as
// cluster.Store does with its replicated keyring), and otherwise uses a
// random key of this process. It fails when a pair's authentication key is
// empty.
func NewStore(st session.Store, keyPairs ...[]byte) (*Store, error) {
	if st == nil {
		return nil, errors.New("gorillastore: nil store")
	}
	k, err := newKeys(st, keyPairs)
	if err != nil {
		return nil, err
	}
	s := &Store{
		Options: &sessions.Options{Path: "/", MaxAge: 86400 * 30, HttpOnly: true, SameSite: http.SameSiteLaxMode},
		st:      st,
		keys:    k,
		loaded:  map[weak.Pointer[sessions.Session]]*snapshot{},
	}
	return s, nil
}

// MaxAge sets Options.MaxAge, as gorilla's stores' MaxAge does.
func (s *Store) MaxAge(age int) { s.Options.MaxAge = age }

// Get returns the session called name of the request, loading it once per
// request (gorilla's registry). A session the cookie does not name, or
// one that ended, comes back new, with no error; a cookie that fails
// verification gives a new session and securecookie's error, as gorilla's
// stores do.
func (s *Store) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New returns the session called name of the request without using the
// registry: every call loads it again.
func (s *Store) New(r *http.Request, name string) (*sessions.Session, error) {
	sess := sessions.NewSession(s, name)
	opts := *s.Options
	sess.Options = &opts
	sess.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return sess, nil
	}
	var value string
	if err := securecookie.DecodeMulti(name, c.Value, &value, s.keys.codecs(s.Options.MaxAge)...); err != nil {
		return sess, err
	}
	id, index, ok := parseValue(value)
	if !ok {
		return sess, nil
	}
	rec, err := s.st.Load(r.Context(), id, session.LoadOptions{MinIndex: index})
	switch {
	case errors.Is(err, session.ErrNotFound):
		return sess, nil
	case err != nil:
		return sess, fmt.Errorf("gorillastore: load %q: %w", name, err)
	}
	snap, err := decodeRecord(rec)
	if err != nil {
		return sess, fmt.Errorf("gorillastore: load %q: %w", name, err)
	}
	snap.index = index
	sess.ID, sess.IsNew = id, false
	sess.Values = snap.values()
	s.track(sess, snap)
	return sess, nil
}

// Save commits the keys of sess that changed since it was loaded (all of
// them for a new session) and sets its cookie. With Options.MaxAge < 0 it
// deletes the session and expires the cookie. When another request
// destroyed the session meanwhile, the changes are dropped and no cookie
// is set.
func (s *Store) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	prev := s.tracked(sess)
	if sess.Options.MaxAge < 0 {
		if prev != nil {
			if _, err := s.st.Commit(r.Context(), &session.Change{ID: sess.ID, Destroy: true}); err != nil {
				return fmt.Errorf("gorillastore: delete %q: %w", sess.Name(), err)
			}
			s.untrack(sess)
		}
		http.SetCookie(w, sessions.NewCookie(sess.Name(), "", sess.Options))
		return nil
	}
	next, delta, err := diff(prev, sess.Values)
	if err != nil {
		return fmt.Errorf("gorillastore: save %q: %w", sess.Name(), err)
	}
	ttl := time.Duration(sess.Options.MaxAge) * time.Second
	if ttl == 0 {
		ttl = ZeroMaxAgeLifetime
	}
	delta.IdleTimeout, delta.Lifetime = ttl, ttl
	c := session.Change{ID: sess.ID, Delta: delta}
	if prev == nil {
		c.ID, c.Create = session.NewID(), true
	}
	res, err := s.st.Commit(r.Context(), &c)
	switch {
	case !c.Create && errors.Is(err, session.ErrNotFound):
		// Destroyed or expired while this request ran: never resurrect.
		s.untrack(sess)
		return nil
	case err != nil:
		return fmt.Errorf("gorillastore: save %q: %w", sess.Name(), err)
	}
	next.index = max(prev.indexOrZero(), res.Index)
	sess.ID, sess.IsNew = c.ID, false
	s.track(sess, next)
	encoded, err := securecookie.EncodeMulti(sess.Name(), c.ID+"."+strconv.FormatUint(next.index, 10), s.keys.codecs(sess.Options.MaxAge)...)
	if err != nil {
		return fmt.Errorf("gorillastore: save %q: %w", sess.Name(), err)
	}
	http.SetCookie(w, sessions.NewCookie(sess.Name(), encoded, sess.Options))
	return nil
}

// parseValue splits a cookie payload "<id>.<index>".
func parseValue(v string) (id string, index uint64, ok bool) {
	id, ix, found := strings.Cut(v, ".")
	if !found || id == "" {
		return "", 0, false
	}
	index, err := strconv.ParseUint(ix, 10, 64)
	return id, index, err == nil
}

// track remembers what sess held when loaded or saved. A session lives
// for one request; the entry goes when the garbage collector reclaims the
// session, so the map holds only sessions still in use.
func (s *Store) track(sess *sessions.Session, snap *snapshot) {
	wp := weak.Make(sess)
	s.mu.Lock()
	_, had := s.loaded[wp]
	s.loaded[wp] = snap
	s.mu.Unlock()
	if !had {
		runtime.AddCleanup(sess, s.forget, wp)
	}
}

func (s *Store) tracked(sess *sessions.Session) *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loaded[weak.Make(sess)]
}

func (s *Store) untrack(sess *sessions.Session) { s.forget(weak.Make(sess)) }

func (s *Store) forget(wp weak.Pointer[sessions.Session]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.loaded, wp)
}
