package scsstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/raftsession/raftsession/session"
)

var (
	_ scs.Store    = (*Store)(nil)
	_ scs.CtxStore = (*Store)(nil)
)

// blobKey is the value under which a session's scs blob is stored.
const blobKey = "scs"

// DefaultInFlight is the default of [Store.InFlight].
const DefaultInFlight = 10 * time.Minute

// ErrEnded is wrapped by CommitCtx's error when the session was destroyed,
// renewed or expired while the committing request was in flight. It also
// wraps session.ErrNotFound, so httpmw.StatusCode answers 409 Conflict.
// scs then calls its ErrorFunc and sends no cookie, which leaves alone the
// fresh cookie a concurrent login may have set.
var ErrEnded = fmt.Errorf("scsstore: the session ended while this request ran: %w", session.ErrNotFound)

// Store keeps scs sessions in a session.Store. It is safe for concurrent
// use. Set its fields before the first request.
//
// # Commit is create-or-update; a destroyed token stays destroyed
//
// scs's Commit means "create or overwrite", while a raftsession store
// creates and updates with different changes and refuses to update a
// session that is gone. A Store tells the two cases apart by what scs
// does: it commits a token it did not just generate only after finding it
// with Find in the same request, in the same process. A Store therefore
// remembers the tokens Find returned for [Store.InFlight]; Commit updates
// such a token and never re-creates it, so a commit that arrives after the
// session was destroyed (on any instance) fails with [ErrEnded] instead of
// bringing the session back. Any other token is new and is created.
//
// This memory replaces tombstones in the replicated state: it costs one
// small map entry per session this process read in the last one or two
// InFlight periods, instead of a record per destroyed session on every
// replica until the session's old deadline. A request that takes longer
// than InFlight between loading and saving the session could re-create a
// session destroyed meanwhile; raise InFlight above the longest request.
type Store struct {
	// Level is how fresh Find's reads are. Default (New)
	// session.Linearizable: scs's cookie carries no write index, so this
	// is what makes a session written through one instance visible to the
	// next request on any other. session.Local is cheaper and may miss a
	// write made a moment earlier elsewhere.
	Level session.Level
	// InFlight is how long a token found by Find is remembered as stored
	// (see above). Default (zero or New) DefaultInFlight.
	InFlight time.Duration

	st  session.Store
	now func() time.Time

	mu      sync.Mutex
	seen    map[session.Key]struct{} // found in the current period
	older   map[session.Key]struct{} // found in the previous period
	rotated time.Time                // start of the current period
}

// New returns a Store over st with the defaults above.
func New(st session.Store) *Store {
	return &Store{Level: session.Linearizable, InFlight: DefaultInFlight, st: st, now: time.Now}
}

// Find implements scs.Store with a background context.
func (s *Store) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// Commit implements scs.Store with a background context.
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// Delete implements scs.Store with a background context.
func (s *Store) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}

// FindCtx implements scs.CtxStore: the session's blob, or found false when
// there is no live session under token.
func (s *Store) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	if token == "" {
		return nil, false, nil
	}
	rec, err := s.st.Load(ctx, token, session.LoadOptions{Level: s.Level})
	switch {
	case errors.Is(err, session.ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("scsstore: find: %w", err)
	}
	b, ok := rec.Values.Lookup(blobKey)
	if !ok {
		// A session written by another API (httpmw) is not an scs session.
		return nil, false, nil
	}
	s.remember(token)
	return b, true, nil
}

// CommitCtx implements scs.CtxStore: it stores b under token until expiry,
// creating the session when token is new and updating it when Find found
// it. It fails with [ErrEnded] when a found session has ended meanwhile.
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	stored := s.known(token)
	ttl := expiry.Sub(s.now())
	if ttl <= 0 {
		// Already expired: scs's own stores keep it unfindable; so does
		// removing it.
		if stored {
			return s.DeleteCtx(ctx, token)
		}
		return nil
	}
	delta := session.Delta{Ops: []session.Op{{Kind: session.OpSet, Key: blobKey, Value: b}}, IdleTimeout: ttl, Lifetime: ttl}
	if !stored {
		_, err := s.st.Commit(ctx, &session.Change{ID: token, Create: true, Delta: delta})
		if !errors.Is(err, session.ErrExists) {
			if err != nil {
				return fmt.Errorf("scsstore: commit: %w", err)
			}
			s.remember(token)
			return nil
		}
		// Taken: a session scs generated the token for, committed by an
		// earlier request of this process that Find has not seen; update
		// it.
	}
	_, err := s.st.Commit(ctx, &session.Change{ID: token, Delta: delta})
	switch {
	case errors.Is(err, session.ErrNotFound):
		return ErrEnded
	case err != nil:
		return fmt.Errorf("scsstore: commit: %w", err)
	}
	return nil
}

// DeleteCtx implements scs.CtxStore: the session stops working on every
// instance before DeleteCtx returns. Deleting an absent token is not an
// error.
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	if token == "" {
		return nil
	}
	if _, err := s.st.Commit(ctx, &session.Change{ID: token, Destroy: true}); err != nil {
		return fmt.Errorf("scsstore: delete: %w", err)
	}
	return nil
}

// remember notes that token names a stored session.
func (s *Store) remember(token string) {
	k := session.KeyOf(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotateLocked()
	s.seen[k] = struct{}{}
}

// known reports whether token was found or created within the last
// InFlight.
func (s *Store) known(token string) bool {
	k := session.KeyOf(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rotateLocked()
	_, ok := s.seen[k]
	if !ok {
		_, ok = s.older[k]
	}
	return ok
}

// rotateLocked starts a new period when the current one is InFlight old,
// dropping the tokens of the period before: every token stays known for
// at least InFlight after it was last found.
func (s *Store) rotateLocked() {
	now, period := s.now(), s.InFlight
	if period <= 0 {
		period = DefaultInFlight
	}
	if s.seen != nil && now.Sub(s.rotated) < period {
		return
	}
	if s.seen != nil && now.Sub(s.rotated) < 2*period {
		s.older = s.seen
	} else {
		s.older = nil
	}
	s.seen = make(map[session.Key]struct{})
	s.rotated = now
}
