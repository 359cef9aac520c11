package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
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

// Config is what every [Session] of one middleware shares. It is
// middleware-facing: handlers never build one. A Config must not be
// changed once sessions use it.
type Config struct {
	// Store holds the sessions. Required.
	Store Store
	// Codec encodes values. Default [JSONCodec].
	Codec Codec
	// Limits bound one session; [Session.Set] checks them before the store
	// does. Zero fields take the values of [DefaultLimits].
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
	// [Session.ListOwned]; the session's [Session.Index] is the MinIndex.
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

// OwnedSession is one entry of [Session.ListOwned].
type OwnedSession struct {
	Info
	// Current marks the session of the request that asked.
	Current bool
}

// Session is the request-scoped handle on one session: handlers read and
// change values through it, and it records the changes as a [Delta] that is
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

	vals  map[string][]byte // values as this request sees them
	owned bool              // vals is a private copy (else shared with the loaded Record)
	size  int               // Size of vals, valid when owned

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
// write (from its cookie). Middleware-facing: handlers get their Session
// from the middleware (httpmw.FromContext).
func Open(cfg *Config, id string, rec *Record, index uint64) *Session {
	s := &Session{cfg: cfg, index: index}
	if rec == nil {
		s.startNew()
		return s
	}
	s.status = StatusStored
	s.id = id
	s.setBase(rec)
	return s
}

func (s *Session) startNew() {
	now := s.cfg.now()
	s.status = StatusNew
	s.id = ""
	s.renameTo = ""
	s.vals, s.owned, s.size = map[string][]byte{}, true, 0
	s.owner, s.baseOwner = "", ""
	s.lastSeen = now
	s.idleTimeout = s.cfg.idleTimeout()
	s.absDeadline = now.Add(s.cfg.lifetime())
	s.pending = Delta{}
	s.touch = false
}

func (s *Session) setBase(rec *Record) {
	s.vals, s.owned = rec.Values, false
	if s.vals == nil {
		s.vals = map[string][]byte{}
	}
	s.owner, s.baseOwner = rec.Owner, rec.Owner
	s.lastSeen = rec.LastSeen
	s.idleTimeout = rec.IdleTimeout
	s.absDeadline = rec.AbsoluteDeadline
}

// lock locks s for a handler-facing method, which makes the response
// depend on the session (see [Session.Used]).
func (s *Session) lock() {
	s.mu.Lock()
	s.used = true
}

// ---- reading ----

// ID returns the session ID: the secret the cookie carries. For a new
// session it is generated on first use. After [Session.Regenerate] it is
// the new ID, which becomes valid when the change is committed.
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.renameTo != "" {
		return s.renameTo
	}
	if s.status == StatusNew && s.id == "" {
		s.id = s.cfg.newID()
	}
	return s.id
}

// IsNew reports whether the session has not been stored yet: the request
// came without a valid session cookie, or its session had expired.
func (s *Session) IsNew() bool {
	s.lock()
	defer s.mu.Unlock()
	return s.status == StatusNew
}

// raw returns the encoded value of key.
func (s *Session) raw(key string) ([]byte, bool) {
	if s.status == StatusDestroyed || s.status == StatusGone {
		return nil, false
	}
	b, ok := s.vals[key]
	return b, ok
}

func (s *Session) decode(key string, dst any) bool {
	s.lock()
	b, ok := s.raw(key)
	s.mu.Unlock()
	return ok && s.cfg.codec().Decode(b, dst) == nil
}

// Get returns the value of key decoded into an interface value (with the
// default JSON codec: string, float64, bool, nil, []any or map[string]any),
// or nil when there is none. Prefer the typed getters or [Session.Decode].
func (s *Session) Get(key string) any {
	var v any
	s.decode(key, &v)
	return v
}

// rawValue returns the encoded value of key for a getter, and whether the
// codec is the default one (so the getter may decode it directly, without
// the allocation an interface call costs).
func (s *Session) rawValue(key string) (b []byte, ok, isJSON bool) {
	s.lock()
	b, ok = s.raw(key)
	s.mu.Unlock()
	switch s.cfg.Codec.(type) {
	case nil, JSONCodec:
		isJSON = true
	}
	return b, ok, isJSON
}

