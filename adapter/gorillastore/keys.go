package gorillastore

import (
	"crypto/rand"
	"errors"
	"sync"

	"github.com/gorilla/securecookie"

	"github.com/raftsession/raftsession/httpmw"
	"github.com/raftsession/raftsession/session"
)

// keys are the securecookie codecs of a Store: fixed key pairs, or the
// secrets of an httpmw.SecretSource followed as they change.
type keys struct {
	pairs  [][]byte
	source httpmw.SecretSource

	mu      sync.Mutex
	changed <-chan struct{}
	secrets [][]byte
}

func newKeys(st session.Store, pairs [][]byte) (*keys, error) {
	for i := 0; i < len(pairs); i += 2 {
		if len(pairs[i]) == 0 {
			return nil, errors.New("gorillastore: empty authentication key")
		}
	}
	k := &keys{pairs: pairs}
	if len(pairs) > 0 {
		return k, nil
	}
	if src, ok := st.(httpmw.SecretSource); ok {
		k.source = src
		return k, nil
	}
	secret := make([]byte, httpmw.MinSecretLen)
	_, _ = rand.Read(secret) // never fails since Go 1.24 (it crashes instead)
	k.pairs = [][]byte{secret, nil}
	return k, nil
}

// codecs returns codecs whose timestamps are valid for maxAge seconds
// (gorilla's stores do the same through MaxAge; 0 means no limit). With a
// source and no secret yet it returns none, and securecookie then fails to
// encode and decode: the request gets a new, unsaved session and an
// error.
func (k *keys) codecs(maxAge int) []securecookie.Codec {
	pairs := k.pairs
	if k.source != nil {
		pairs = k.sourcePairs()
	}
	out := securecookie.CodecsFromPairs(pairs...)
	for _, c := range out {
		if sc, ok := c.(*securecookie.SecureCookie); ok {
			sc.MaxAge(max(maxAge, 0))
		}
	}
	return out
}

// sourcePairs returns the source's secrets as authentication-only pairs,
// asking the source again only after it signalled a change.
func (k *keys) sourcePairs() [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	fresh := k.changed == nil
	if !fresh {
		select {
		case <-k.changed:
			fresh = true
		default:
		}
	}
	if fresh {
		k.secrets, k.changed = k.source.CookieSecrets()
	}
	pairs := make([][]byte, 0, 2*len(k.secrets))
	for _, s := range k.secrets {
		pairs = append(pairs, s, nil)
	}
	return pairs
}
