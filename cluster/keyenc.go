package cluster

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/raftsession/raftsession/fsm"
)

// keyringCipher encrypts cookie-signing secrets before they enter the raft
// log, so that the log, snapshots and anything that copies them hold no
// usable signing key. Each cluster key derives its own AES-256-GCM key;
// the first one encrypts, all of them decrypt.
//
// A sealed secret is: magic (4) | fingerprint of the cluster key (4) |
// nonce (12) | ciphertext and tag. The signing key's ID is bound as
// additional data, so a sealed secret cannot be moved to another ID.
type keyringCipher struct {
	aeads []keyAEAD
}

type keyAEAD struct {
	fp   [4]byte
	aead cipher.AEAD
}

var sealedMagic = []byte("rsk1")

const sealedOverhead = 4 + 4 + 12 + 16

// errUnsealable means no configured cluster key opens a sealed secret.
var errUnsealable = errors.New("cluster: signing key sealed with a cluster key this node does not have")

func newKeyringCipher(clusterKeys [][]byte) (*keyringCipher, error) {
	if len(clusterKeys) == 0 {
		return nil, nil
	}
	c := &keyringCipher{}
	for _, k := range clusterKeys {
		block, err := aes.NewCipher(deriveKey(k, labelKeyring, 32))
		if err != nil {
			return nil, fmt.Errorf("cluster: keyring cipher: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("cluster: keyring cipher: %w", err)
		}
		var a keyAEAD
		h := sha256.Sum256(deriveKey(k, labelKeyring+" fingerprint", 32))
		copy(a.fp[:], h[:4])
		a.aead = aead
		c.aeads = append(c.aeads, a)
	}
	return c, nil
}

// seal encrypts secret for the signing key id with the first cluster key.
// A nil cipher (no cluster key) stores secrets as they are.
func (c *keyringCipher) seal(id string, secret []byte) ([]byte, error) {
	if c == nil {
		return secret, nil
	}
	a := c.aeads[0]
	out := make([]byte, 0, sealedOverhead+len(secret))
	out = append(out, sealedMagic...)
	out = append(out, a.fp[:]...)
	nonce := make([]byte, a.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return a.aead.Seal(out, nonce, secret, []byte(id)), nil
}

// open returns the secret of a keyring entry: decrypted when sealed,
// as stored when it was added without a cluster key.
func (c *keyringCipher) open(id string, stored []byte) ([]byte, error) {
	if len(stored) < sealedOverhead || !bytes.Equal(stored[:4], sealedMagic) {
		return stored, nil
	}
	if c == nil {
		return nil, errUnsealable
	}
	for _, a := range c.aeads {
		if !bytes.Equal(stored[4:8], a.fp[:]) {
			continue
		}
		secret, err := a.aead.Open(nil, stored[8:20], stored[20:], []byte(id))
		if err != nil {
			return nil, fmt.Errorf("cluster: signing key %q: %w", id, err)
		}
		return secret, nil
	}
	return nil, errUnsealable
}

// openKeys decrypts a keyring, leaving out (and logging) entries no
// configured cluster key opens.
func (n *Node) openKeys(keys []fsm.SigningKey) []fsm.SigningKey {
	out := make([]fsm.SigningKey, 0, len(keys))
	for _, k := range keys {
		secret, err := n.keyCipher.open(k.ID, k.Secret)
		if err != nil {
			n.mux.log.Warn("keyring-open", "cannot use a replicated signing key", "key_id", k.ID, "err", err)
			continue
		}
		k.Secret = secret
		out = append(out, k)
	}
	return out
}

// sealedWithFirst reports whether stored is sealed with the first
// (encrypting) cluster key.
func (c *keyringCipher) sealedWithFirst(stored []byte) bool {
	return len(stored) >= sealedOverhead && bytes.Equal(stored[:4], sealedMagic) &&
		bytes.Equal(stored[4:8], c.aeads[0].fp[:])
}

// resealKeyring, run by the leader, re-encrypts every signing key that is
// not sealed with this node's ClusterKey: keys added before the cluster
// had a key, or under the previous key of a rolling key change. Once every
// node uses the new key, the old one can be dropped without losing a
// signing key. A reseal keeps each key's place and age.
func (n *Node) resealKeyring() {
	if n.keyCipher == nil {
		return
	}
	for _, k := range n.fsm.SigningKeys() {
		if n.keyCipher.sealedWithFirst(k.Secret) {
			continue
		}
		secret, err := n.keyCipher.open(k.ID, k.Secret)
		if err != nil {
			n.mux.log.Warn("keyring-open", "cannot reseal a replicated signing key", "key_id", k.ID, "err", err)
			continue
		}
		sealed, err := n.keyCipher.seal(k.ID, secret)
		if err != nil {
			n.log.Warn("reseal signing key", "key_id", k.ID, "err", err)
			return
		}
		if _, err := n.raftApply(fsm.EncodeResealSigningKey(k.ID, sealed), n.cfg.CommitTimeout); err != nil {
			n.log.Debug("reseal signing key not committed", "key_id", k.ID, "err", err)
			return
		}
		n.log.Info("resealed signing key under the current cluster key", "key_id", k.ID)
	}
}
