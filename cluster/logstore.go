package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/types"
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

// walSegmentSize is how much log one raft-wal segment file holds before
// the next is created: raft-wal's default. A variable so tests can make
// segments fill quickly.
var walSegmentSize = wal.DefaultSegmentSize

// logCacheSize is how many recent entries raft.LogCache keeps in memory,
// so replication to a follower that is a little behind never reads disk.
// With group commit an entry carries up to maxBatchCount commands (tens
// of kilobytes of sessions), so 64 entries cover thousands of commits;
// 512 held 20 MB while a node created sessions, 100 B per session at 200k.
const logCacheSize = 64

// walLog is raft-wal with the meta database it was opened with, which it
// closes itself: v0.4.0's WAL.Close left it open, and its file lock made a
// node restarted in the same process wait forever (v0.4.1 closes it too; a
// second Close does nothing).
//
// It also repairs the WAL after a failed append (see StoreLogs): after a
// full segment whose successor could not be created, raft-wal v0.4 fails
// every append until the process restarts, its leader stepping down after
// every election it wins.
type walLog struct {
	dir    string
	logger hclog.Logger

	mu   sync.RWMutex // held for writing while repair swaps wal and meta
	wal  *wal.WAL     // nil after Close, or while a repair has yet to succeed
	meta *metadb.BoltMetaDB
	done bool // Close was called
	// cutFrom: entries from this index on are to be cut off the tail once
	// the log is open again (0: none).
	cutFrom uint64
	// retryAt: a reader does not try a failed repair again before this,
	// so the readers of a closed log (a replication goroutine per
	// follower) do not each reopen it, each time holding the descriptors
	// a failed wal.Open leaves open until they are collected.
	retryAt time.Time
}

// walRepairBackoff is how long readers wait after a failed repair before
// they try it again; appends try again at once.
const walRepairBackoff = 100 * time.Millisecond

var errWALReopening = errors.New("cluster: raft log: reopening after a failed append")

// use runs fn on the open WAL, first finishing a repair that failed (the
// directory could not be opened again for want of a descriptor, say):
// for appends at once, for reads once walRepairBackoff has passed.
func (w *walLog) use(fn func(*wal.WAL) error) error { return w.useFor(false, fn) }