// GetString returns the string value of key, or "" when there is none or
// it is not a string.
func (s *Session) GetString(key string) string {
	b, ok, isJSON := s.rawValue(key)
	if !ok {
		return ""
	}
	if n := len(b); isJSON && n >= 2 && b[0] == '"' && b[n-1] == '"' && plainJSONBytes(b[1:n-1]) {
		return string(b[1 : n-1])
	}
	var v string
	_ = s.cfg.codec().Decode(b, &v)
	return v
}

// GetInt returns the integer value of key, or 0 when there is none or it
// is not an integer.
func (s *Session) GetInt(key string) int {
	return int(s.getInt(key, strconv.IntSize))
}

// GetInt64 returns the integer value of key (for example a counter kept
// with [Session.Incr]), or 0 when there is none or it is not an integer.
func (s *Session) GetInt64(key string) int64 {
	return s.getInt(key, 64)
}

func (s *Session) getInt(key string, bits int) int64 {
	b, ok, _ := s.rawValue(key)
	if !ok {
		return 0
	}
	// Incr stores decimal text whatever the codec.
	if n, err := strconv.ParseInt(string(b), 10, bits); err == nil {
		return n
	}
	var v int64
	if s.cfg.codec().Decode(b, &v) != nil || bits < 64 && int64(int(v)) != v {
		return 0
	}
	return v
}

// GetFloat returns the number value of key, or 0 when there is none or it
// is not a number.
func (s *Session) GetFloat(key string) float64 {
	var v float64
	s.decode(key, &v)
	return v
}

// GetBool returns the boolean value of key, or false when there is none or
// it is not a boolean.
func (s *Session) GetBool(key string) bool {
	var v bool
	s.decode(key, &v)
	return v
}

// GetBytes returns the []byte value of key, or nil when there is none or
// it is not a byte slice.
func (s *Session) GetBytes(key string) []byte {
	var v []byte
	s.decode(key, &v)
	return v
}

// GetTime returns the time.Time value of key, or the zero time when there
// is none or it is not a time.
func (s *Session) GetTime(key string) time.Time {
	var v time.Time
	s.decode(key, &v)
	return v
}

// Decode decodes the value of key into dst, a non-nil pointer. It returns
// an error wrapping [ErrNoKey] when there is no value, or the codec's error
// when the value does not fit dst.
func (s *Session) Decode(key string, dst any) error {
	s.lock()
	b, ok := s.raw(key)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoKey, key)
	}
	return s.cfg.codec().Decode(b, dst)
}

// Exists reports whether the session has a value under key.
func (s *Session) Exists(key string) bool {
	s.lock()
	defer s.mu.Unlock()
	_, ok := s.raw(key)
	return ok
}

// Keys returns the keys of the session's values, sorted.
func (s *Session) Keys() []string {
	s.lock()
	defer s.mu.Unlock()
	if s.status == StatusDestroyed || s.status == StatusGone {
		return []string{}
	}
	keys := make([]string, 0, len(s.vals))
	for k := range s.vals {
		if !strings.HasPrefix(k, reservedPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// Owner returns who the session belongs to ("" for nobody), including a
// change by [Session.SetOwner] not committed yet.
func (s *Session) Owner() string {
	s.lock()
	defer s.mu.Unlock()
	return s.owner
}

// ---- changing ----

func (s *Session) writable() error {
	if s.status == StatusDestroyed || s.status == StatusGone {
		return ErrDestroyed
	}
	return nil
}

func (s *Session) checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalid)
	case strings.HasPrefix(key, reservedPrefix):
		return fmt.Errorf("%w: key %q starts with a reserved byte", ErrInvalid, key)
	}
	if lim := s.cfg.Limits.WithDefaults(); len(key) > lim.MaxKeyBytes {
		return fmt.Errorf("%w: key is %d bytes, limit %d", ErrTooLarge, len(key), lim.MaxKeyBytes)
	}
	return nil
}

// own makes vals a private copy, so this request can change it.
func (s *Session) own() {
	if s.owned {
		return
	}
	s.vals = maps.Clone(s.vals)
	s.size = 0
	for k, v := range s.vals {
		s.size += len(k) + len(v)
	}
	s.owned = true
}

// addOp appends op to the pending delta, replacing an earlier plain set or
// delete of the same key so repeated sets send one value.
func (s *Session) addOp(op Op) {
	if op.Kind == OpSet || op.Kind == OpDelete {
		for i := range s.pending.Ops {
			if p := &s.pending.Ops[i]; p.Key == op.Key && (p.Kind == OpSet || p.Kind == OpDelete) {
				*p = op
				return
			}
		}
	}
	s.pending.Ops = append(s.pending.Ops, op)
}

