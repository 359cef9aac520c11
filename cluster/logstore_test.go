package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// walRig is a raft-wal log of 64 KiB segments (about 15 entries of
// 4 KiB each) with the entries it acknowledged, for the failure tests.
type walRig struct {
	t    *testing.T
	dir  string
	l    *walLog
	next uint64 // the index of the next entry; every one below was acknowledged
	out  *lockedBuffer
}

// lockedBuffer is the rig's log output, written by raft-wal's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newWALRig(t *testing.T) *walRig {
	t.Helper()
	old := walSegmentSize
	walSegmentSize = 64 << 10
	t.Cleanup(func() { walSegmentSize = old })
	r := &walRig{t: t, dir: t.TempDir(), next: 1, out: &lockedBuffer{}}
	r.open()
	t.Cleanup(func() { r.l.Close() })
	for range 5 { // past the first segment's first fsync
		r.mustStore()
	}
	return r
}

func (r *walRig) open() {
	r.t.Helper()
	l, err := openWALLog(r.dir, hclog.New(&hclog.LoggerOptions{Output: r.out}))
	if err != nil {
		r.t.Fatal(err)
	}
	r.l = l
}

func walEntry(i uint64) string { return fmt.Sprintf("%0*d", 4<<10, i) }

// store appends the next entry, as raft does: after its own last index.
func (r *walRig) store() error {
	err := r.l.StoreLogs([]*raft.Log{{Index: r.next, Term: 1, Type: raft.LogCommand, Data: []byte(walEntry(r.next))}})
	if err == nil {
		r.next++
	}
	return err
}

func (r *walRig) mustStore() {
	r.t.Helper()
	if err := r.store(); err != nil {
		r.t.Fatalf("append %d: %v", r.next, err)
	}
}

func (r *walRig) segments() int {
	m, _ := filepath.Glob(filepath.Join(r.dir, "*.wal"))
	return len(m)
}

// check requires exactly the acknowledged entries, then the same after a
// restart.
func (r *walRig) check() {
	r.t.Helper()
	for _, when := range []string{"before a restart", "after a restart"} {
		last, err := r.l.LastIndex()
		if err != nil || last != r.next-1 {
			r.t.Fatalf("%s: last index %d (%v), want %d", when, last, err, r.next-1)
		}
		for i := uint64(1); i < r.next; i++ {
			var e raft.Log
			if err := r.l.GetLog(i, &e); err != nil || e.Index != i || string(e.Data) != walEntry(i) {
				r.t.Fatalf("%s: entry %d: %v (index %d)", when, i, err, e.Index)
			}
		}
		if when == "before a restart" {
			if err := r.l.Close(); err != nil {
				r.t.Fatal(err)
			}
			r.open()
		}
	}
}

// failPartWay starves the first append into a new segment of descriptors:
// it writes, then fails to open the directory for the new file's first
// fsync. It returns that append's error.
func (r *walRig) failPartWay() error {
	r.t.Helper()
	for range 5 {
		for n := r.segments(); r.segments() == n; {
			r.mustStore()
			time.Sleep(5 * time.Millisecond) // for a rotation to finish
		}
		hog := exhaustDescriptors(r.t)
		err := r.store()
		hog.release()
		if err != nil && !errors.Is(err, types.ErrSealed) {
			return err
		}
	}
	r.t.Fatal("no append failed part way for want of a descriptor: the case was not reproduced")
	return nil
}

// failRotation appends with no descriptor free until raft-wal could not
// create the next segment (it logged so, or an append met the sealed
// segment), and returns the hog, still holding every descriptor.
func (r *walRig) failRotation() *fdHog {
	r.t.Helper()
	hog := exhaustDescriptors(r.t)
	for range 64 {
		if err := r.store(); errors.Is(err, types.ErrSealed) {
			return hog // the log was slow to say so
		} else if err != nil {
			r.t.Fatalf("append %d: %v", r.next, err)
		}
		for end := time.Now().Add(5 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
			if strings.Contains(r.out.String(), "rotate error") {
				return hog
			}
		}
	}
	r.t.Fatal("no rotation failed for want of a descriptor: the case was not reproduced")
	return nil
}

// A full segment whose successor could not be created fails every later
// append with ErrSealed until the process restarts (raft-wal v0.4), and an
// append that failed part way left v0.4.0's memory ahead of its files and
// every later append non-monotonic (v0.4.1 undoes it in memory, but its
// entries can be in the file and come back at the next open). The log must
// append again once files can be opened, and keep exactly the entries it
// acknowledged, before and after a restart.
func TestWALAppendsAgainAfterAFailedAppend(t *testing.T) {
	t.Run("the next segment cannot be created", func(t *testing.T) {
		r := newWALRig(t)
		hog := r.failRotation()
		err := r.store()
		hog.release()
		if err == nil {
			t.Fatalf("append %d with no descriptor free after a failed rotation succeeded", r.next)
		}
		for range 32 {
			r.mustStore()
		}
		r.check()
	})
	t.Run("the first append after a failed rotation, with descriptors free", func(t *testing.T) {
		// The repair succeeds in the call that met the sealed segment,
		// and the append is tried again in it.
		r := newWALRig(t)
		r.failRotation().release()
		r.mustStore()
		r.check()
	})
	t.Run("an append fails part way", func(t *testing.T) {
		// The entry reached the file though the append failed, and the
		// repair's reopen finds it there: it must cut it off.
		r := newWALRig(t)
		t.Logf("append %d: %v", r.next, r.failPartWay())
		for range 32 {
			r.mustStore()
		}
		r.check()
	})
	t.Run("two appends fail part way", func(t *testing.T) {
		// The second repair must not cut where the first did.
		r := newWALRig(t)
		for range 2 {
			r.failPartWay()
			for range 20 {
				r.mustStore()
			}
		}
		r.check()
	})
	t.Run("the retry after a sealed segment fails part way", func(t *testing.T) {
		// The repair's reopen takes the one free descriptor, so the
		// retried append fails at the new segment's first fsync.
		r := newWALRig(t)
		hog := r.failRotation()
		hog.freeOne()
		err := r.store()
		hog.release()
		if err == nil || errors.Is(err, types.ErrSealed) {
			t.Fatalf("append %d with one descriptor free after a failed rotation: %v, want a failure part way", r.next, err)
		}
		r.mustStore()
		r.check()
	})
}

// raft truncates a follower's log where it conflicts with the leader's,
// and the repair above cuts a failed append: both are tail truncations,
// which raft-wal v0.4.0 left without an index block in a segment it then
// marked sealed, so that after a restart no entry of that segment could
// be read (hashicorp/raft-wal#31, fixed in v0.4.1).
func TestWALCutInsideASegmentSurvivesARestart(t *testing.T) {
	r := newWALRig(t) // entries 1-5 in the first segment
	if err := r.l.DeleteRange(4, 5); err != nil {
		t.Fatal(err)
	}
	r.next = 4
	for range 3 {
		r.mustStore()
	}
	r.check()
	r.mustStore()
	r.check()
}
