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