// setRaw stores the encoded value b under key, checking the limits against
// the values this request sees.
func (s *Session) setRaw(key string, b []byte) error {
	lim := s.cfg.Limits.WithDefaults()
	if len(b) > lim.MaxValueBytes {
		return fmt.Errorf("%w: value of %q is %d bytes, limit %d", ErrTooLarge, key, len(b), lim.MaxValueBytes)
	}
	s.own()
	old, had := s.vals[key]
	size := s.size + len(b) - len(old)
	if !had {
		size += len(key)
		if len(s.vals)+1 > lim.MaxKeys {
			return fmt.Errorf("%w: %d keys, limit %d", ErrTooLarge, len(s.vals)+1, lim.MaxKeys)
		}
	}
	if size > lim.MaxBytes {
		return fmt.Errorf("%w: session would hold %d bytes, limit %d", ErrTooLarge, size, lim.MaxBytes)
	}
	s.vals[key] = b
	s.size = size
	s.addOp(Op{Kind: OpSet, Key: key, Value: b})
	return nil
}

func (s *Session) deleteRaw(key string) {
	if _, ok := s.vals[key]; !ok {
		return
	}
	s.own()
	s.size -= len(key) + len(s.vals[key])
	delete(s.vals, key)
	s.addOp(Op{Kind: OpDelete, Key: key})
}

// Set stores v (encoded by the codec) under key; the change is committed
// with the request. It returns an error wrapping [ErrTooLarge] when the key,
// the value, the number of keys or the session's total size would break the
// limits, [ErrInvalid] for an empty key, [ErrDestroyed] after Destroy, or
// the codec's error.
func (s *Session) Set(key string, v any) error {
	if err := s.checkKey(key); err != nil {
		return fmt.Errorf("session: set: %w", err)
	}
	b, err := s.cfg.codec().Encode(v)
	if err != nil {
		return fmt.Errorf("session: set %q: %w", key, err)
	}
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if err := s.setRaw(key, b); err != nil {
		return fmt.Errorf("session: set: %w", err)
	}
	return nil
}

// Delete removes key; removing an absent key changes nothing.
func (s *Session) Delete(key string) error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if !strings.HasPrefix(key, reservedPrefix) {
		s.deleteRaw(key)
	}
	return nil
}

// Clear removes every value (the owner, timeouts and cookie persistence
// stay). Keys that other requests set concurrently are removed as well when
// the change is committed.
func (s *Session) Clear() error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	persist, hasPersist := s.vals[persistKey]
	s.vals, s.owned, s.size = map[string][]byte{}, true, 0
	s.pending.Clear = true
	s.pending.Ops = s.pending.Ops[:0]
	if hasPersist {
		return s.setRaw(persistKey, persist)
	}
	return nil
}

// pop returns the encoded value of key and deletes it.
func (s *Session) pop(key string) ([]byte, bool) {
	s.lock()
	defer s.mu.Unlock()
	if s.writable() != nil || strings.HasPrefix(key, reservedPrefix) {
		return nil, false
	}
	b, ok := s.vals[key]
	if ok {
		s.deleteRaw(key)
	}
	return b, ok
}

func (s *Session) popDecode(key string, dst any) bool {
	b, ok := s.pop(key)
	return ok && s.cfg.codec().Decode(b, dst) == nil
}

// Pop returns the value of key like [Session.Get] and deletes it: a
// one-time ("flash") message. An absent key returns nil and changes
// nothing.
func (s *Session) Pop(key string) any {
	var v any
	s.popDecode(key, &v)
	return v
}

// PopString is [Session.GetString] followed by deleting key when present.
func (s *Session) PopString(key string) string {
	var v string
	s.popDecode(key, &v)
	return v
}

// PopInt is [Session.GetInt] followed by deleting key when present.
func (s *Session) PopInt(key string) int {
	var v int
	s.popDecode(key, &v)
	return v
}

// PopBool is [Session.GetBool] followed by deleting key when present.
func (s *Session) PopBool(key string) bool {
	var v bool
	s.popDecode(key, &v)
	return v
}

