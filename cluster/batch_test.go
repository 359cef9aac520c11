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
	b := newCommitBatcher(fr.apply, 0)
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
	if got, want := b.entries.Load(), uint64(3); got != want {
		t.Errorf("entries: got %d, want %d", got, want)
	}
}

func TestBatcherFailsEveryCallerOfAFailedEntry(t *testing.T) {
	fr := &fakeRaft{t: t, f: fsm.New(fsm.Config{}), release: make(chan struct{}), fail: raft.ErrNotLeader}
	b := newCommitBatcher(fr.apply, 0)
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
	b := newCommitBatcher(fr.apply, 0)
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
	entries, cmds := leader.batch.entries.Load(), leader.batch.commands.Load()
	t.Logf("%d commands in %d entries", cmds, entries)
	if cmds <= entries {
		t.Errorf("no entry carried more than one command (%d commands, %d entries)", cmds, entries)
	}
}

// heldBatcher returns a batcher over fr that holds for up to wait and
// whose entries each seem to take an hour to commit, so that wait alone
// bounds a hold.
func heldBatcher(fr *fakeRaft, wait time.Duration) *commitBatcher {
	b := newCommitBatcher(fr.apply, wait)
	var mu sync.Mutex
	now := time.Now()
	b.clock = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Hour)
		return now
	}
	return b
}

// closedLoop drives b like clients that commit again as soon as they are
// answered: round r's entry is in flight while the commands of queued[r]
// arrive behind it; then the entry is released. It returns once every
// command so far has been answered.
type closedLoop struct {
	t  *testing.T
	b  *commitBatcher
	fr *fakeRaft
	wg sync.WaitGroup
}

func (c *closedLoop) submit(n int) {
	for range n {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if _, err := c.b.submit(mustEncode(c.t, incrBy("s", "n", 1)), time.Minute); err != nil {
				c.t.Error(err)
			}
		}()
	}
}

func (c *closedLoop) entries(n int) {
	waitFor(c.t, 5*time.Second, fmt.Sprintf("%d entries proposed", n), func() bool { return len(c.fr.entrySizes()) == n })
}

func TestBatcherHoldsTheQueueForTheCommandsItExpects(t *testing.T) {
	fr := &fakeRaft{t: t, f: fsm.New(fsm.Config{}), release: make(chan struct{})}
	c := &closedLoop{t: t, b: heldBatcher(fr, time.Minute), fr: fr}
	queued := func(n int) {
		waitFor(t, 5*time.Second, fmt.Sprintf("%d commands queued", n), func() bool { return c.b.queueLen() == n })
	}
	stillHeld := func(entries int) {
		t.Helper()
		time.Sleep(20 * time.Millisecond)
		if got := len(fr.entrySizes()); got != entries {
			t.Fatalf("%d entries proposed during the hold, want %d", got, entries)
		}
	}
	c.submit(1)
	c.entries(1)
	c.submit(3) // queued behind the entry in flight: it saw 4 commands
	queued(3)
	fr.release <- struct{}{}
	// Three queued, four expected: the queue waits (for up to a minute).
	waitFor(t, 5*time.Second, "a hold", func() bool { return c.b.holds.Load() == 1 })
	stillHeld(1)
	c.submit(1) // the answered caller commits again: the queue goes
	c.entries(2)
	c.submit(2)
	queued(2)
	fr.release <- struct{}{} // that entry saw 4 + 2
	waitFor(t, 5*time.Second, "a second hold", func() bool { return c.b.holds.Load() == 2 })
	c.submit(1)
	queued(3)
	stillHeld(2) // 3 of 6
	c.submit(3)
	c.entries(3)
	close(fr.release)
	c.wg.Wait()
	if got, want := fr.entrySizes(), []int{1, 4, 6}; !slices.Equal(got, want) {
		t.Fatalf("commands per entry: got %v, want %v", got, want)
	}
	if n := c.b.holdMisses.Load(); n != 0 {
		t.Errorf("%d holds missed, want 0", n)
	}
}

