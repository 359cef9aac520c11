// Package ginsessions is a github.com/gin-contrib/sessions store over a
// raftsession session.Store (a MemoryStore in one process, or a cluster's
// replicated store), so a gin application keeps its session code:
//
//	store, err := ginsessions.NewStore(node.Store())
//	r.Use(sessions.Sessions("app", store))
//
// It behaves as gin-contrib's own stores do (values across requests,
// deleted keys, flashes, Clear, cookie options, several sessions; their
// shared tester suite runs against it), and adds what a replicated store
// gives: a save sends only the keys the request changed, the cookie
// carries a read-your-writes index, and a session deleted by one request
// is not brought back by another still in flight. It is built on
// adapter/gorillastore; see there for what the gorilla API cannot express
// (atomic increments, owner indexes), and adapter/ginmw for the native
// session in gin.
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