// PopBytes is [Session.GetBytes] followed by deleting key when present.
func (s *Session) PopBytes(key string) []byte {
	var v []byte
	s.popDecode(key, &v)
	return v
}

// PopTime is [Session.GetTime] followed by deleting key when present.
func (s *Session) PopTime(key string) time.Time {
	var v time.Time
	s.popDecode(key, &v)
	return v
}

// PopDecode is [Session.Decode] followed by deleting key when present.
func (s *Session) PopDecode(key string, dst any) error {
	b, ok := s.pop(key)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoKey, key)
	}
	return s.cfg.codec().Decode(b, dst)
}

// SetOwner makes owner ("user:42", "" for nobody) the owner of the session,
// which is what [Session.ListOwned] and [Session.DestroyOwned] look up. Set
// it at login, after [Session.Regenerate].
func (s *Session) SetOwner(owner string) error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if lim := s.cfg.Limits.WithDefaults(); len(owner) > lim.MaxKeyBytes {
		return fmt.Errorf("session: set owner: %w: owner is %d bytes, limit %d", ErrTooLarge, len(owner), lim.MaxKeyBytes)
	}
	s.owner = owner
	s.pending.SetOwner, s.pending.Owner = owner != s.baseOwner, owner
	return nil
}

// SetPersist chooses, for this session, a persistent cookie (kept by the
// browser until the session's deadline, across restarts) or a
// browser-session cookie (forgotten when the browser closes), overriding
// the middleware default. The choice is stored with the session.
func (s *Session) SetPersist(persist bool) error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	v := []byte("0")
	if persist {
		v = []byte("1")
	}
	if old, ok := s.vals[persistKey]; ok && string(old) == string(v) {
		return nil
	}
	return s.setRaw(persistKey, v)
}

// SetTimeouts gives the session a new idle timeout and a new absolute
// lifetime counted from the commit; zero keeps the current value. Use it
// for "remember me" (see [Session.RememberMe]) or to shorten a sensitive
// session.
func (s *Session) SetTimeouts(idleTimeout, lifetime time.Duration) error {
	if idleTimeout < 0 || lifetime < 0 {
		return fmt.Errorf("session: set timeouts: %w: negative timeout", ErrInvalid)
	}
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if idleTimeout > 0 {
		s.pending.IdleTimeout = idleTimeout
		s.idleTimeout = idleTimeout
	}
	if lifetime > 0 {
		s.pending.Lifetime = lifetime
		s.absDeadline = s.cfg.now().Add(lifetime)
	}
	return nil
}

// RememberMe is the "keep me signed in" choice at login: a persistent
// cookie, and a session that lasts d from now whether or not it is used in
// between (idle timeout and lifetime both d).
func (s *Session) RememberMe(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("session: remember me: %w: non-positive duration", ErrInvalid)
	}
	if err := s.SetPersist(true); err != nil {
		return err
	}
	return s.SetTimeouts(d, d)
}

// Touch asks for the session's idle deadline to be extended with this
// request even though nothing else changed (the middleware otherwise
// touches at most once per its TouchAfter).
func (s *Session) Touch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status == StatusNew || s.status == StatusStored {
		s.touch = true
	}
}

// Regenerate gives the session a new ID and keeps its data: call it when
// the privilege level changes (login), so an ID an attacker planted or
// observed before is worthless afterwards (session fixation). The rename
// is committed atomically with the request's other changes; the old ID
// stops working in the same step.
func (s *Session) Regenerate() error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	s.regenerateLocked()
	return nil
}

func (s *Session) regenerateLocked() {
	if s.status == StatusNew {
		s.id = s.cfg.newID()
		return
	}
	s.renameTo = s.cfg.newID()
}

// RegenerateEmpty gives the session a new ID and starts it afresh, like
// express-session's regenerate: no values, no owner, default timeouts and
// cookie. Committed atomically as one rename, so the old ID stops working
// at once. After [Session.Destroy] it starts a new session.
func (s *Session) RegenerateEmpty() error {
	s.lock()
	defer s.mu.Unlock()
	if s.status != StatusStored {
		s.startNew()
		s.id = s.cfg.newID()
		return nil
	}
	s.regenerateLocked()
	now := s.cfg.now()
	s.vals, s.owned, s.size = map[string][]byte{}, true, 0
	s.owner = ""
	s.pending = Delta{Clear: true, SetOwner: true, IdleTimeout: s.cfg.idleTimeout(), Lifetime: s.cfg.lifetime()}
	s.idleTimeout = s.pending.IdleTimeout
	s.absDeadline = now.Add(s.pending.Lifetime)
	return nil
}

