package session

import (
	"context"
	"errors"
	"fmt"
)

// OwnedSession is one entry of [Session.ListOwned].
type OwnedSession struct {
	Info
	// Current marks the session of the request that asked.
	Current bool
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
