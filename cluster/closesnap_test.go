package cluster

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/session"
)

// A clean Close that leaves a long log behind the last snapshot snapshots
// first, so the next start restores that snapshot and replays nothing.
func TestCloseSnapshotsLongLog(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min      int64
		snapshot bool
	}{{"long log", 1, true}, {"short log", 1 << 40, false}} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(v int64) { closeSnapshotMin = v }(closeSnapshotMin)
			closeSnapshotMin = tc.min
			cfg := testConfig(t, "solo", t.TempDir())
			n := mustStart(t, cfg)
			if err := n.WaitLeader(ctxT(t, 10*time.Second)); err != nil {
				t.Fatal(err)
			}
			value := strings.Repeat("v", 1024)
			var last session.Result
			for range 20 {
				last = create(t, n.Store(), session.NewID(), "blob", value)
			}
			if err := n.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			snaps, err := raft.NewFileSnapshotStore(cfg.DataDir, 2, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			metas, err := snaps.List()
			if err != nil {
				t.Fatal(err)
			}
			if got := len(metas) > 0 && metas[0].Index >= last.Index; got != tc.snapshot {
				t.Fatalf("snapshot covering index %d after close: %v, want %v (snapshots: %d)", last.Index, got, tc.snapshot, len(metas))
			}

			// A snapshot the process died writing is removed at start.
			unfinished := filepath.Join(cfg.DataDir, "snapshots", "2-99-123.tmp")
			if err := os.MkdirAll(unfinished, 0o700); err != nil {
				t.Fatal(err)
			}
			n2 := mustStart(t, cfg)
			if _, err := os.Stat(unfinished); !os.IsNotExist(err) {
				t.Fatalf("unfinished snapshot %s still there after a start (stat: %v)", unfinished, err)
			}
			waitFor(t, 10*time.Second, "restarted node to apply the log", func() bool {
				return n2.IsLeader() && n2.fsm.AppliedIndex() >= last.Index
			})
			// 20 KiB of sessions were committed; after a restore only the
			// new term's few small entries are applied again.
			replayed := n2.fsm.LogBytesSinceSnapshot()
			if (replayed < 20<<10) != tc.snapshot {
				t.Fatalf("restart applied %d bytes of log; want the snapshot (%v) to spare replaying the 20 KiB of sessions", replayed, tc.snapshot)
			}
			if n2.fsm.Len() != 20 {
				t.Fatalf("restarted node holds %d sessions, want 20", n2.fsm.Len())
			}
		})
	}
}
