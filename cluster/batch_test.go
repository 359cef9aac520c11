package cluster

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/session"
)

// fakeRaft stands in for raft.Apply under a commitBatcher: it applies
// entries to a real FSM, records how many commands each entry carried,
// and holds each entry until release allows it (nil: no hold).
type fakeRaft struct {
	t       *testing.T
	f       *fsm.FSM
	release chan struct{}
	fail    error

	mu    sync.Mutex
	index uint64
	sizes []int
}

func (r *fakeRaft) apply(cmd []byte, _ time.Duration) (any, error) {
	c, err := fsm.Decode(cmd)
	if err != nil {
		r.t.Errorf("batcher proposed a malformed entry: %v", err)
	}
	r.mu.Lock()
	r.sizes = append(r.sizes, max(1, len(c.Batch)))
	r.mu.Unlock()
	if r.release != nil {
		<-r.release
	}
	if r.fail != nil {
		return nil, r.fail
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.index++
	return r.f.Apply(&raft.Log{Index: r.index, Type: raft.LogCommand, Data: cmd, AppendedAt: time.Now()}), nil
}

func (r *fakeRaft) entrySizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sizes)
}

func (b *commitBatcher) queueLen() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

func mustEncode(tb testing.TB, c *session.Change) []byte {
	tb.Helper()
	b, err := fsm.EncodeChange(c)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func incrBy(id, key string, by int64) *session.Change {
	return &session.Change{ID: id, Delta: session.Delta{Ops: []session.Op{{Kind: session.OpIncr, Key: key, Delta: by}}}}
}

func TestBatcherGivesEachCallerItsOwnResult(t *testing.T) {
	fr := &fakeRaft{t: t, f: fsm.New(fsm.Config{})}
	b := newCommitBatcher(fr.apply, 0, new(Metrics))
	if _, err := b.submit(mustEncode(t, &session.Change{ID: "s", Create: true, Delta: session.Delta{IdleTimeout: time.Hour, Lifetime: time.Hour}}), time.Second); err != nil {
		t.Fatal(err)
	}
	fr.release = make(chan struct{})
	const callers = 20
	type outcome struct {
		r   *fsm.Result
		err error
	}
	out := make([]outcome, callers)
	var wg sync.WaitGroup
	submit := func(i int) {
		defer wg.Done()
		c := incrBy("s", fmt.Sprint("k", i), int64(i+1))
		if i%5 == 4 {
			c.ID = "missing" // rejected on its own, the others go on
		}
		resp, err := b.submit(mustEncode(t, c), time.Minute)
		r, _ := resp.(*fsm.Result)
		out[i] = outcome{r, err}
	}
	// The first command goes to raft alone and is held there; the others
	// queue behind it.
	wg.Add(1)
	go submit(0)
	waitFor(t, 5*time.Second, "the first entry in flight", func() bool { return len(fr.entrySizes()) == 2 })
	for i := 1; i < callers; i++ {
		wg.Add(1)
		go submit(i)
	}
	waitFor(t, 5*time.Second, "the other commands queued", func() bool { return b.queueLen() == callers-1 })
	close(fr.release)
	wg.Wait()
	if got, want := fr.entrySizes(), []int{1, 1, callers - 1}; !slices.Equal(got, want) {
		t.Fatalf("commands per entry: got %v, want %v", got, want)
	}
	for i, o := range out {
		switch {
		case o.err != nil || o.r == nil:
			t.Errorf("caller %d: got %v, %v", i, o.r, o.err)
		case i%5 == 4:
			if !errors.Is(o.r.Err, session.ErrNotFound) {
				t.Errorf("caller %d (missing session): got %+v, want ErrNotFound", i, o.r)
			}
		case o.r.Err != nil || !slices.Equal(o.r.Values, []int64{int64(i + 1)}):
			t.Errorf("caller %d: got %+v, want its own increment's value %d", i, o.r, i+1)
		}
	}
	if got, want := b.m.Entries.Load(), uint64(3); got != want {
		t.Errorf("entries: got %d, want %d", got, want)
	}
}

func TestBatcherFailsEveryCallerOfAFailedEntry(t *testing.T) {
	fr := &fakeRaft{t: t, f: fsm.New(fsm.Config{}), release: make(chan struct{}), fail: raft.ErrNotLeader}
	b := newCommitBatcher(fr.apply, 0, new(Metrics))
	errs := make([]error, 6)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = b.submit(mustEncode(t, incrBy("s", "n", 1)), time.Minute)
		}()
		if i == 0 {
			waitFor(t, 5*time.Second, "the first entry in flight", func() bool { return len(fr.entrySizes()) == 1 })
		}
	}
	waitFor(t, 5*time.Second, "the other commands queued", func() bool { return b.queueLen() == len(errs)-1 })
	close(fr.release)
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, raft.ErrNotLeader) {
			t.Errorf("caller %d: got %v, want raft.ErrNotLeader (never appended)", i, err)
		}
	}
}

