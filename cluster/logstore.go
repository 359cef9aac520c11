package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// Log stores a node can keep its raft log in (see [Config.LogStore]).
const (
	// LogStoreWAL is hashicorp/raft-wal: append-only segment files under
	// DataDir/wal with one fsync per appended batch.
	LogStoreWAL = "wal"
	// LogStoreBolt keeps the log in raft.db beside the stable store
	// (raft-boltdb/v2), as data dirs created before raft-wal do.
	LogStoreBolt = "bolt"
)

// walDirName is the directory under DataDir that holds raft-wal's segments
// and its meta database.
const walDirName = "wal"

// logCacheSize is how many recent entries raft.LogCache keeps in memory,
// so replication to a follower that is a little behind never reads disk.
// With group commit an entry carries up to maxBatchCount commands (tens
// of kilobytes of sessions), so 64 entries cover thousands of commits;
// 512 held 20 MB while a node created sessions, 100 B per session at 200k.
const logCacheSize = 64

// walLog is raft-wal with the meta database it was opened with. WAL.Close
// in v0.4.0 leaves its meta database open, which keeps the file locked
// and would make a node restarted in the same process wait forever.
type walLog struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

func (w *walLog) Close() error { return errors.Join(w.WAL.Close(), w.meta.Close()) }

// GetLog reports entries before FirstIndex as missing. raft-wal v0.4.0
// truncates the head of its open segment (64 MiB) only logically and
// still returns the entries raft compacted away after a snapshot; raft
// would then replicate from them to a follower that TrailingLogs says must
// get the snapshot. Answering ErrLogNotFound makes compaction mean what it
// means with bolt.
func (w *walLog) GetLog(index uint64, l *raft.Log) error {
	first, err := w.WAL.FirstIndex()
	if err != nil {
		return err
	}
	if index < first {
		return raft.ErrLogNotFound
	}
	return w.WAL.GetLog(index, l)
}

func openWALLog(dir string, logger hclog.Logger) (*walLog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: create raft log dir: %w", err)
	}
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithLogger(logger))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("cluster: open raft log (wal): %w", err)
	}
	return &walLog{WAL: w, meta: meta}, nil
}

// openLogStore opens the raft log the data dir was created with, or the
// one Config.LogStore asks for in a new data dir, behind a LogCache. It
// needs n.bolt open: the bolt file tells whether the dir already holds a
// bolt log.
func (n *Node) openLogStore() (raft.LogStore, error) {
	dir := filepath.Join(n.cfg.DataDir, walDirName)
	have, err := existingLogStore(n.bolt, dir)
	if err != nil {
		return nil, err
	}
	use := n.cfg.LogStore
	switch {
	case have != "" && use != "" && have != use:
		return nil, fmt.Errorf("%w: data dir %s holds a %q raft log, LogStore asks for %q: a data dir keeps the log store it was created with; switching needs an empty data dir",
			ErrConfig, n.cfg.DataDir, have, use)
	case have != "":
		use = have
	case use == "":
		use = LogStoreWAL
	}
	n.log.Info("raft log store", "store", use, "existing", have != "")
	var store raft.LogStore = n.bolt
	if use == LogStoreWAL {
		if n.wal, err = openWALLog(dir, newHCLog(n.log, "wal")); err != nil {
			return nil, err
		}
		store = n.wal
	}
	logs, err := raft.NewLogCache(logCacheSize, store)
	if err != nil {
		return nil, fmt.Errorf("cluster: log cache: %w", err)
	}
	return logs, nil
}

// existingLogStore tells which log store a data dir holds: LogStoreWAL if
// raft-wal's meta database exists, LogStoreBolt if raft.db holds log
// entries, "" for a dir without a log. Both at once is a dir someone
// mixed by hand, and refused.
func existingLogStore(bolt raft.LogStore, walDir string) (string, error) {
	_, err := os.Stat(filepath.Join(walDir, metadb.FileName))
	hasWAL := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("cluster: look for a raft-wal log: %w", err)
	}
	last, err := bolt.LastIndex()
	if err != nil {
		return "", fmt.Errorf("cluster: read raft log: %w", err)
	}
	switch {
	case hasWAL && last > 0:
		return "", fmt.Errorf("%w: data dir holds both a raft-wal log (%s) and log entries in raft.db; remove the one that is not in use",
			ErrConfig, walDir)
	case hasWAL:
		return LogStoreWAL, nil
	case last > 0:
		return LogStoreBolt, nil
	}
	return "", nil
}
