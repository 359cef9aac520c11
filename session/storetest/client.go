package storetest

import (
	"context"
	"sync/atomic"

	"github.com/raftsession/raftsession/session"
)

// client is how the suite talks to a store: like the middleware with its
// cookie, it remembers the index of its latest commit and asks every
// read-your-writes read for state at least that new. A replicated store
// may then serve the suite's reads from any replica, as it serves a
// browser's. The wrapper keeps the store's optional abilities visible.
type client struct {
	s    session.Store
	last *atomic.Uint64
}

func newClient(s session.Store) session.Store {
	c := client{s: s, last: new(atomic.Uint64)}
	os, isOwner := s.(session.OwnerStore)
	cs, isCount := s.(session.CountStore)
	switch {
	case isOwner && isCount:
		return ownerCountClient{ownerClient{c, os}, cs}
	case isOwner:
		return ownerClient{c, os}
	case isCount:
		return countClient{c, cs}
	}
	return c
}

func (c client) saw(index uint64) {
	for {
		cur := c.last.Load()
		if index <= cur || c.last.CompareAndSwap(cur, index) {
			return
		}
	}
}

func (c client) opts(opt session.LoadOptions) session.LoadOptions {
	if opt.Level == session.ReadYourWrites {
		opt.MinIndex = max(opt.MinIndex, c.last.Load())
	}
	return opt
}

func (c client) Load(ctx context.Context, id string, opt session.LoadOptions) (*session.Record, error) {
	return c.s.Load(ctx, id, c.opts(opt))
}

func (c client) Commit(ctx context.Context, ch *session.Change) (session.Result, error) {
	res, err := c.s.Commit(ctx, ch)
	c.saw(res.Index)
	return res, err
}

type ownerClient struct {
	client
	os session.OwnerStore
}

func (c ownerClient) ListOwner(ctx context.Context, owner string, opt session.LoadOptions) ([]session.Info, error) {
	return c.os.ListOwner(ctx, owner, c.opts(opt))
}

func (c ownerClient) DestroyOwner(ctx context.Context, owner, except string) (int, uint64, error) {
	n, idx, err := c.os.DestroyOwner(ctx, owner, except)
	c.saw(idx)
	return n, idx, err
}

type countClient struct {
	client
	cs session.CountStore
}

func (c countClient) Count(ctx context.Context) (int, error) { return c.cs.Count(ctx) }

type ownerCountClient struct {
	ownerClient
	cs session.CountStore
}

func (c ownerCountClient) Count(ctx context.Context) (int, error) { return c.cs.Count(ctx) }