func TestBatcherDoesNotHoldSmallCommandsBehindALargeOne(t *testing.T) {
	fr := &fakeRaft{t: t, f: fsm.New(fsm.Config{}), release: make(chan struct{})}
	b := newCommitBatcher(fr.apply, 0, new(Metrics))
	var wg sync.WaitGroup
	go1 := func(c *session.Change) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.submit(mustEncode(t, c), time.Minute)
		}()
	}
	go1(incrBy("s", "n", 1))
	waitFor(t, 5*time.Second, "the first entry in flight", func() bool { return len(fr.entrySizes()) == 1 })
	big := &session.Change{ID: "big", Create: true, Delta: session.Delta{IdleTimeout: time.Hour, Lifetime: time.Hour,
		Ops: []session.Op{{Kind: session.OpSet, Key: "v", Value: make([]byte, maxBatchBytes)}}}}
	go1(big)
	// Past the byte bound, the large change goes to raft at once, alone,
	// while the first entry is still in flight.
	waitFor(t, 5*time.Second, "the large change in flight", func() bool { return len(fr.entrySizes()) == 2 })
	for range 3 {
		go1(incrBy("s", "n", 1))
	}
	waitFor(t, 5*time.Second, "small commands queued", func() bool { return b.queueLen() == 3 })
	close(fr.release)
	wg.Wait()
	if got, want := fr.entrySizes(), []int{1, 1, 3}; !slices.Equal(got, want) {
		t.Fatalf("commands per entry: got %v, want %v", got, want)
	}
}

// TestConcurrentCommitsShareEntries commits increments of one counter from
// many goroutines through the leader and a follower: every increment must
// be counted once and each caller must see its own new value (all values
// distinct), while entries carry more than one command.
func TestConcurrentCommitsShareEntries(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	leader := leaderOf(nodes)
	id := session.NewID()
	create(t, leader.Store(), id)
	const workers, each = 32, 10
	values := make([][]int64, workers)
	concurrently(workers, func(w int) {
		s := nodes[w%len(nodes)].Store()
		for range each {
			r, err := s.Commit(ctxT(t, 10*time.Second), incrBy(id, "n", 1))
			if err != nil {
				t.Errorf("worker %d: %v", w, err)
				return
			}
			values[w] = append(values[w], r.Values[0])
		}
	})
	all := slices.Concat(values...)
	slices.Sort(all)
	for i, v := range all {
		if v != int64(i+1) {
			t.Fatalf("increment results: got %v..., want each of 1..%d once", all[:min(i+1, len(all))], workers*each)
		}
	}
	if len(all) != workers*each {
		t.Fatalf("%d increments acknowledged, want %d", len(all), workers*each)
	}
	entries, cmds := leader.metrics.Entries.Load(), leader.metrics.EntryCommands.Load()
	t.Logf("%d commands in %d entries", cmds, entries)
	if cmds <= entries {
		t.Errorf("no entry carried more than one command (%d commands, %d entries)", cmds, entries)
	}
}

