package ginsessions

import (
	"github.com/gin-contrib/sessions"

	"github.com/raftsession/raftsession/adapter/gorillastore"
	"github.com/raftsession/raftsession/session"
)

// Store is a gin-contrib/sessions Store.
type Store interface {
	sessions.Store
}

type store struct {
	*gorillastore.Store
}

// NewStore returns a Store over st. keyPairs are securecookie key pairs
// as for gin-contrib's cookie and redis stores; without them the Store
// uses st's cookie secrets when st offers them (a cluster's replicated
// keyring) and otherwise a random key of this process.
func NewStore(st session.Store, keyPairs ...[]byte) (Store, error) {
	gs, err := gorillastore.NewStore(st, keyPairs...)
	if err != nil {
		return nil, err
	}
	return &store{gs}, nil
}

// Options replaces the default options of new sessions.
func (s *store) Options(o sessions.Options) {
	s.Store.Options = o.ToGorillaOptions()
}