// ---- committing ----

// Save commits the request's changes now instead of when the response
// starts: before a redirect to another instance, or before a long streamed
// body. A new session is created even when empty. A stored session with
// nothing to commit is left alone.
func (s *Session) Save(ctx context.Context) error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if s.status == StatusStored && !s.modifiedLocked() {
		return nil
	}
	_, err := s.commitLocked(ctx, nil)
	return err
}

// Incr adds delta to the integer under key (absent counts as 0) and
// returns the new value. The store computes the sum, and Incr commits at
// once together with the request's other pending changes, so concurrent
// requests never lose an increment. A value that is not an integer gives
// an error wrapping [ErrNotInteger]; the pending changes then stay
// pending.
func (s *Session) Incr(ctx context.Context, key string, delta int64) (int64, error) {
	if err := s.checkKey(key); err != nil {
		return 0, fmt.Errorf("session: incr: %w", err)
	}
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return 0, err
	}
	res, err := s.commitLocked(ctx, &Op{Kind: OpIncr, Key: key, Delta: delta})
	if err != nil {
		return 0, err
	}
	var n int64
	if len(res.Values) > 0 {
		n = res.Values[len(res.Values)-1]
	}
	s.putView(key, strconv.AppendInt(nil, n, 10))
	return n, nil
}

// CompareAndSwap stores new under key if the stored value equals old (nil
// old: if key is absent), comparing encoded values inside the store, and
// commits at once together with the request's other pending changes. It
// returns false, nil when the comparison fails; the pending changes then
// stay pending, and [Session.Reload] shows the current value.
func (s *Session) CompareAndSwap(ctx context.Context, key string, old, new any) (bool, error) {
	if err := s.checkKey(key); err != nil {
		return false, fmt.Errorf("session: compare and swap: %w", err)
	}
	op := Op{Kind: OpCAS, Key: key}
	var err error
	if old != nil {
		if op.Old, err = s.cfg.codec().Encode(old); err != nil {
			return false, fmt.Errorf("session: compare and swap %q: %w", key, err)
		}
	}
	if op.Value, err = s.cfg.codec().Encode(new); err != nil {
		return false, fmt.Errorf("session: compare and swap %q: %w", key, err)
	}
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return false, err
	}
	if _, err := s.commitLocked(ctx, &op); err != nil {
		if errors.Is(err, ErrCASFailed) {
			return false, nil
		}
		return false, err
	}
	s.putView(key, op.Value)
	return true, nil
}

// putView records a committed value in the request's view.
func (s *Session) putView(key string, b []byte) {
	s.own()
	s.size += len(b) - len(s.vals[key])
	if _, ok := s.vals[key]; !ok {
		s.size += len(key)
	}
	s.vals[key] = b
}

func (s *Session) modifiedLocked() bool {
	return s.touch || s.renameTo != "" || !s.pending.Empty()
}

// commitLocked commits the pending changes plus extra (when not nil) in one
// Change. On success the pending changes are gone and the session is
// stored; on failure they stay pending, except that an update rejected as
// not found turns the session [StatusGone].
func (s *Session) commitLocked(ctx context.Context, extra *Op) (Result, error) {
	c := Change{ID: s.id, RenameTo: s.renameTo, Delta: s.pending}
	if extra != nil {
		c.Ops = append(c.Ops[:len(c.Ops):len(c.Ops)], *extra)
	}
	if s.status == StatusNew {
		c.Create = true
		if c.IdleTimeout <= 0 {
			c.IdleTimeout = s.cfg.idleTimeout()
		}
		if c.Lifetime <= 0 {
			c.Lifetime = s.cfg.lifetime()
		}
	}
	var (
		res Result
		err error
	)
	// A generated ID is practically never taken; a custom generator's might
	// be, and a new session can simply take another.
	for attempt := 0; ; attempt++ {
		if c.Create && (c.ID == "" || attempt > 0) {
			s.id = s.cfg.newID()
			c.ID = s.id
		}
		res, err = s.cfg.Store.Commit(ctx, &c)
		if !(c.Create && errors.Is(err, ErrExists) && attempt < 2) {
			break
		}
	}
	if err != nil {
		if !c.Create && errors.Is(err, ErrNotFound) {
			s.status = StatusGone
			s.pending, s.touch, s.renameTo = Delta{}, false, ""
		}
		return res, fmt.Errorf("session: commit: %w", err)
	}
	now := s.cfg.now()
	s.status = StatusStored
	if s.renameTo != "" {
		s.id, s.renameTo = s.renameTo, ""
	}
	if res.Index > s.index {
		s.index = res.Index
	}
	s.lastSeen = now
	if c.Lifetime > 0 {
		s.absDeadline = now.Add(c.Lifetime)
	}
	if c.IdleTimeout > 0 {
		s.idleTimeout = c.IdleTimeout
	}
	s.baseOwner = s.owner
	s.pending, s.touch = Delta{}, false
	return res, nil
}

