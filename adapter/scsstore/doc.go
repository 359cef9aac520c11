// Package scsstore lets an application built on github.com/alexedwards/scs/v2
// keep its session code and store its sessions in raftsession: a
// session.MemoryStore in one process, or a cluster's replicated store
// shared by every instance behind a load balancer. Moving an scs app onto
// a cluster is one line:
//
//	sm.Store = scsstore.New(node.Store())
//
// [Store] implements scs.Store and scs.CtxStore (not IterableStore: a
// cluster does not enumerate sessions).
//
// # What carries over, and what does not
//
// scs saves a session as one blob, encoded by its Codec, each time a
// request changes it. A blob cannot say which keys changed, so two
// concurrent requests of one browser that change different keys still
// overwrite each other (the last commit wins), and a counter kept with
// scs's Put is not an atomic increment. raftsession's native API
// (httpmw, adapter/ginmw) commits only the keys a request changed and
// increments inside the store (Session.Incr, Session.CompareAndSwap): use
// it where those matter.
//
// What does carry over: a session scs destroyed (Destroy, or the old token
// of RenewToken) is never brought back by a request that loaded it before
// and commits after, not even on another instance (see [Store] for how);
// sessions expire at the time scs asks for; and reads are linearizable by
// default, so a session written through one instance is read by the next
// request on any other (scs's cookie carries no index for the cheaper
// read-your-writes level).
package scsstore
