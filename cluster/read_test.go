package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/fsm"
)

// applyNoops applies no-op entries from..to to f, one every gap, and
// returns the longest time between two of them, counting from start (the
// scheduler may stretch a gap, or start the goroutine late).
func applyNoops(f *fsm.FSM, from, to uint64, gap time.Duration, start time.Time) (longest time.Duration) {
	last := start
	for i := from; i <= to; i++ {
		time.Sleep(gap)
		f.Apply(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: fsm.EncodeNoop()})
		longest = max(longest, time.Since(last))
		last = time.Now()
	}
	return longest
}

// A replica that applies nothing is waiting for an idle leader's next
// AppendEntries: the read gives up after readStall, not after ReadWait.
// One that applies entries keeps waiting for its index.
func TestAwaitAppliedGivesUpOnStalledReplica(t *testing.T) {
	const wait = 2 * time.Second
	n := &Node{fsm: fsm.New(fsm.Config{})}
	applyNoops(n.fsm, 1, 5, 0, time.Now())

	start := time.Now()
	if n.awaitApplied(context.Background(), 6, wait) {
		t.Fatal("awaitApplied reported index 6 applied; the replica is at 5")
	}
	if d := time.Since(start); d >= wait/2 {
		t.Fatalf("a replica that applied nothing kept the read waiting %v; want it sent to the leader after about %v", d, readStall)
	}

	// Entries keep coming, one per readStall/10, for three readStalls.
	// Only a run in which no gap reached readStall proves anything.
	target := uint64(5)
	for attempt := 0; ; attempt++ {
		from := target + 1
		target += 30
		longest := make(chan time.Duration, 1)
		start := time.Now()
		go func() { longest <- applyNoops(n.fsm, from, target, readStall/10, start) }()
		ok := n.awaitApplied(context.Background(), target, wait)
		if gap := <-longest; gap >= readStall/2 {
			if attempt == 10 {
				t.Skipf("the scheduler paused the applier for %v or more in every attempt", readStall/2)
			}
			continue
		}
		if !ok {
			t.Fatalf("a replica catching up without a pause of %v was given up on (applied %d of %d)", readStall, n.fsm.AppliedIndex(), target)
		}
		break
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n.awaitApplied(ctx, target+1, wait) {
		t.Fatal("awaitApplied with a cancelled context reported success")
	}
}
