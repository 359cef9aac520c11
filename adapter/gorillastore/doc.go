// Package gorillastore is a github.com/gorilla/sessions store over a
// raftsession session.Store: a session.MemoryStore in one process, or a
// cluster's replicated store shared by every instance of an application.
// It is also the store under echo-contrib/session, and the base of
// adapter/ginsessions.
//
//	store, err := gorillastore.NewStore(node.Store())
//	sess, _ := store.Get(r, "app")
//	sess.Values["user"] = "alice"
//	err = sess.Save(r, w)
//
// The cookie carries the session ID (signed with securecookie) and the
// index of the session's last write, so the next request reads its own
// writes on any instance. Values are kept one per key, each gob-encoded
// (register your types with gob.Register, as for gorilla's own stores),
// and Save sends only the keys that changed since the session was loaded:
// two concurrent requests that change different keys both keep their
// writes. A session that another request destroyed while this one ran is
// not brought back by this one's Save (the changes are dropped and no
// cookie is sent, so a concurrent login's fresh cookie is kept).
//
// What gorilla's API cannot express: atomic increments and compare-and-set
// (a counter in Values is read, changed and written back, so concurrent
// increments of one key can be lost), and owner indexes ("log out
// everywhere"). Use the native API (httpmw, adapter/ginmw) for those.
package gorillastore