// Reload reads the session again from the store, to see what concurrent
// requests committed, and lays this request's uncommitted changes over it
// (unlike express-session, which drops them). A session destroyed
// meanwhile returns an error wrapping [ErrNotFound] and becomes
// [StatusGone]. A new session is left alone.
func (s *Session) Reload(ctx context.Context) error {
	s.lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	if s.status != StatusStored {
		return nil
	}
	rec, err := s.cfg.Store.Load(ctx, s.id, LoadOptions{Level: s.cfg.Level, MinIndex: s.index, Wait: s.cfg.Wait})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			s.status = StatusGone
			s.pending, s.touch, s.renameTo = Delta{}, false, ""
		}
		return fmt.Errorf("session: reload: %w", err)
	}
	s.setBase(rec)
	if s.pending.Clear {
		s.vals, s.owned, s.size = map[string][]byte{}, true, 0
	}
	for _, op := range s.pending.Ops {
		s.own()
		switch op.Kind {
		case OpSet:
			s.putView(op.Key, op.Value)
		case OpDelete:
			if v, ok := s.vals[op.Key]; ok {
				s.size -= len(op.Key) + len(v)
				delete(s.vals, op.Key)
			}
		}
	}
	if s.pending.SetOwner {
		s.owner = s.pending.Owner
	}
	if s.pending.IdleTimeout > 0 {
		s.idleTimeout = s.pending.IdleTimeout
	}
	if s.pending.Lifetime > 0 {
		s.absDeadline = s.cfg.now().Add(s.pending.Lifetime)
	}
	return nil
}

// Destroy deletes the session from the store at once (logout): its ID
// stops working everywhere, and a request still in flight cannot bring it
// back. Afterwards changes return [ErrDestroyed] and the middleware expires
// the cookie. On error the session is unchanged.
func (s *Session) Destroy(ctx context.Context) error {
	s.lock()
	defer s.mu.Unlock()
	switch s.status {
	case StatusDestroyed, StatusGone:
		return nil
	case StatusNew:
		s.status = StatusDestroyed
		return nil
	}
	res, err := s.cfg.Store.Commit(ctx, &Change{ID: s.id, Destroy: true})
	if err != nil {
		return fmt.Errorf("session: destroy: %w", err)
	}
	s.destroyedLocked(res.Index)
	return nil
}

func (s *Session) destroyedLocked(index uint64) {
	s.status = StatusDestroyed
	if index > s.index {
		s.index = index
	}
	s.renameTo = ""
	s.pending, s.touch = Delta{}, false
	s.vals, s.owned, s.size = map[string][]byte{}, true, 0
}

func (s *Session) ownerStore() (OwnerStore, error) {
	os, ok := s.cfg.Store.(OwnerStore)
	if !ok {
		return nil, fmt.Errorf("session: store %T does not index owners: %w", s.cfg.Store, errors.ErrUnsupported)
	}
	return os, nil
}

// ListOwned returns the live sessions of this session's owner, oldest
// first, marking this one Current ("list my sessions"). A session without
// owner gets an empty list. It needs a store that implements [OwnerStore]
// (else an error wrapping [errors.ErrUnsupported]).
func (s *Session) ListOwned(ctx context.Context) ([]OwnedSession, error) {
	s.lock()
	defer s.mu.Unlock()
	os, err := s.ownerStore()
	if err != nil {
		return nil, err
	}
	if s.owner == "" || s.status == StatusDestroyed || s.status == StatusGone {
		return []OwnedSession{}, nil
	}
	infos, err := os.ListOwner(ctx, s.owner, LoadOptions{Level: s.cfg.Level, MinIndex: s.index, Wait: s.cfg.Wait})
	if err != nil {
		return nil, fmt.Errorf("session: list owned: %w", err)
	}
	var cur Key
	if s.status == StatusStored {
		cur = KeyOf(s.id)
	}
	out := make([]OwnedSession, len(infos))
	for i, in := range infos {
		out[i] = OwnedSession{Info: in, Current: s.status == StatusStored && in.Key == cur}
	}
	return out, nil
}

