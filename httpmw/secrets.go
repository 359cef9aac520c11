package httpmw

import (
	"crypto/rand"
	"errors"

	"github.com/raftsession/raftsession/session"
)

// SecretSource is implemented by stores that keep the cookie secrets
// themselves, so that every instance of an application signs and verifies
// with the same keys without configuring any: cluster.Store serves its
// replicated keyring this way. A [Manager] without [Options.Secrets] over
// such a store follows it.
type SecretSource interface {
	// CookieSecrets returns the secrets as [Options.Secrets] orders them
	// (the first signs, every one verifies) and a channel that is closed
	// when they may have changed; the Manager then asks again. It must not
	// block. It returns no secrets while the store has none yet (a new
	// cluster before its first leader made one); the Manager then answers
	// requests with [ErrNoSecrets].
	CookieSecrets() (secrets [][]byte, changed <-chan struct{})
}

// ErrNoSecrets is what a Manager following a [SecretSource] reports, through
// [Options.ErrorHandler] (503 by [StatusCode]), for requests that arrive
// before the source has any secret.
var ErrNoSecrets = errors.New("httpmw: no cookie secret yet")

// sourceState is the channel that tells a Manager its source's secrets
// changed since it last asked.
type sourceState struct{ changed <-chan struct{} }

// initSecrets gives m its first secrets: Options.Secrets when set, else
// the store's when it is a SecretSource, else a random secret of this
// process.
func (m *Manager) initSecrets() {
	if len(m.opt.Secrets) > 0 {
		m.cookie.Store(newCookieCodec(m.opt.CookieName, m.opt.Secrets))
		return
	}
	if src, ok := m.store.(SecretSource); ok {
		m.source = src
		m.pullSecrets(nil)
		return
	}
	if _, ok := m.store.(*session.MemoryStore); !ok {
		m.opt.Logger.Warn("httpmw: no Options.Secrets and the store keeps none: cookies are signed with a random secret of this process, so other instances and a restarted one will not accept them")
	}
	secret := make([]byte, MinSecretLen)
	_, _ = rand.Read(secret) // never fails since Go 1.24 (it crashes instead)
	m.cookie.Store(newCookieCodec(m.opt.CookieName, [][]byte{secret}))
}

// codec returns the cookie codec a request starts with, or nil while a
// source has no secret. With a source it first checks, without blocking,
// whether the source's secrets changed.
func (m *Manager) codec() *cookieCodec {
	if st := m.sourced.Load(); st != nil {
		select {
		case <-st.changed:
			m.pullSecrets(st)
		default:
		}
	}
	return m.cookie.Load()
}

// pullSecrets asks the source for its secrets, unless another request
// already did since seen (the state whose channel closed) was current.
// Secrets the source gets wrong are logged and the old ones kept.
func (m *Manager) pullSecrets(seen *sourceState) {
	m.srcMu.Lock()
	defer m.srcMu.Unlock()
	if seen != nil && m.sourced.Load() != seen {
		return
	}
	secrets, changed := m.source.CookieSecrets()
	switch cp, err := copySecrets(secrets); {
	case len(secrets) == 0:
		m.cookie.Store(nil)
	case err != nil:
		m.opt.Logger.Error("httpmw: the store's cookie secrets are unusable; keeping the previous ones", "err", err)
	default:
		m.cookie.Store(newCookieCodec(m.opt.CookieName, cp))
	}
	m.sourced.Store(&sourceState{changed: changed})
}
