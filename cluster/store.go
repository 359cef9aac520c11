package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/session"
)

// Store is the replicated session store of one node. Reads are served from
// the local replica (waiting for it to catch up as the requested level
// needs); writes go through the raft leader, forwarded by followers.
type Store struct{ n *Node }

var (
	_ session.Store      = (*Store)(nil)
	_ session.OwnerStore = (*Store)(nil)
	_ session.CountStore = (*Store)(nil)
)

// Load implements [session.Store].
func (s *Store) Load(ctx context.Context, id string, opt session.LoadOptions) (*session.Record, error) {
	k := session.KeyOf(id)
	var rec *session.Record
	err := s.n.read(ctx, opt, func(min uint64) []byte { return binaryAppendU64(append([]byte(nil), k[:]...), min) }, reqGet,
		func() error {
			r, ok := s.n.fsm.Get(k, time.Now())
			if !ok {
				return session.ErrNotFound
			}
			rec = r
			return nil
		},
		func(b []byte) error {
			r, err := fsm.DecodeRecord(b)
			rec = r
			return err
		})
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// ListOwner implements [session.OwnerStore].
func (s *Store) ListOwner(ctx context.Context, owner string, opt session.LoadOptions) ([]session.Info, error) {
	var infos []session.Info
	err := s.n.read(ctx, opt, func(min uint64) []byte {
		b := binaryAppendU64(nil, min)
		return append(b, owner...)
	}, reqListOwner,
		func() error { infos = s.n.fsm.ListOwner(owner, time.Now()); return nil },
		func(b []byte) error {
			var err error
			infos, err = decodeInfos(&decoder{b: b})
			return err
		})
	return infos, err
}

// Count implements [session.CountStore]: the number of sessions in the
// local replica once it has applied every write committed through this
// node (bounded by ReadWait), including expired ones not yet removed.
func (s *Store) Count(ctx context.Context) (int, error) {
	wctx, cancel := context.WithTimeout(ctx, s.n.cfg.ReadWait)
	defer cancel()
	if err := s.n.fsm.WaitApplied(wctx, s.n.lastCommitted.Load()); err != nil && ctx.Err() != nil {
		return 0, fmt.Errorf("%w: %w", session.ErrTimeout, ctx.Err())
	}
	return s.n.fsm.Len(), nil
}

// Commit implements [session.Store]. It returns once the change is
// committed and applied on the leader; the local replica may apply it a
// moment later (a read-your-writes Load with the returned index waits).
func (s *Store) Commit(ctx context.Context, c *session.Change) (session.Result, error) {
	cmd, err := fsm.EncodeChange(c)
	if err != nil {
		return session.Result{}, err
	}
	r, err := s.n.propose(ctx, cmd)
	if err != nil {
		return session.Result{}, err
	}
	if r.Err != nil {
		return session.Result{Index: r.Index}, r.Err
	}
	if c.Destroy || c.RenameTo != "" {
		// The old ID must stop working everywhere before the client hears
		// that it did.
		s.n.awaitReplicas(ctx, r.Index)
	}
	return session.Result{Index: r.Index, Values: r.Values}, nil
}

// DestroyOwner implements [session.OwnerStore].
func (s *Store) DestroyOwner(ctx context.Context, owner, except string) (int, uint64, error) {
	r, err := s.n.propose(ctx, fsm.EncodeDestroyOwner(owner, except))
	if err != nil {
		return 0, 0, err
	}
	if r.Err == nil {
		s.n.awaitReplicas(ctx, r.Index)
	}
	return r.Destroyed, r.Index, r.Err
}

// AddSigningKey replicates a new cookie-signing key, which becomes primary.
// With a cluster key, the secret is encrypted before it enters the log.
func (s *Store) AddSigningKey(ctx context.Context, id string, secret []byte) (uint64, error) {
	sealed, err := s.n.keyCipher.seal(id, secret)
	if err != nil {
		return 0, err
	}
	r, err := s.n.propose(ctx, fsm.EncodeAddSigningKey(id, sealed))
	if err != nil {
		return 0, err
	}
	return r.Index, r.Err
}

// RetireSigningKey removes a non-primary signing key.
func (s *Store) RetireSigningKey(ctx context.Context, id string) (uint64, error) {
	r, err := s.n.propose(ctx, fsm.EncodeRetireSigningKey(id))
	if err != nil {
		return 0, err
	}
	return r.Index, r.Err
}

// SigningKeys returns the replicated signing keys, primary first, with
// their secrets decrypted. A key sealed with a cluster key this node does
// not have is left out (and logged).
func (s *Store) SigningKeys() []fsm.SigningKey { return s.n.openKeys(s.n.fsm.SigningKeys()) }