// fakeTime is a clock that moves only when told and timers that fire
// only when told, for a commitBatcher's holds.
type fakeTime struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	d             time.Duration
	f             func()
	stopped, done bool
}

func (ft *fakeTime) clock() time.Time {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return ft.now
}

func (ft *fakeTime) advance(d time.Duration) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.now = ft.now.Add(d)
}

func (ft *fakeTime) afterFunc(d time.Duration, f func()) func() bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	t := &fakeTimer{d: d, f: f}
	ft.timers = append(ft.timers, t)
	return func() bool {
		ft.mu.Lock()
		defer ft.mu.Unlock()
		was := !t.stopped && !t.done
		t.stopped = true
		return was
	}
}

// fire runs the pending timer (there must be exactly one) and returns
// the duration it was set for.
func (ft *fakeTime) fire(tb testing.TB) time.Duration {
	tb.Helper()
	ft.mu.Lock()
	var pending []*fakeTimer
	for _, t := range ft.timers {
		if !t.stopped && !t.done {
			pending = append(pending, t)
		}
	}
	if len(pending) != 1 {
		ft.mu.Unlock()
		tb.Fatalf("%d timers pending, want 1", len(pending))
	}
	t := pending[0]
	t.done = true
	ft.mu.Unlock()
	t.f()
	return t.d
}

// fireAll runs every pending timer.
func (ft *fakeTime) fireAll() {
	ft.mu.Lock()
	var pending []*fakeTimer
	for _, t := range ft.timers {
		if !t.stopped && !t.done {
			t.done = true
			pending = append(pending, t)
		}
	}
	ft.mu.Unlock()
	for _, t := range pending {
		t.f()
	}
}

// closedLoop drives a commitBatcher over a fakeRaft whose entries are
// each held until finish, on fake time, like clients that commit again
// soon after their answer.
type closedLoop struct {
	t  *testing.T
	b  *commitBatcher
	fr *fakeRaft
	ft *fakeTime
	wg sync.WaitGroup
}

// newClosedLoop returns a closedLoop whose batcher holds for up to wait.
// It releases every entry at the end of the test.
func newClosedLoop(t *testing.T, wait time.Duration) *closedLoop {
	fr := &fakeRaft{t: t, f: fsm.New(fsm.Config{}), release: make(chan struct{})}
	ft := &fakeTime{now: time.Unix(1_000_000, 0)}
	b := newCommitBatcher(fr.apply, wait, new(Metrics))
	b.clock, b.afterFunc = ft.clock, ft.afterFunc
	c := &closedLoop{t: t, b: b, fr: fr, ft: ft}
	t.Cleanup(func() {
		// Let every caller finish, even after a failure left a queue
		// held: release the entries and run what timers are left.
		close(fr.release)
		done := make(chan struct{})
		go func() {
			c.wg.Wait()
			close(done)
		}()
		for deadline := time.Now().Add(10 * time.Second); ; {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Error("callers of the batcher still blocked after 10s")
				return
			}
			ft.fireAll()
		}
	})
	return c
}

// submit starts n callers that commit with a minute to go.
func (c *closedLoop) submit(n int) { c.submitWithin(n, time.Minute) }

func (c *closedLoop) submitWithin(n int, timeout time.Duration) {
	for range n {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if _, err := c.b.submit(mustEncode(c.t, incrBy("s", "n", 1)), timeout); err != nil {
				c.t.Error(err)
			}
		}()
	}
}

// finish lets the entry in flight commit, one (fake) second after it
// went to raft.
func (c *closedLoop) finish() {
	c.ft.advance(time.Second)
	c.fr.release <- struct{}{}
}

func (c *closedLoop) entries(n int) {
	c.t.Helper()
	waitFor(c.t, 5*time.Second, fmt.Sprintf("%d entries proposed", n), func() bool { return len(c.fr.entrySizes()) == n })
}