func (w *walLog) useFor(appending bool, fn func(*wal.WAL) error) error {
	w.mu.RLock()
	closed := w.wal == nil && !w.done && (appending || !time.Now().Before(w.retryAt))
	w.mu.RUnlock()
	if closed {
		if err := w.repair(nil, 0); err != nil {
			return err
		}
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.wal == nil {
		if w.done {
			return wal.ErrClosed
		}
		return errWALReopening
	}
	return fn(w.wal)
}

func (w *walLog) FirstIndex() (first uint64, err error) {
	err = w.use(func(l *wal.WAL) error { first, err = l.FirstIndex(); return err })
	return first, err
}

func (w *walLog) LastIndex() (last uint64, err error) {
	err = w.use(func(l *wal.WAL) error { last, err = l.LastIndex(); return err })
	return last, err
}

// GetLog reports entries before FirstIndex as missing. raft-wal v0.4
// truncates the head of its open segment (64 MiB) only logically and
// still returns the entries raft compacted away after a snapshot; raft
// would then replicate from them to a follower that TrailingLogs says must
// get the snapshot. Answering ErrLogNotFound makes compaction mean what it
// means with bolt.
func (w *walLog) GetLog(index uint64, lg *raft.Log) error {
	return w.use(func(l *wal.WAL) error {
		first, err := l.FirstIndex()
		if err != nil {
			return err
		}
		if index < first {
			return raft.ErrLogNotFound
		}
		return l.GetLog(index, lg)
	})
}

func (w *walLog) StoreLog(lg *raft.Log) error { return w.StoreLogs([]*raft.Log{lg}) }

// StoreLogs appends logs. A failed append repairs the WAL (closes it,
// opens the directory again, which runs raft-wal's recovery from the
// files). A full segment whose successor could not be created fails every
// later append with ErrSealed until that reopen; nothing of the append was
// written, and it is tried once more on the repaired log. Other failures
// (a write or fsync error; the first fsync of a new segment, which opens
// its directory) v0.4.1 undoes in memory, where v0.4.0 left its memory
// ahead of its files and failed every later append as non-monotonic; but
// the entries may have reached the file before the failure, and an open
// would find them. raft, told they were not stored, appends them again
// after its own last index, so the repair cuts them off (never below what
// the log held before).
func (w *walLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	for retried := false; ; retried = true {
		var failed *wal.WAL
		var before uint64
		err := w.useFor(true, func(l *wal.WAL) error {
			failed = l
			var err error
			if before, err = l.LastIndex(); err != nil {
				return err
			}
			return l.StoreLogs(logs)
		})
		if err == nil || failed == nil || errors.Is(err, wal.ErrClosed) {
			return err
		}
		w.logger.Warn("raft log: append failed; reopening the log", "dir", w.dir, "err", err)
		sealed := errors.Is(err, types.ErrSealed)
		var cut uint64
		if !sealed {
			cut = max(logs[0].Index, before+1)
		}
		if rerr := w.repair(failed, cut); rerr != nil {
			return fmt.Errorf("%w; repairing the raft log: %v", err, rerr)
		}
		if !sealed || retried {
			return err
		}
	}
}

func (w *walLog) DeleteRange(min, max uint64) error {
	return w.use(func(l *wal.WAL) error { return l.DeleteRange(min, max) })
}

// IsMonotonic tells raft (through raft.LogCache) that the log cannot have
// gaps, as *wal.WAL does.
func (w *walLog) IsMonotonic() bool { return true }

// repair closes the WAL if it is still old (nil: already closed), opens
// the directory again (raft-wal's recovery reads the files) and cuts off
// the tail from cutFrom, if not 0. When opening or cutting fails, the WAL
// is left closed: the next append tries again at once, a read after
// walRepairBackoff.
func (w *walLog) repair(old *wal.WAL, cutFrom uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return wal.ErrClosed
	}
	if w.wal != old {
		return nil // another call repaired it already
	}
	if cutFrom > 0 && (w.cutFrom == 0 || cutFrom < w.cutFrom) {
		w.cutFrom = cutFrom
	}
	if w.wal != nil {
		// Both must be closed before opening again: the meta database
		// holds a file lock that a second open in this process waits on.
		err := errors.Join(w.wal.Close(), w.meta.Close())
		w.wal, w.meta = nil, nil
		if err != nil {
			w.logger.Warn("raft log: closing before the reopen", "err", err)
		}
	}
	l, err := openWALLog(w.dir, w.logger)
	if err != nil {
		w.retryAt = time.Now().Add(walRepairBackoff)
		return fmt.Errorf("cluster: reopen the raft log after a failed append: %w", err)
	}
	if w.cutFrom > 0 {
		last, err := l.wal.LastIndex()
		if err == nil && last >= w.cutFrom {
			err = l.wal.DeleteRange(w.cutFrom, last)
		}
		if err != nil {
			l.Close()
			w.retryAt = time.Now().Add(walRepairBackoff)
			return fmt.Errorf("cluster: cut the failed append off the raft log: %w", err)
		}
		w.cutFrom = 0
	}
	w.wal, w.meta = l.wal, l.meta
	w.logger.Info("raft log: reopened after a failed append", "dir", w.dir)
	return nil
}

func (w *walLog) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	if w.wal == nil {
		return nil
	}
	err := errors.Join(w.wal.Close(), w.meta.Close())
	w.wal, w.meta = nil, nil
	return err
}

func openWALLog(dir string, logger hclog.Logger) (*walLog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: create raft log dir: %w", err)
	}
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithLogger(logger), wal.WithSegmentSize(walSegmentSize))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("cluster: open raft log (wal): %w", err)
	}
	return &walLog{dir: dir, logger: logger, wal: w, meta: meta}, nil
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
