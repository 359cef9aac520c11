package session

import (
	"context"
	"time"
)

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