func (c *closedLoop) queued(n int) {
	c.t.Helper()
	waitFor(c.t, 5*time.Second, fmt.Sprintf("%d commands queued", n), func() bool { return c.b.queueLen() == n })
}

// step finishes the entry in flight with n commands queued behind it.
func (c *closedLoop) step(n int) {
	c.t.Helper()
	c.submit(n)
	c.queued(n)
	c.finish()
}

// inFlight leaves an entry of n > 1 commands in flight, the way a closed
// loop gets there: a first entry of one, n-1 commands queued behind it
// and held, and one more that fills the hold.
func (c *closedLoop) inFlight(n int) {
	c.t.Helper()
	c.submit(1)
	c.entries(1)
	c.step(n - 1)
	waitFor(c.t, 5*time.Second, "a hold", c.held)
	c.submit(1)
	c.entries(2)
}

// held says whether the batcher holds its queue, once it settles.
func (c *closedLoop) held() bool {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	return c.b.hold != nil
}

func (c *closedLoop) check(sizes []int, holds, misses uint64) {
	c.t.Helper()
	if got := c.fr.entrySizes(); !slices.Equal(got, sizes) {
		c.t.Errorf("commands per entry: got %v, want %v", got, sizes)
	}
	if got := c.b.m.Holds.Load(); got != holds {
		c.t.Errorf("holds: got %d, want %d", got, holds)
	}
	if got := c.b.m.HoldMisses.Load(); got != misses {
		c.t.Errorf("missed holds: got %d, want %d", got, misses)
	}
}

func TestBatcherHoldsTheQueueForTheCommandsItExpects(t *testing.T) {
	c := newClosedLoop(t, time.Minute)
	c.submit(1)
	c.entries(1)
	c.step(3) // the entry saw 4 commands; 3 are queued
	waitFor(t, 5*time.Second, "a hold", c.held)
	c.submit(1) // an answered caller commits again: the queue goes
	c.entries(2)
	c.step(2) // that entry saw 4 + 2
	waitFor(t, 5*time.Second, "a second hold", c.held)
	c.submit(1)
	c.queued(3)
	if !c.held() || len(c.fr.entrySizes()) != 2 {
		t.Fatal("3 of the 6 expected commands ended the hold")
	}
	c.submit(3)
	c.entries(3)
	c.check([]int{1, 4, 6}, 2, 0)
}

func TestBatcherHoldLastsOneCommitTimeAtMostWait(t *testing.T) {
	for _, tc := range []struct {
		wait, want time.Duration
	}{
		{time.Minute, time.Second}, // the entry's commit time
		{5 * time.Millisecond, 5 * time.Millisecond},
	} {
		c := newClosedLoop(t, tc.wait)
		c.submit(1)
		c.entries(1)
		c.step(2)
		waitFor(t, 5*time.Second, "a hold", c.held)
		if got := c.ft.fire(t); got != tc.want {
			t.Errorf("wait %v: hold of %v, want %v", tc.wait, got, tc.want)
		}
		c.entries(2)
		c.check([]int{1, 2}, 1, 1)
	}
}

func TestBatcherMissedHoldsBackOff(t *testing.T) {
	c := newClosedLoop(t, time.Minute)
	c.submit(1)
	c.entries(1)
	var holds []uint64
	// Each round finishes the entry in flight with two commands queued:
	// short of what the entry saw. The hold, if any, then runs out with
	// nobody coming (a miss), except in round 6, where it fills.
	for round := 1; round <= 9; round++ {
		before := c.b.m.Holds.Load()
		c.step(2)
		waitFor(t, 5*time.Second, "the queue held or proposed", func() bool {
			return c.held() || len(c.fr.entrySizes()) == round+1
		})
		if c.b.m.Holds.Load() > before {
			if round == 6 {
				c.submit(2)
			} else {
				c.ft.fire(t)
			}
		}
		c.entries(round + 1)
		holds = append(holds, c.b.m.Holds.Load())
	}
	// Held (miss: skip 1), skipped, held (miss: skip 2), skipped twice,
	// held and filled (backoff reset), held (miss: skip 1), skipped, held.
	if want := []uint64{1, 1, 2, 2, 2, 3, 4, 4, 5}; !slices.Equal(holds, want) {
		t.Errorf("holds after each round: got %v, want %v", holds, want)
	}
	c.check([]int{1, 2, 2, 2, 2, 2, 4, 2, 2, 2}, 5, 4)
}

