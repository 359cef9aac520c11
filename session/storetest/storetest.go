package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

// Config is what the suite asks of each store a [Factory] makes.
type Config struct {
	// Limits are the limits the store must enforce. They are small, so
	// that the size tests are cheap.
	Limits session.Limits
	// Clock is a fake clock that stands still until the suite advances it.
	// A store that can read an injected clock should read this one, which
	// makes the expiry tests instant and exact. A store that cannot (a
	// replicated store takes its times from the raft leader) ignores it and
	// runs on real time: the suite passes either way, because it waits, with
	// a deadline, for a session to expire instead of expecting it at an
	// exact instant, and on real time it only expects a session with a
	// 300 ms timeout to survive the one or two calls right after a commit.
	Clock *Clock
}

// Factory returns a new, empty store for one subtest, configured by cfg. It
// must arrange, with t.Cleanup, for the store to be shut down when the
// subtest ends. Subtests that test expiry call it from parallel subtests.
type Factory func(t *testing.T, cfg Config) session.Store

// Clock is a fake clock for stores that accept one (see [Config.Clock]).
// It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock that reads start until it is advanced.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time. Its method value is a drop-in replacement
// for [time.Now].
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// suiteLimits are the [Config.Limits] the suite runs with: small, so that
// its size tests are cheap.
var suiteLimits = session.Limits{MaxBytes: 1024, MaxKeys: 8, MaxValueBytes: 256, MaxKeyBytes: 32}

const (
	// short is the idle timeout or lifetime of a session a test lets
	// expire. On real time the test waits about this long.
	short = 300 * time.Millisecond
	// long is a timeout no test outlives.
	long = time.Hour
	// patience bounds how long a test waits for a store to observe an
	// expiry on real time, with room for a slow, loaded CI machine.
	patience = 5 * time.Second
)

type contractTest struct {
	name string
	fn   func(h *harness)
	// parallel tests wait for real time when the store runs on it, so
	// they run side by side to keep the suite fast.
	parallel bool
}

// Run runs the contract suite against the stores newStore makes, each
// test in its own subtest with its own store. The whole suite takes well
// under a second with an injected clock and a few seconds on real time.
func Run(t *testing.T, newStore Factory) {
	t.Helper()
	var tests []contractTest
	tests = append(tests, semanticsTests...)
	tests = append(tests, limitTests...)
	tests = append(tests, concurrencyTests...)
	tests = append(tests, ownerTests...)
	tests = append(tests, countTests...)
	tests = append(tests, expiryTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.parallel {
				t.Parallel()
			}
			clock := NewClock(time.Now().Round(0))
			store := newStore(t, Config{Limits: suiteLimits, Clock: clock})
			if store == nil {
				t.Fatal("factory returned a nil store")
			}
			tc.fn(&harness{T: t, ctx: t.Context(), store: newClient(store), raw: store, clock: clock})
		})
	}
}

// harness is one subtest's store and the helpers that drive it. Its
// helpers fail the test with Fatal, so they may only be called from the
// test's goroutine.
type harness struct {
	*testing.T
	ctx   context.Context
	store session.Store
	raw   session.Store // as the factory made it, for its optional abilities
	clock *Clock
}

// run runs fn as a subtest on the same store.
func (h *harness) run(name string, fn func(h *harness)) {
	h.Helper()
	h.Run(name, func(t *testing.T) {
		fn(&harness{T: t, ctx: t.Context(), store: h.store, raw: h.raw, clock: h.clock})
	})
}

func (h *harness) commit(c session.Change) (session.Result, error) {
	h.Helper()
	return h.store.Commit(h.ctx, &c)
}

func (h *harness) mustCommit(c session.Change) session.Result {
	h.Helper()
	res, err := h.store.Commit(h.ctx, &c)
	if err != nil {
		h.Fatalf("Commit(%s): got error %v, want nil", describe(c), err)
	}
	return res
}

// wantReject commits c and checks that it fails with want.
func (h *harness) wantReject(c session.Change, want error) {
	h.Helper()
	res, err := h.store.Commit(h.ctx, &c)
	if !errors.Is(err, want) {
		h.Fatalf("Commit(%s): got (%+v, %v), want error %v", describe(c), res, err, want)
	}
}

// create creates a session with idle timeout and lifetime long, holding
// the key/value pairs kv.
func (h *harness) create(id string, kv ...string) session.Result {
	h.Helper()
	return h.mustCommit(session.Change{ID: id, Create: true, Delta: session.Delta{
		Ops: sets(kv...), IdleTimeout: long, Lifetime: 2 * long}})
}

// createOwned is create with an owner.
func (h *harness) createOwned(id, owner string, kv ...string) session.Result {
	h.Helper()
	return h.mustCommit(session.Change{ID: id, Create: true, Delta: session.Delta{
		Ops: sets(kv...), SetOwner: true, Owner: owner, IdleTimeout: long, Lifetime: 2 * long}})
}

