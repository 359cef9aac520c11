package cluster

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
)

// closeSnapshotMin is the least log, in bytes applied since the last
// snapshot, for which Close takes a snapshot before it stops raft. A
// variable so that tests can lower it.
var closeSnapshotMin int64 = 16 << 20

// snapshotBeforeClose snapshots the state when a restart would otherwise
// replay much of the log. A start restores the newest snapshot and then
// reads every entry after it twice: once when raft opens (it scans them
// for configuration changes) and once to apply them when the commit index
// is known. With group commit an entry holds up to maxBatchCount commands,
// so raft's threshold of SnapshotThreshold entries can leave hundreds of
// megabytes of log behind the last snapshot. On the benchmark machine a
// node persisted its state at about 500 MB/s and replayed about 120 MB of
// log per second, so a snapshot at close costs no more than the replay it
// saves once the log is a quarter of the state: that, and at least
// closeSnapshotMin, is when Close takes one. A node that is leaving does
// not come back, a Start that failed has nothing worth it, and a node
// whose snapshot fails, or is killed while writing it, replays its log
// as before (the unfinished snapshot is removed at the next start).
func (n *Node) snapshotBeforeClose() {
	since := n.fsm.LogBytesSinceSnapshot()
	if n.leaving.Load() || !n.serving.Load() || since < closeSnapshotMin || since < n.fsm.Bytes()/4 {
		return
	}
	// A leader whose handover failed would keep leading through the
	// snapshot with its forward server closed: every write in the cluster
	// would wait seconds instead of the second an election takes.
	if n.raft.State() == raft.Leader && n.voters() > 1 {
		return
	}
	n.log.Info("snapshot before close", "log_bytes", since, "state_bytes", n.fsm.Bytes())
	start := time.Now()
	err := n.raft.Snapshot().Error()
	switch {
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
	case err != nil:
		n.log.Warn("snapshot before close failed: the next start replays the log since the last snapshot", "err", err)
	default:
		n.log.Info("snapshot before close: the next start restores it instead of replaying the log",
			"log_bytes", since, "took", time.Since(start).Round(time.Millisecond))
	}
}

// removeUnfinishedSnapshots deletes the snapshot directories raft's file
// store left unfinished (named *.tmp) when the process died while writing
// one, for example killed during the snapshot Close takes. raft never
// reads or reaps them, and each can be as large as the state.
func removeUnfinishedSnapshots(dir string, log *slog.Logger) {
	tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
	for _, p := range tmps {
		if err := os.RemoveAll(p); err != nil {
			log.Warn("could not remove an unfinished snapshot", "path", p, "err", err)
			continue
		}
		log.Info("removed an unfinished snapshot", "path", p)
	}
}