func TestBatcherHoldThatGainsHalfIsNoMiss(t *testing.T) {
	for _, tc := range []struct {
		saw, gained int // commands the hold waits for, and those that come
		miss        bool
	}{
		{4, 2, false}, {5, 2, true}, {5, 3, false}, {2, 0, true},
	} {
		c := newClosedLoop(t, time.Minute)
		c.inFlight(tc.saw)
		c.step(1) // held for tc.saw more
		waitFor(t, 5*time.Second, "a second hold", c.held)
		c.submit(tc.gained)
		c.queued(1 + tc.gained)
		c.ft.fire(t)
		c.entries(3)
		misses := uint64(0)
		if tc.miss {
			misses = 1
		}
		c.check([]int{1, tc.saw, 1 + tc.gained}, 2, misses)
	}
}

func TestBatcherFullQueueEndsAHold(t *testing.T) {
	c := newClosedLoop(t, time.Minute)
	c.submit(1)
	c.entries(1)
	c.step(100)
	waitFor(t, 5*time.Second, "a hold", c.held)
	c.submit(1)
	c.entries(2) // 101
	c.step(100)  // that entry saw 201
	waitFor(t, 5*time.Second, "a second hold", c.held)
	c.submit(maxBatchCount - 100)
	c.entries(3)
	c.check([]int{1, 101, maxBatchCount}, 2, 0)
}

func TestBatcherDoesNotHoldLongAfterTheLastEntry(t *testing.T) {
	c := newClosedLoop(t, time.Minute)
	c.inFlight(4)
	c.finish() // saw 4, nothing queued
	waitFor(t, 5*time.Second, "the entry done", func() bool {
		c.b.mu.Lock()
		defer c.b.mu.Unlock()
		return c.b.inFlight == 0
	})
	c.ft.advance(2 * time.Second) // past one commit time
	c.submit(1)
	c.entries(3)
	c.check([]int{1, 4, 1}, 1, 0)
}

func TestBatcherDoesNotHoldACommandWhoseDeadlineIsNear(t *testing.T) {
	c := newClosedLoop(t, time.Minute)
	c.inFlight(4)
	c.step(1) // held for 4 more, up to 1 s
	waitFor(t, 5*time.Second, "a second hold", c.held)
	// 1.5 s to go: held to the end, with a commit of 1 s, it would be
	// late. It ends the hold.
	c.submitWithin(1, 1500*time.Millisecond)
	c.entries(3)
	// The same when it is already queued as the entry in flight is done.
	c.submitWithin(1, 2500*time.Millisecond)
	c.queued(1)
	c.finish() // a hold for 2 more would end 1 s from now; then 1 s to commit
	c.entries(4)
	c.check([]int{1, 4, 2, 1}, 2, 0)
}

func TestBatcherDoesNotHoldWithoutWait(t *testing.T) {
	c := newClosedLoop(t, 0)
	c.submit(1)
	c.entries(1)
	c.step(2)
	c.entries(2)
	c.check([]int{1, 2}, 0, 0)
	// A negative Config.GroupCommitWait is off, and stays negative
	// through the defaults.
	if w := (Config{GroupCommitWait: -1}).withDefaults().GroupCommitWait; w != -1 {
		t.Errorf("GroupCommitWait -1 became %v", w)
	}
	if b := newCommitBatcher(nil, -1, new(Metrics)); b.wait != 0 {
		t.Errorf("newCommitBatcher(-1).wait = %v, want 0 (off)", b.wait)
	}
}
