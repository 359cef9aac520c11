package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/raftsession/raftsession/fsm"
)

// Cookie-signing keys without configuration.
//
// The keys that sign session cookies live in the replicated state machine,
// so every node signs and verifies with the same ones: the first leader
// that finds the keyring empty generates a key, and an httpmw.Manager over
// [Node.Store] follows the keyring through [Store.CookieSecrets]. Every
// node verifies cookies with all replicated keys.
//
// [Node.RotateSigningKey] adds a new key, which becomes primary, and
// retires every key older than the two newest: a cookie keeps working
// across one rotation (it is re-signed with the new key on its next
// request) and stops at the second. Rotate less often than the session
// lifetime and nobody is logged out.
//
// A new primary key reaches each replica a moment after it is committed.
// So that a cookie signed with it is never shown to a node that does not
// know it yet, nodes keep signing with the previous key until the new one
// is SigningKeyGrace old (by the leader's clock, which stamps
// fsm.SigningKey.Added).

// SigningKeyGrace is how long after a rotation nodes keep signing with
// the previous key, so that every replica has the new key before any
// cookie signed with it exists.
const SigningKeyGrace = 5 * time.Second

const (
	signingKeyBytes = 32
	keepSigningKeys = 2
	keyOpTimeout    = 5 * time.Second
	keyRetry        = time.Second
)

// ErrRotateTooSoon refuses a rotation while the previous one is within its
// grace period: its key has not started signing yet, so the key that
// signs now would be retired together with the cookies it signed.
var ErrRotateTooSoon = errors.New("cluster: the previous signing key rotation is still propagating; try again in a few seconds")

// CookieSecrets returns the replicated cookie-signing secrets, the one
// that signs now first, and a channel closed when that may change: when
// the keyring changes, and when a new primary key ends its
// SigningKeyGrace and starts signing. It is how an httpmw.Manager without
// Options.Secrets follows the keyring (httpmw.SecretSource). It returns no
// secrets until the cluster's first leader has created a key.
func (s *Store) CookieSecrets() ([][]byte, <-chan struct{}) {
	// The channel is taken before the keys, so a change in between closes
	// it instead of going unnoticed.
	changed := s.n.fsm.KeyringChanged()
	keys := s.SigningKeys()
	now := time.Now()
	ordered := signOrder(keys, now)
	secrets := make([][]byte, len(ordered))
	for i, k := range ordered {
		secrets[i] = k.Secret
	}
	if len(keys) > 1 {
		if left := keys[0].Added.Add(SigningKeyGrace).Sub(now); left > 0 {
			changed = s.n.changedOrAfter(changed, left)
		}
	}
	return secrets, changed
}

// SigningKeyID returns the ID of the key that signs cookies now, or ""
// while the keyring is empty.
func (s *Store) SigningKeyID() string {
	if keys := signOrder(s.SigningKeys(), time.Now()); len(keys) > 0 {
		return keys[0].ID
	}
	return ""
}

// changedOrAfter returns a channel closed when ch is, after d, or when the
// node closes, whichever comes first.
func (n *Node) changedOrAfter(ch <-chan struct{}, d time.Duration) <-chan struct{} {
	out := make(chan struct{})
	t := time.NewTimer(d)
	go func() {
		defer close(out)
		defer t.Stop()
		select {
		case <-ch:
		case <-t.C:
		case <-n.ctx.Done():
		}
	}()
	return out
}

// WaitSigningKey blocks until the cluster has a cookie-signing key, or ctx
// ends. A new cluster has one as soon as its first leader has been elected.
func (n *Node) WaitSigningKey(ctx context.Context) error {
	for {
		changed := n.fsm.KeyringChanged()
		if len(n.fsm.SigningKeys()) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// KeyRotation is what [Node.RotateSigningKey] did.
type KeyRotation struct {
	// Primary is the ID of the new key.
	Primary string
	// Keys are the IDs of the keys kept, primary first.
	Keys []string
	// Retired are the IDs of the keys removed.
	Retired []string
}

// RotateSigningKey adds a new random cookie-signing key, which becomes
// primary (it starts signing SigningKeyGrace later), and retires every key
// but the two newest. It fails with [ErrRotateTooSoon] while the previous
// rotation is within its grace period. Any node may call it; the change
// goes through the leader.
func (n *Node) RotateSigningKey(ctx context.Context) (KeyRotation, error) {
	ctx, cancel := context.WithTimeout(ctx, keyOpTimeout)
	defer cancel()
	if keys := n.store.SigningKeys(); len(keys) > 1 && time.Since(keys[0].Added) < SigningKeyGrace {
		return KeyRotation{}, ErrRotateTooSoon
	}
	id, secret := newSigningKey()
	index, err := n.store.AddSigningKey(ctx, id, secret)
	if err != nil {
		return KeyRotation{}, err
	}
	if err := n.fsm.WaitApplied(ctx, index); err != nil {
		return KeyRotation{}, err
	}
	res := KeyRotation{Primary: id, Retired: []string{}}
	keys := n.store.SigningKeys()
	for _, old := range keys[min(keepSigningKeys, len(keys)):] {
		if _, err := n.store.RetireSigningKey(ctx, old.ID); err != nil {
			return res, err
		}
		res.Retired = append(res.Retired, old.ID)
	}
	for _, key := range keys[:min(keepSigningKeys, len(keys))] {
		res.Keys = append(res.Keys, key.ID)
	}
	n.log.Info("rotated cookie signing key", "key_id", id, "retired", len(res.Retired))
	return res, nil
}

// startSigningKeyCheck runs ensureSigningKey beside the leader's other
// duties, and returns the function that waits for it once ctx ends.
func (n *Node) startSigningKeyCheck(ctx context.Context) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.ensureSigningKey(ctx)
	}()
	return func() { <-done }
}

// ensureSigningKey creates the cluster's first cookie-signing key when the
// keyring is empty. The leader calls it once its replica has applied every
// earlier entry (after its term's no-op), so an empty keyring is the
// replicated truth and not a lagging view. Should a key be added twice
// anyway, both verify and the newer signs: no harm done.
func (n *Node) ensureSigningKey(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if len(n.store.SigningKeys()) > 0 {
			return
		}
		id, secret := newSigningKey()
		actx, cancel := context.WithTimeout(ctx, keyOpTimeout)
		_, err := n.store.AddSigningKey(actx, id, secret)
		cancel()
		if err == nil {
			n.log.Info("created the cluster's cookie signing key", "key_id", id)
			return
		}
		if attempt == 0 {
			n.log.Warn("could not create the first cookie signing key; retrying while leader", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(keyRetry):
		}
	}
}

// signOrder returns keys (primary first) reordered so that the key that
// should sign comes first: the primary, unless it is younger than
// SigningKeyGrace and an older key exists.
func signOrder(keys []fsm.SigningKey, now time.Time) []fsm.SigningKey {
	if len(keys) < 2 || now.Sub(keys[0].Added) >= SigningKeyGrace {
		return keys
	}
	out := make([]fsm.SigningKey, 0, len(keys))
	out = append(out, keys[1], keys[0])
	return append(out, keys[2:]...)
}

// newSigningKey returns a random key and an ID that says nothing about it.
func newSigningKey() (id string, secret []byte) {
	secret = make([]byte, signingKeyBytes)
	_, _ = rand.Read(secret) // never fails since Go 1.24 (it crashes instead)
	idb := make([]byte, 6)
	_, _ = rand.Read(idb)
	return "k-" + hex.EncodeToString(idb), secret
}
