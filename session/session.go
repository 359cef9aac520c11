package session

import (
	"errors"
	"strconv"
	"sync"
	"time"
)

// ErrNoKey is returned by [Session.Decode] and [Session.PopDecode] when the
// session has no value under the key.
var ErrNoKey = errors.New("session: no such key")

// Default timeouts of new sessions, used when [Config] leaves them zero.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultLifetime    = 12 * time.Hour
)

// reservedPrefix starts the keys the package keeps for itself in a record's
// values. Handlers cannot set such keys and [Session.Keys] hides them.
const reservedPrefix = "\x00"

// persistKey holds "1" for a persistent cookie and "0" for a
// browser-session cookie, when [Session.SetPersist] chose one for this
// session; absent means [Config.Persist].
const persistKey = reservedPrefix + "persist"

// Config is what every [Session] of one middleware shares. The middleware
// builds it and passes it to [Open]; handlers never see one. A Config must
// not be changed once sessions use it.
type Config struct {
	// Store holds the sessions. Required.
	Store Store
	// Codec encodes values. Default [JSONCodec].
	Codec Codec
	// Limits bound one session; [Session.Set] checks them before the store
	// does, so a handler learns at once that a value is too large. Zero
	// fields take the store's limits ([LimitsOf]: its own for a
	// [LimitStore], else [DefaultLimits]). Set a field only to be stricter
	// than the store: a larger one merely moves the rejection from Set to
	// the commit.
	Limits Limits
	// IdleTimeout is how long a new session lives without a request that
	// touches it. Default [DefaultIdleTimeout].
	IdleTimeout time.Duration
	// Lifetime is how long a new session lives at most. Default
	// [DefaultLifetime].
	Lifetime time.Duration
	// Persist says whether a session that never called
	// [Session.SetPersist] gets a persistent cookie. Default false
	// (browser-session cookie).
	Persist bool
	// NewID generates session IDs. Default [NewID].
	NewID func() string
	// Level and Wait are the consistency of [Session.Reload] and
	// [Session.ListOwned]; the session's [Handle.Index] is the MinIndex.
	// Zero Wait is the store's own (see [LoadOptions.Wait]).
	Level Level
	Wait  time.Duration
	// Now is the clock used to estimate deadlines (for cookie expiry).
	// Default [time.Now].
	Now func() time.Time
}

func (c *Config) codec() Codec {
	if c.Codec == nil {
		return JSONCodec{}
	}
	return c.Codec
}

// limits are the limits Session.Set checks: Limits over the store's.
func (c *Config) limits() Limits {
	return c.Limits.or(LimitsOf(c.Store))
}

func (c *Config) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Config) newID() string {
	if c.NewID == nil {
		return NewID()
	}
	return c.NewID()
}

func (c *Config) idleTimeout() time.Duration {
	if c.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return c.IdleTimeout
}

func (c *Config) lifetime() time.Duration {
	if c.Lifetime <= 0 {
		return DefaultLifetime
	}
	return c.Lifetime
}

// Status is where a [Session] stands with respect to its store.
type Status uint8

const (
	// StatusNew: the session is not in the store (yet). It is created by
	// the first commit.
	StatusNew Status = iota
	// StatusStored: the session is in the store; commits update it.
	StatusStored
	// StatusDestroyed: this request destroyed the session.
	StatusDestroyed
	// StatusGone: another request destroyed or regenerated the session
	// while this one ran; this request's changes were dropped and must
	// not bring it back.
	StatusGone
)

func (s Status) String() string {
	switch s {
	case StatusNew:
		return "new"
	case StatusStored:
		return "stored"
	case StatusDestroyed:
		return "destroyed"
	case StatusGone:
		return "gone"
	}
	return "status(" + strconv.Itoa(int(s)) + ")"
}

// Session is what a handler holds of one session for one request: handlers
// read and change values through it, and it records the changes as a [Delta] that is
// committed in one atomic [Change] (by the middleware before the response
// is sent, or at once by [Session.Save], [Session.Incr] and
// [Session.CompareAndSwap]).
//
// Reads see the values as loaded plus this request's own changes; they do
// not see other requests' commits until [Session.Reload]. Because a commit
// sends only the keys this request changed, concurrent requests that change
// different keys never lose each other's updates.
//
// A Session is safe for concurrent use by the goroutines of one request.
// Methods that take a context talk to the store and hold the session's lock
// while they do.
type Session struct {
	mu  sync.Mutex
	cfg *Config

	status   Status
	id       string // stored ID, or the ID a new session will be created with ("" until needed)
	renameTo string // pending Regenerate of a stored session
	index    uint64 // store index of this client's last acknowledged write

	// The values as this request sees them: base as loaded until the
	// request changes one, then vals, a private copy (owned is true).
	base  Values
	vals  map[string][]byte
	owned bool
	size  int // Size of vals, valid when owned

	owner       string
	baseOwner   string // owner as stored
	lastSeen    time.Time
	idleTimeout time.Duration
	absDeadline time.Time

	pending Delta
	touch   bool
	used    bool
}

// Open returns the handle of the session stored under id as rec, or of a new
// session when rec is nil (id is then ignored and a fresh ID is generated
// when needed). index is the store index of this client's last acknowledged
// write (from its cookie). The middleware calls it once per request and
// keeps the Handle; handlers get its [Handle.Session] from the middleware
// (httpmw.FromContext).
func Open(cfg *Config, id string, rec *Record, index uint64) *Handle {
	h := &Handle{}
	s := &h.s
	s.cfg, s.index = cfg, index
	if rec == nil {
		s.startNew()
		return h
	}
	s.status = StatusStored
	s.id = id
	s.setBase(rec)
	return h
}

func (s *Session) startNew() {
	now := s.cfg.now()
	s.status = StatusNew
	s.id = ""
	s.renameTo = ""
	s.clearView()
	s.owner, s.baseOwner = "", ""
	s.lastSeen = now
	s.idleTimeout = s.cfg.idleTimeout()
	s.absDeadline = now.Add(s.cfg.lifetime())
	s.pending = Delta{}
	s.touch = false
}

// clearView makes the request see no values.
func (s *Session) clearView() {
	s.base, s.vals, s.owned, s.size = Values{}, map[string][]byte{}, true, 0
}

// lookup returns the value of key as this request sees it.
func (s *Session) lookup(key string) ([]byte, bool) {
	if s.owned {
		b, ok := s.vals[key]
		return b, ok
	}
	return s.base.Lookup(key)
}

// keyCount returns how many keys this request sees.
func (s *Session) keyCount() int {
	if s.owned {
		return len(s.vals)
	}
	return s.base.Len()
}

func (s *Session) setBase(rec *Record) {
	s.base, s.vals, s.owned = rec.Values, nil, false
	s.owner, s.baseOwner = rec.Owner, rec.Owner
	s.lastSeen = rec.LastSeen
	s.idleTimeout = rec.IdleTimeout
	s.absDeadline = rec.AbsoluteDeadline
}

// lock locks s for a handler-facing method, which makes the response
// depend on the session (see [Handle.Used]).
func (s *Session) lock() {
	s.mu.Lock()
	s.used = true
}
