package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

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
		s.clearView()
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
	s.clearView()
}