// DestroyOwned destroys every session of this session's owner ("log out
// everywhere") and returns how many the store destroyed. With keepCurrent
// this session survives (for example "log out my other devices");
// otherwise it is destroyed too, as by [Session.Destroy]. A session
// without owner returns an error wrapping [ErrInvalid]. It needs a store
// that implements [OwnerStore] (else an error wrapping
// [errors.ErrUnsupported]).
func (s *Session) DestroyOwned(ctx context.Context, keepCurrent bool) (int, error) {
	s.lock()
	defer s.mu.Unlock()
	os, err := s.ownerStore()
	if err != nil {
		return 0, err
	}
	if err := s.writable(); err != nil {
		return 0, err
	}
	if s.owner == "" {
		return 0, fmt.Errorf("session: destroy owned: %w: session has no owner", ErrInvalid)
	}
	except := ""
	if keepCurrent && s.status == StatusStored {
		except = s.id
	}
	n, index, err := os.DestroyOwner(ctx, s.owner, except)
	if err != nil {
		return 0, fmt.Errorf("session: destroy owned: %w", err)
	}
	if index > s.index {
		s.index = index
	}
	if keepCurrent {
		return n, nil
	}
	if s.status == StatusStored && s.baseOwner != s.owner {
		// The store did not know this session as the owner's yet.
		res, err := s.cfg.Store.Commit(ctx, &Change{ID: s.id, Destroy: true})
		if err != nil {
			return n, fmt.Errorf("session: destroy owned: %w", err)
		}
		index = res.Index
	}
	s.destroyedLocked(index)
	return n, nil
}

// ---- middleware-facing state ----

// Status reports where the session stands with respect to the store.
// Middleware-facing.
func (s *Session) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Modified reports whether the request has changes not committed yet
// (including a rename or an explicit [Session.Touch]). Middleware-facing.
func (s *Session) Modified() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modifiedLocked()
}

// Index returns the store index of this client's last acknowledged write:
// the cookie's token, advanced by every commit. Middleware-facing.
func (s *Session) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// LastSeen returns when the session was last committed or touched, as far
// as this request knows. Middleware-facing (for rate-limited touches).
func (s *Session) LastSeen() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeen
}

// Expiry returns when the session ends unless it is touched again: the
// earlier of its idle and absolute deadlines, estimated with the
// [Config.Now] clock. Middleware-facing (the persistent cookie's expiry).
func (s *Session) Expiry() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	idle := s.lastSeen.Add(s.idleTimeout)
	if s.absDeadline.Before(idle) {
		return s.absDeadline
	}
	return idle
}

// Persistent reports whether the session's cookie should outlive the
// browser session: [Session.SetPersist] if called, else [Config.Persist].
// Middleware-facing.
func (s *Session) Persistent() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.vals[persistKey]; ok {
		return string(v) == "1"
	}
	return s.cfg.Persist
}

// Used reports whether the handler has read or changed the session, which
// makes the response depend on the cookie (Vary: Cookie).
// Middleware-facing.
func (s *Session) Used() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// CommitForResponse is the middleware's commit before the response
// starts. It commits when the request changed something, when touch is
// true (the middleware's TouchAfter or Resave rule), or, for a new
// session, when create is true (SaveUninitialized). It returns whether it
// committed. An update rejected because a concurrent request destroyed or
// regenerated the session leaves the session [StatusGone] and returns
// false, nil: the request's changes are dropped, and no cookie must be
// sent. Middleware-facing.
func (s *Session) CommitForResponse(ctx context.Context, touch, create bool) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.status {
	case StatusStored:
		if !s.modifiedLocked() && !touch {
			return false, nil
		}
	case StatusNew:
		if !s.modifiedLocked() && !create {
			return false, nil
		}
	default:
		return false, nil
	}
	if _, err := s.commitLocked(ctx, nil); err != nil {
		if s.status == StatusGone {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
