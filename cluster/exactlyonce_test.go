package cluster

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

// TestLostReplyIsRetriedOnce: the leader applies a forwarded increment and
// its reply is lost (the connection cut right after the leader answered).
// The follower retries under the same request number; the state machine
// answers with the first result, so the increment counts exactly once and
// the caller sees success, not "outcome unknown".
func TestLostReplyIsRetriedOnce(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	f := followersOf(nodes)[0]
	id := session.NewID()
	create(t, f.Store(), id)
	var lost atomic.Int32
	lose := func(kind byte) bool {
		// The first successful apply reply of each of three increments.
		return kind == statusOK && lost.Add(1)%2 == 1 && lost.Load() <= 5
	}
	f.client.loseReply.Store(&lose)
	t.Cleanup(func() { f.client.loseReply.Store(nil) })
	for want := int64(1); want <= 3; want++ {
		r, err := f.Store().Commit(ctxT(t, 10*time.Second), &session.Change{ID: id, Delta: session.Delta{
			Ops: []session.Op{{Kind: session.OpIncr, Key: "n", Delta: 1}}}})
		if err != nil {
			t.Fatalf("increment %d: %v (a lost reply must become a safe retry)", want, err)
		}
		if len(r.Values) != 1 || r.Values[0] != want {
			t.Fatalf("increment %d returned %v", want, r.Values)
		}
	}
	if f.Metrics().CommitRetries.Load() == 0 {
		t.Fatal("no reply was lost: the test did not test anything")
	}
	for _, n := range nodes {
		rec, err := n.Store().Load(ctxT(t, 2*time.Second), id, session.LoadOptions{Level: session.Linearizable})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(rec.Values.Get("n")); got != strconv.Itoa(3) {
			t.Fatalf("%s: counter = %s after 3 increments with lost replies; want 3", n.ID(), got)
		}
	}
}