func TestBatcherHoldRunsOutAndBacksOff(t *testing.T) {
	fr := &fakeRaft{t: t, f: fsm.New(fsm.Config{}), release: make(chan struct{})}
	c := &closedLoop{t: t, b: heldBatcher(fr, 5*time.Millisecond), fr: fr}
	c.submit(1)
	c.entries(1)
	// Each round: two commands queue behind the entry in flight, the entry
	// is released, and the queue is short of what that entry saw; nobody
	// else comes.
	var held []uint64
	for round := 1; round <= 5; round++ {
		c.submit(2)
		waitFor(t, 5*time.Second, "two commands queued", func() bool { return c.b.queueLen() == 2 })
		fr.release <- struct{}{}
		c.entries(round + 1) // proposed after the hold ran out, or at once
		held = append(held, c.b.holds.Load())
	}
	close(fr.release)
	c.wg.Wait()
	if got, want := fr.entrySizes(), []int{1, 2, 2, 2, 2, 2}; !slices.Equal(got, want) {
		t.Fatalf("commands per entry: got %v, want %v", got, want)
	}
	// Missed holds space out (backoff 1, then 2): held, not held, held,
	// not held, not held.
	if want := []uint64{1, 1, 2, 2, 2}; !slices.Equal(held, want) {
		t.Fatalf("holds after each round: got %v, want %v", held, want)
	}
	if got, want := c.b.holdMisses.Load(), uint64(2); got != want {
		t.Errorf("holds missed: got %d, want %d", got, want)
	}
}

func TestBatcherHoldThatGainsHalfIsNoMiss(t *testing.T) {
	fr := &fakeRaft{t: t, f: fsm.New(fsm.Config{}), release: make(chan struct{})}
	// Long enough for the commands below to come during the hold.
	c := &closedLoop{t: t, b: heldBatcher(fr, 500*time.Millisecond), fr: fr}
	queued := func(n int) {
		waitFor(t, 5*time.Second, fmt.Sprintf("%d commands queued", n), func() bool { return c.b.queueLen() == n })
	}
	holds := func(n uint64) {
		waitFor(t, 5*time.Second, fmt.Sprintf("hold %d", n), func() bool { return c.b.holds.Load() == n })
	}
	c.submit(1)
	c.entries(1)
	c.submit(4)
	queued(4)
	fr.release <- struct{}{} // saw 5: held at 4
	holds(1)
	c.submit(1)
	c.entries(2)
	c.submit(1)
	queued(1)
	fr.release <- struct{}{} // saw 6: held at 1
	holds(2)
	c.submit(3) // 3 of the 5 it waits for; then it runs out
	c.entries(3)
	c.submit(1)
	queued(1)
	fr.release <- struct{}{} // saw 4 + 1: held at 1, not skipped
	holds(3)
	c.submit(4)
	c.entries(4)
	close(fr.release)
	c.wg.Wait()
	if got, want := fr.entrySizes(), []int{1, 5, 4, 5}; !slices.Equal(got, want) {
		t.Fatalf("commands per entry: got %v, want %v", got, want)
	}
	if n := c.b.holdMisses.Load(); n != 0 {
		t.Errorf("%d holds missed, want 0", n)
	}
}

func TestBatcherDoesNotHoldWithoutWait(t *testing.T) {
	fr := &fakeRaft{t: t, f: fsm.New(fsm.Config{}), release: make(chan struct{})}
	c := &closedLoop{t: t, b: heldBatcher(fr, 0), fr: fr}
	c.submit(1)
	c.entries(1)
	c.submit(2)
	waitFor(t, 5*time.Second, "two commands queued", func() bool { return c.b.queueLen() == 2 })
	fr.release <- struct{}{}
	c.entries(2)
	close(fr.release)
	c.wg.Wait()
	if n := c.b.holds.Load(); n != 0 {
		t.Errorf("%d holds with GroupCommitWait off", n)
	}
}
