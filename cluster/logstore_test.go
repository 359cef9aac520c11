package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/raft-wal/types"

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

// fdHog takes the process's file descriptors: it lowers the limit and
// opens files until none is left.
type fdHog struct {
	lim   syscall.Rlimit
	files []*os.File
}

// exhaustDescriptors leaves the process no descriptor free. Undo it with
// release (also registered with t.Cleanup).
func exhaustDescriptors(t *testing.T) *fdHog {
	t.Helper()
	h := &fdHog{}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &h.lim); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	low := h.lim
	low.Cur = uint64(len(open) + 16)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	t.Cleanup(h.release)
	h.take()
	return h
}

// take opens files until none can be opened.
func (h *fdHog) take() {
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return
		}
		h.files = append(h.files, f)
	}
}

// freeOne gives one descriptor back.
func (h *fdHog) freeOne() {
	if n := len(h.files); n > 0 {
		h.files[n-1].Close()
		h.files = h.files[:n-1]
	}
}

// release gives every descriptor back and restores the limit.
func (h *fdHog) release() {
	for _, f := range h.files {
		f.Close()
	}
	h.files = nil
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &h.lim)
}

// raft-wal v0.4.0 has no way back from a failed append: a full segment
// whose successor could not be created fails every later append with
// ErrSealed, and an append that failed part way (here: the first fsync of
// a new segment, which opens the directory) leaves raft-wal's memory ahead
// of its files and every later append non-monotonic, until the process
// restarts. The log must append again once files can be opened, and keep
// exactly the entries it acknowledged.
func TestWALAppendsAgainAfterAFailedAppend(t *testing.T) {
	old := walSegmentSize
	walSegmentSize = 64 << 10 // 4 KiB entries: a segment holds about 15
	t.Cleanup(func() { walSegmentSize = old })
	for _, tc := range []struct {
		name string
		// fail makes an append fail for want of a descriptor and returns
		// its error; store appends the next entry, segments counts files.
		fail func(t *testing.T, store func() error, segments func() int) error
	}{
		{"the next segment cannot be created", func(t *testing.T, store func() error, segments func() int) error {
			defer exhaustDescriptors(t).release()
			for range 64 {
				if err := store(); err != nil {
					return err
				}
			}
			return nil
		}},
		{"an append fails part way", func(t *testing.T, store func() error, segments func() int) error {
			// The first append into a new segment fsyncs its directory,
			// which needs a descriptor: it fails after writing. Append
			// until an append sealed the segment and the rotation made
			// the next one, then starve the first append into it.
			for range 5 {
				for n := segments(); segments() == n; {
					if err := store(); err != nil {
						t.Fatal(err)
					}
					time.Sleep(5 * time.Millisecond) // for a rotation to finish
				}
				hog := exhaustDescriptors(t)
				err := store()
				hog.release()
				if err != nil && !errors.Is(err, types.ErrSealed) {
					return err
				}
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := openWALLog(dir, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			var next uint64 = 1
			entry := func(i uint64) string { return fmt.Sprintf("%0*d", 4<<10, i) }
			store := func() error {
				err := l.StoreLogs([]*raft.Log{{Index: next, Term: 1, Type: raft.LogCommand, Data: []byte(entry(next))}})
				if err == nil {
					next++
				}
				return err
			}
			segments := func() int {
				m, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
				return len(m)
			}
			for range 5 { // the first segment's first fsync is done
				if err := store(); err != nil {
					t.Fatal(err)
				}
			}
			err = tc.fail(t, store, segments)
			if err == nil {
				t.Fatal("no append failed for want of a descriptor: the case was not reproduced")
			}
			if sealed := errors.Is(err, types.ErrSealed); sealed != (tc.name == "the next segment cannot be created") {
				t.Fatalf("append %d with no descriptor free failed with another error than the case's: %v", next, err)
			}
			t.Logf("append %d with no descriptor free: %v", next, err)
			for range 32 {
				if err := store(); err != nil {
					t.Fatalf("append %d after descriptors were free again: %v", next, err)
				}
			}
			check := func(when string) {
				t.Helper()
				last, err := l.LastIndex()
				if err != nil || last != next-1 {
					t.Fatalf("%s: last index %d (%v), want %d", when, last, err, next-1)
				}
				for i := uint64(1); i < next; i++ {
					var e raft.Log
					if err := l.GetLog(i, &e); err != nil || e.Index != i || string(e.Data) != entry(i) {
						t.Fatalf("%s: entry %d: %v (index %d)", when, i, err, e.Index)
					}
				}
			}
			check("after the failure")
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if l, err = openWALLog(dir, hclog.NewNullLogger()); err != nil {
				t.Fatal(err)
			}
			check("after a restart")
		})
	}
}