func (h *harness) load(id string) (*session.Record, error) {
	h.Helper()
	return h.store.Load(h.ctx, id, session.LoadOptions{})
}

func (h *harness) mustLoad(id string) *session.Record {
	h.Helper()
	rec, err := h.store.Load(h.ctx, id, session.LoadOptions{})
	if err != nil {
		h.Fatalf("Load: got error %v, want nil", err)
	}
	return rec
}

func (h *harness) wantNotFound(id string) {
	h.Helper()
	if rec, err := h.load(id); !errors.Is(err, session.ErrNotFound) {
		h.Fatalf("Load: got (%v, %v), want error %v", recordString(rec), err, session.ErrNotFound)
	}
}

// wantValues loads id and checks that it holds exactly the pairs kv.
func (h *harness) wantValues(id string, kv ...string) *session.Record {
	h.Helper()
	rec := h.mustLoad(id)
	if got, want := rec.Values, valueMap(kv...); !equalValues(got, want) {
		h.Fatalf("values: got %s, want %s", valuesString(got), valuesString(want))
	}
	return rec
}

// eventually polls cond until it returns nil, failing the test with cond's
// last error if that takes longer than patience.
func (h *harness) eventually(cond func() error) {
	h.Helper()
	deadline := time.Now().Add(patience)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			h.Fatalf("after %v: %v", patience, err)
		}
		select {
		case <-h.ctx.Done():
			h.Fatalf("test ended while waiting: %v", err)
		case <-tick.C:
		}
	}
}

// eventuallyGone waits until id no longer loads.
func (h *harness) eventuallyGone(id string) {
	h.Helper()
	h.eventually(func() error {
		rec, err := h.load(id)
		switch {
		case errors.Is(err, session.ErrNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("Load: got error %v, want %v", err, session.ErrNotFound)
		}
		return fmt.Errorf("Load: got %s, want error %v", recordString(rec), session.ErrNotFound)
	})
}

func (h *harness) ownerStore() session.OwnerStore {
	h.Helper()
	s, ok := h.store.(session.OwnerStore)
	if !ok {
		h.Skip("store does not implement session.OwnerStore")
	}
	return s
}

func (h *harness) countStore() session.CountStore {
	h.Helper()
	s, ok := h.store.(session.CountStore)
	if !ok {
		h.Skip("store does not implement session.CountStore")
	}
	return s
}

// sets returns OpSet operations for the key/value pairs kv.
func sets(kv ...string) []session.Op {
	if len(kv)%2 != 0 {
		panic("storetest: odd number of key/value arguments")
	}
	var ops []session.Op
	for i := 0; i < len(kv); i += 2 {
		ops = append(ops, session.Op{Kind: session.OpSet, Key: kv[i], Value: []byte(kv[i+1])})
	}
	return ops
}

func valueMap(kv ...string) session.Values {
	m := make(map[string][]byte, len(kv)/2)
	for _, op := range sets(kv...) {
		m[op.Key] = op.Value
	}
	return session.ValuesOf(m)
}

func equalValues(a, b session.Values) bool { return a.Equal(b) }

func valuesString(vals session.Values) string {
	var b bytes.Buffer
	b.WriteByte('{')
	i := 0
	for k, v := range vals.All() {
		if i++; i > 1 {
			b.WriteString(", ")
		}
		if len(v) > 40 {
			fmt.Fprintf(&b, "%q: <%d bytes>", k, len(v))
		} else {
			fmt.Fprintf(&b, "%q: %q", k, v)
		}
	}
	b.WriteByte('}')
	return b.String()
}

func recordString(r *session.Record) string {
	if r == nil {
		return "<nil>"
	}
	return fmt.Sprintf("Record{Values: %s, Owner: %q, Version: %d, IdleDeadline: %v, AbsoluteDeadline: %v}",
		valuesString(r.Values), r.Owner, r.Version, r.IdleDeadline, r.AbsoluteDeadline)
}

// describe names a change in failure messages without its ID, which is a
// bearer token in a real application.
func describe(c session.Change) string {
	var kind string
	switch {
	case c.Create:
		kind = "create"
	case c.Destroy:
		kind = "destroy"
	case c.RenameTo != "":
		kind = "rename"
	case c.Delta.Empty():
		kind = "touch"
	default:
		kind = "update"
	}
	if len(c.Ops) > 0 {
		var kinds []string
		for _, op := range c.Ops {
			kinds = append(kinds, op.Kind.String()+" "+fmt.Sprintf("%.20q", op.Key))
		}
		kind += fmt.Sprintf(" %v", kinds)
	}
	return kind
}
