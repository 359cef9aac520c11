package session

import (
	"fmt"
	"strings"
	"time"
)

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
	if lim := s.cfg.limits(); len(key) > lim.MaxKeyBytes {
		return fmt.Errorf("%w: key is %d bytes, limit %d", ErrTooLarge, len(key), lim.MaxKeyBytes)
	}
	return nil
}

// own makes vals a private copy, so this request can change it.
func (s *Session) own() {
	if s.owned {
		return
	}
	s.vals = make(map[string][]byte, s.base.Len()+1)
	for k, v := range s.base.All() {
		s.vals[k] = v
	}
	s.size = s.base.Size()
	s.base, s.owned = Values{}, true
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
	lim := s.cfg.limits()
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
	if _, ok := s.lookup(key); !ok {
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
	persist, hasPersist := s.lookup(persistKey)
	s.clearView()
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
	b, ok := s.lookup(key)
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
	if lim := s.cfg.limits(); len(owner) > lim.MaxKeyBytes {
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
	if old, ok := s.lookup(persistKey); ok && string(old) == string(v) {
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
	s.clearView()
	s.owner = ""
	s.pending = Delta{Clear: true, SetOwner: true, IdleTimeout: s.cfg.idleTimeout(), Lifetime: s.cfg.lifetime()}
	s.idleTimeout = s.pending.IdleTimeout
	s.absDeadline = now.Add(s.pending.Lifetime)
	return nil
}
