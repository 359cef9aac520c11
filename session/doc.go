// Package session defines the server-side session model shared by every
// part of raftsession: the immutable stored [Record], the [Change] a request
// makes to it, the [Store] contract that the single-process [MemoryStore] and
// the replicated cluster store both implement, session ID generation, and the
// request-scoped [Session] that handlers read and mutate. A middleware opens
// each request's session with [Open] and keeps the returned [Handle], which
// commits the session before the response and reports what the cookie
// needs; handlers only ever get the Handle's Session.
//
// A Change is a delta, not a whole-record replacement: setting one key never
// overwrites a key another request set concurrently, and integer increments
// and compare-and-set are evaluated by the store, so concurrent requests on
// one session never lose each other's updates. An update of a session that no
// longer exists is rejected, so a request that was in flight when the user
// logged out cannot bring the session back.
//
// The package depends on the standard library only.
package session
