package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/session"
)

// logStores are the raft log stores every failover and contract test
// runs on.
var logStores = []string{LogStoreWAL, LogStoreBolt}

// forEachLogStore runs test once per log store, as subtests named after
// the store; use adds the store to a node's Config.
func forEachLogStore(t *testing.T, test func(t *testing.T, use func(*Config))) {
	for i, ls := range logStores {
		if testing.Short() && i > 0 {
			break // -short: the default store only
		}
		t.Run(ls, func(t *testing.T) {
			test(t, func(c *Config) { c.LogStore = ls })
		})
	}
}

func TestDataDirKeepsItsLogStore(t *testing.T) {
	for _, created := range logStores {
		t.Run(created, func(t *testing.T) {
			other := LogStoreBolt
			if created == LogStoreBolt {
				other = LogStoreWAL
			}
			cfg := testConfig(t, "solo", t.TempDir())
			fastElections(&cfg)
			cfg.LogStore = created
			n := mustStart(t, cfg)
			waitFor(t, 10*time.Second, "leader", n.IsLeader)
			id := session.NewID()
			r := create(t, n.Store(), id, "k", "v")
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
			if got, want := n.wal != nil, created == LogStoreWAL; got != want {
				t.Fatalf("node created with %q opened raft-wal: %v", created, got)
			}

			cfg.LogStore = other
			_, err := Start(ctxT(t, 10*time.Second), cfg)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "switching needs an empty data dir") {
				t.Fatalf("start a %q dir with LogStore %q: got %v, want ErrConfig saying switching needs an empty dir", created, other, err)
			}

			cfg.LogStore = ""
			n2 := mustStart(t, cfg)
			if got, want := n2.wal != nil, created == LogStoreWAL; got != want {
				t.Fatalf("restart of a %q dir without LogStore opened raft-wal: %v", created, got)
			}
			waitFor(t, 10*time.Second, "restarted node applies its log", func() bool {
				return n2.IsLeader() && n2.fsm.AppliedIndex() >= r.Index
			})
			rec, err := n2.Store().Load(ctxT(t, time.Second), id, session.LoadOptions{MinIndex: r.Index})
			if err != nil || string(rec.Values.Get("k")) != "v" {
				t.Fatalf("after restart: got %v, %v; want k=v", rec, err)
			}
		})
	}
}

func TestNewDataDirDefaultsToWAL(t *testing.T) {
	cfg := testConfig(t, "solo", t.TempDir())
	fastElections(&cfg)
	n := mustStart(t, cfg)
	if n.wal == nil {
		t.Fatal("a new data dir without LogStore did not get raft-wal")
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, walDirName)); err != nil {
		t.Fatalf("raft-wal dir: %v", err)
	}
}

func TestStartRejectsUnknownLogStore(t *testing.T) {
	cfg := testConfig(t, "solo", t.TempDir())
	cfg.LogStore = "rocks"
	if _, err := Start(ctxT(t, 5*time.Second), cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("LogStore %q: got %v, want ErrConfig", cfg.LogStore, err)
	}
}

func TestStartRefusesDataDirWithTwoLogs(t *testing.T) {
	cfg := testConfig(t, "solo", t.TempDir())
	fastElections(&cfg)
	cfg.LogStore = LogStoreBolt
	n := mustStart(t, cfg)
	waitFor(t, 10*time.Second, "leader", n.IsLeader)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(cfg.DataDir, walDirName)
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(walDir, "wal-meta.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.LogStore = ""
	if _, err := Start(ctxT(t, 5*time.Second), cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "both") {
		t.Fatalf("dir with a bolt log and a raft-wal dir: got %v, want ErrConfig naming both", err)
	}
}

// TestWALLogHidesCompactedEntries: after raft compacts the log, entries
// before the first index are gone for raft, as with bolt, so a follower
// that far behind gets a snapshot (raft-wal alone still returns them while
// they sit in its open segment).
func TestWALLogHidesCompactedEntries(t *testing.T) {
	w, err := openWALLog(filepath.Join(t.TempDir(), walDirName), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
	}
	if err := w.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := w.DeleteRange(1, 5); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := w.GetLog(5, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(5) after DeleteRange(1, 5): got %v (entry %d), want raft.ErrLogNotFound", err, l.Index)
	}
	if err := w.GetLog(6, &l); err != nil || l.Index != 6 {
		t.Fatalf("GetLog(6): got entry %d, %v; want entry 6", l.Index, err)
	}
}

// raft-wal creates the next segment file in the background once a segment
// is full, and v0.4.0 only logs a creation that failed: every append after
// it failed with ErrSealed until the process restarted. The log must
// append again once files can be created, and lose nothing.
func TestWALAppendsAgainAfterARotationFailed(t *testing.T) {
	old := walSegmentSize
	walSegmentSize = 64 << 10
	t.Cleanup(func() { walSegmentSize = old })
	dir := t.TempDir()
	l, err := openWALLog(dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var next uint64 = 1
	store := func() error {
		err := l.StoreLogs([]*raft.Log{{Index: next, Term: 1, Type: raft.LogCommand, Data: make([]byte, 4<<10)}})
		if err == nil {
			next++
		}
		return err
	}
	for range 5 {
		if err := store(); err != nil {
			t.Fatal(err)
		}
	}

	// Take every file descriptor the process may open, then fill the
	// segment: creating the next one fails.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	low := lim
	low.Cur = uint64(len(open) + 16)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	var hogs []*os.File
	release := func() {
		for _, f := range hogs {
			f.Close()
		}
		hogs = nil
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	t.Cleanup(release)
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		hogs = append(hogs, f)
	}
	failed := false
	for range 64 {
		if err := store(); err != nil {
			t.Logf("append with no descriptor free: %v", err)
			failed = true
			break
		}
	}
	if !failed {
		t.Fatal("64 appends of 4 KiB into 64 KiB segments needed no new segment")
	}
	release()

	for range 32 {
		if err := store(); err != nil {
			t.Fatalf("append %d after descriptors were free again: %v", next, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err = openWALLog(dir, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	last, err := l.LastIndex()
	if err != nil || last != next-1 {
		t.Fatalf("after a restart: last index %d (%v), want %d", last, err, next-1)
	}
	for i := uint64(1); i < next; i++ {
		var e raft.Log
		if err := l.GetLog(i, &e); err != nil || e.Index != i || len(e.Data) != 4<<10 {
			t.Fatalf("entry %d after a restart: %v (index %d, %d bytes)", i, err, e.Index, len(e.Data))
		}
	}
}
