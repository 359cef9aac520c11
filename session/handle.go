package session

import (
	"context"
	"time"
)

// Handle is the middleware's side of one request's session. [Open] returns
// it; the middleware hands [Handle.Session] to the handler (httpmw puts it
// in the request context) and keeps the Handle for what only the
// middleware needs: where the session stands in the store, the index and
// expiry its cookie carries, whether the response depends on it, and the
// commit before the response starts. Handlers never see a Handle, so the
// [Session] they get offers exactly the handler API.
//
// A Handle and its Session are safe for concurrent use; they share one
// lock.
type Handle struct {
	s Session
}

// Session returns the handler's view of the session: the value to put in
// the request context. It is the same Session on every call.
func (h *Handle) Session() *Session { return &h.s }

// Status reports where the session stands with respect to the store.
func (h *Handle) Status() Status {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.s.status
}

// Modified reports whether the request has changes not committed yet
// (including a rename or an explicit [Session.Touch]). After the response
// has started, such changes can no longer be committed.
func (h *Handle) Modified() bool {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.s.modifiedLocked()
}

// Index returns the store index of this client's last acknowledged write:
// the cookie's token, advanced by every commit.
func (h *Handle) Index() uint64 {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.s.index
}

// LastSeen returns when the session was last committed or touched, as far
// as this request knows: what the middleware's rate-limited touches
// compare with.
func (h *Handle) LastSeen() time.Time {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.s.lastSeen
}

// Expiry returns when the session ends unless it is touched again: the
// earlier of its idle and absolute deadlines, estimated with the
// [Config.Now] clock. It is the persistent cookie's expiry.
func (h *Handle) Expiry() time.Time {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	idle := h.s.lastSeen.Add(h.s.idleTimeout)
	if h.s.absDeadline.Before(idle) {
		return h.s.absDeadline
	}
	return idle
}

// Persistent reports whether the session's cookie should outlive the
// browser session: [Session.SetPersist] if called, else [Config.Persist].
func (h *Handle) Persistent() bool {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if v, ok := h.s.lookup(persistKey); ok {
		return string(v) == "1"
	}
	return h.s.cfg.Persist
}

// Used reports whether the handler has read or changed the session, which
// makes the response depend on the cookie (Vary: Cookie). The Handle's own
// methods do not count.
func (h *Handle) Used() bool {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.s.used
}

// CommitForResponse is the middleware's commit before the response
// starts. It commits when the request changed something, when touch is
// true (the middleware's TouchAfter or Resave rule), or, for a new
// session, when create is true (SaveUninitialized). It returns whether it
// committed. An update rejected because a concurrent request destroyed or
// regenerated the session leaves the session [StatusGone] and returns
// false, nil: the request's changes are dropped, and no cookie must be
// sent.
func (h *Handle) CommitForResponse(ctx context.Context, touch, create bool) (bool, error) {
	s := &h.s
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
