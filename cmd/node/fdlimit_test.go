package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	wal "github.com/hashicorp/raft-wal"

	"github.com/raftsession/raftsession/internal/nodeproc"
)

// fdLimit is the descriptor limit (soft and hard: Go raises a soft limit
// to the hard one at start) the node runs with. An idle single node holds
// about 20.
const fdLimit = 200

// startProcFDLimit is startProc for a node whose RLIMIT_NOFILE is limit:
// sh sets it and execs the node, so the process is the node itself.
func startProcFDLimit(t *testing.T, limit int, args ...string) *proc {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh to set the descriptor limit with: %v", err)
	}
	var flags []string
	if os.Getenv("FDLIMIT_NODE_RACE") == "1" {
		flags = append(flags, "-race") // the node itself, not only the test, under the race detector
	}
	bin := nodeproc.MustBuild(t, nodeproc.NodePackage, flags...)
	base := []string{"-http", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-raft", "127.0.0.1:0", "-gossip", "127.0.0.1:0"}
	script := fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, limit)
	p := nodeproc.MustStart(t, nodeproc.Spec{Path: sh, Name: "node fd-limited",
		Args: append([]string{"-c", script, bin}, append(base, args...)...)})
	a, err := p.WaitServing(30 * time.Second)
	if err != nil {
		t.Fatalf("node did not start serving: %v", err)
	}
	lim, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.Pid()))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if !regexp.MustCompile(`Max open files\s+` + strconv.Itoa(limit) + `\s+` + strconv.Itoa(limit) + `\s`).Match(lim) {
		t.Fatalf("the node does not run with a descriptor limit of %d:\n%s", limit, lim)
	}
	return &proc{Proc: p, http: "http://" + a["http"], admin: "http://" + a["admin"], gossip: a["gossip"]}
}

// openFDs counts the process's open descriptors.
func openFDs(pid int) (int, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(es), err
}

// checkCleanLog fails t on a panic, a fatal runtime error or a data race
// in a node's output, and on an ERROR line after the first since bytes of
// it (once the node has recovered, it must not report failures). ERROR
// lines before that are the clear errors the shortage is allowed to cause:
// they are only logged.
func checkCleanLog(t *testing.T, name, log string, since int) {
	t.Helper()
	var reported []string
	off := 0
	for line := range strings.Lines(log) {
		at := off
		off += len(line)
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "panic:") || strings.Contains(line, "fatal error:") ||
			strings.HasPrefix(line, "goroutine ") || strings.Contains(line, "DATA RACE"):
			t.Errorf("%s crashed or raced: %s", name, line)
		case strings.Contains(line, "level=ERROR") && at >= since:
			t.Errorf("%s logged an error after it had recovered: %s", name, line)
		case strings.Contains(line, "level=ERROR"):
			reported = append(reported, line)
		}
	}
	if len(reported) > 0 {
		t.Logf("%s reported %d errors while out of descriptors; the first: %s", name, len(reported), reported[0])
	}
}

// attempt is one request made while the node had no descriptor free.
type attempt struct {
	what string
	err  error
	code int
}

// TestRecoversAfterRunningOutOfDescriptors runs a node process with a
// low descriptor limit and exhausts it with idle connections to the app
// port. The node must keep running, serve again once the connections are
// gone, have lost nothing, and stop and restart cleanly.
func TestRecoversAfterRunningOutOfDescriptors(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node processes")
	}
	data := t.TempDir()
	args := []string{"-id", "fd1", "-data", data}
	p := startProcFDLimit(t, fdLimit, args...)
	p.waitReady(t)
	pid := p.Pid()

	// alice's writes go over the connection her client keeps alive; bob's
	// each dial anew (his client's idle connections are closed first).
	alice, bob := newBrowser(t), newBrowser(t)
	expect(t, "alice login", alice.do("POST", p.http+"/api/login?user=alice"), 200)
	expect(t, "alice views", alice.do("POST", p.http+"/api/views"), 200)
	expect(t, "alice views", alice.do("POST", p.http+"/api/views"), 200)
	expect(t, "alice note", aliceNote(alice, p.http, "before"), 204)
	expect(t, "bob login", bob.do("POST", p.http+"/api/login?user=bob"), 200)
	bobTr := bob.c.http.Transport.(*http.Transport)
	baseline, err := openFDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("descriptors open before the flood: %d of %d", baseline, fdLimit)

	// Flood: more idle connections than the node has descriptors. The
	// kernel completes the handshakes of those the node cannot accept and
	// queues them on the listener.
	start := time.Now()
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	dialErrs := 0
	for range fdLimit + 50 {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.http, "http://"), time.Second)
		if err != nil {
			dialErrs++
			continue
		}
		flood = append(flood, c)
	}
	peak := 0
	nodeproc.WaitFor(t, 5*time.Second, "the node to run out of descriptors", func() error {
		if !p.Running() {
			return nodeproc.Abort(fmt.Errorf("the node exited:\n%s", p.Tail(30)))
		}
		n, err := openFDs(pid)
		if err != nil {
			return err
		}
		peak = max(peak, n)
		if n < fdLimit-1 {
			return fmt.Errorf("%d descriptors open", n)
		}
		return nil
	})
	t.Logf("flood: %d connections open (%d dials failed), the node holds %d descriptors", len(flood), dialErrs, peak)

	// While the descriptors are gone: writes may fail, the process must
	// not exit.
	var tries []attempt
	short := func(b *browser, what, method, url string) {
		old := b.c.http.Timeout
		b.c.http.Timeout = 700 * time.Millisecond
		defer func() { b.c.http.Timeout = old }()
		r, err := b.try(method, url)
		tries = append(tries, attempt{what: what, err: err, code: r.status})
	}
	aliceTried, aliceOK := 0, 0
	for time.Since(start) < 2*time.Second || len(tries) < 4 {
		short(alice, "alice views (kept-alive connection)", "POST", p.http+"/api/views")
		aliceTried++
		if a := tries[len(tries)-1]; a.err == nil && a.code == 200 {
			aliceOK++
		}
		bobTr.CloseIdleConnections()
		short(bob, "bob views (new connection)", "POST", p.http+"/api/views")
		if !p.Running() {
			t.Fatalf("the node exited while out of descriptors (%v):\n%s", p.Err(), p.Tail(40))
		}
	}
	for _, a := range tries {
		t.Logf("while out of descriptors: %s: status %d, err %v", a.what, a.code, a.err)
	}
	if n, err := openFDs(pid); err == nil {
		t.Logf("descriptors at the end of the flood: %d", n)
	}
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	released := time.Now()

	// (a) still running.
	if !p.Running() {
		t.Fatalf("the node exited after the flood (%v):\n%s", p.Err(), p.Tail(40))
	}
	// (b) new connections, writes and reads work again within seconds.
	bobTr.CloseIdleConnections()
	nodeproc.WaitFor(t, 10*time.Second, "a write on a new connection after the flood", func() error {
		if !p.Running() {
			return nodeproc.Abort(fmt.Errorf("the node exited:\n%s", p.Tail(30)))
		}
		bobTr.CloseIdleConnections()
		r, err := bob.try("POST", p.http+"/api/views")
		if err != nil {
			return err
		}
		if r.status != 200 {
			return fmt.Errorf("status %d %q", r.status, r.body)
		}
		return nil
	})
	t.Logf("a new connection wrote again %v after the flood ended", time.Since(released).Round(time.Millisecond))
	recovered := len(p.Log())
	if err := nodeproc.GetOK(p.admin + "/readyz"); err != nil {
		t.Fatalf("readyz after the flood: %v", err)
	}
	r := alice.do("POST", p.http+"/api/views")
	expect(t, "alice views after the flood", r, 200)
	views := decode[map[string]int64](t, r)["views"]
	// (c) nothing lost: the two views before, each acknowledged one, and
	// at most every attempted one (a request that timed out on the client
	// may still have been applied).
	if lo, hi := int64(2+aliceOK+1), int64(2+aliceTried+1); views < lo || views > hi {
		t.Fatalf("alice's views after the flood: %d, want between %d and %d", views, lo, hi)
	}
	checkAlice(t, alice, p.http, views)

	// The descriptors the flood took are given back.
	nodeproc.WaitFor(t, 10*time.Second, "the node to close the flood's connections", func() error {
		n, err := openFDs(pid)
		if err != nil {
			return err
		}
		if n > baseline+10 {
			return fmt.Errorf("%d descriptors open, %d before the flood", n, baseline)
		}
		return nil
	})

	// (d) a graceful stop and a restart on the same data dir keep it all.
	if err := p.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if code := p.ExitCode(); code != 0 {
		t.Fatalf("exit code after SIGTERM: got %d, want 0\n%s", code, p.Tail(40))
	}
	if !strings.Contains(p.Log(), "msg=stopped") {
		t.Fatalf("no orderly stop in the log:\n%s", p.Tail(40))
	}
	if strings.Contains(p.Log(), "too many open files") {
		t.Logf("the node reported the shortage: %s", firstLineWith(p.Log(), "too many open files"))
	}
	checkCleanLog(t, p.Name(), p.Log(), recovered)

	p2 := startProcFDLimit(t, fdLimit, args...)
	p2.waitReady(t)
	checkAlice(t, alice, p2.http, views)
	r = alice.do("POST", p2.http+"/api/views")
	expect(t, "alice views after the restart", r, 200)
	if got := decode[map[string]int64](t, r)["views"]; got != views+1 {
		t.Fatalf("alice's views after the restart: %d, want %d", got, views+1)
	}
	if err := p2.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if code := p2.ExitCode(); code != 0 {
		t.Fatalf("exit code of the restarted node after SIGTERM: got %d, want 0\n%s", code, p2.Tail(40))
	}
	checkCleanLog(t, p2.Name()+" (restarted)", p2.Log(), 0)
}

func aliceNote(b *browser, base, v string) response {
	b.t.Helper()
	r, err := putValue(b, base, "note", v, 0)
	if err != nil {
		b.t.Fatalf("PUT note: %v", err)
	}
	return r
}

// putValue sets the value of key in b's session (PUT
// /api/session/values/{key}), with a request timeout when timeout > 0.
// Like browser.try it keeps the cookie the node sends back.
func putValue(b *browser, base, key, v string, timeout time.Duration) (response, error) {
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	return b.send(ctx, "PUT", base+"/api/session/values/"+key, strings.NewReader(v))
}

// checkAlice reads alice's session on base: hers, with the note written
// before the flood and views views.
func checkAlice(t *testing.T, alice *browser, base string, views int64) {
	t.Helper()
	r := alice.do("GET", base+"/api/session")
	expect(t, "alice's session", r, 200)
	s := decode[sessionJSON](t, r)
	if s.New || s.Owner != "user:alice" || s.Values["note"] != "before" || s.Values["views"] != strconv.FormatInt(views, 10) {
		t.Fatalf("alice's session: got %+v, want owner user:alice, note \"before\", views %d", s, views)
	}
}

func firstLineWith(log, substr string) string {
	for line := range strings.Lines(log) {
		if strings.Contains(line, substr) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// walSegmentSize is raft-wal's default segment size, which the node uses:
// a segment is sealed and a new segment file created once this much log
// is in it.
var walSegmentSize = int64(wal.DefaultSegmentSize)

// walSegments lists the raft-wal segment files of the data dir, oldest
// first (the names start with the zero-padded base index).
func walSegments(data string) ([]string, error) {
	es, err := os.ReadDir(filepath.Join(data, "wal"))
	if err != nil {
		return nil, err
	}
	var segs []string
	for _, e := range es {
		if strings.HasSuffix(e.Name(), ".wal") {
			segs = append(segs, filepath.Join(data, "wal", e.Name()))
		}
	}
	slices.Sort(segs)
	return segs, nil
}

// walTailFill returns how far the newest segment file is written: raft-wal
// preallocates a segment and writes it from the front, so it is where the
// zeros begin (found by bisection on 4 KiB blocks).
func walTailFill(data string) (int64, error) {
	segs, err := walSegments(data)
	if err != nil || len(segs) == 0 {
		return 0, fmt.Errorf("no segment: %v", err)
	}
	f, err := os.Open(segs[len(segs)-1])
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	const block = 4096
	zero := func(i int64) bool {
		var b [block]byte
		n, _ := f.ReadAt(b[:], i*block)
		for _, c := range b[:n] {
			if c != 0 {
				return false
			}
		}
		return true
	}
	lo, hi := int64(0), st.Size()/block // first zero block is in [lo, hi]
	for lo < hi {
		mid := (lo + hi) / 2
		if zero(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo * block, nil
}

// blobWriter writes numbered values of about 60 KiB into one session.
type blobWriter struct {
	b            *browser
	acked, tried int // highest sequence number acknowledged / sent
	fails        int // consecutive failures
	lastErr      string
}

func blob(seq int) string {
	return fmt.Sprintf("%08d|", seq) + strings.Repeat("x", 60000)
}

func (w *blobWriter) put(base string, timeout time.Duration) bool {
	w.tried++
	r, err := putValue(w.b, base, "blob", blob(w.tried), timeout)
	if err == nil && r.status == http.StatusNoContent {
		w.acked, w.fails = w.tried, 0
		return true
	}
	w.fails++
	if err != nil {
		w.lastErr = err.Error()
	} else {
		w.lastErr = fmt.Sprintf("status %d %q", r.status, strings.TrimSpace(r.body))
	}
	return false
}

// check reads the session's blob on base: the last acknowledged value or
// a later one that was sent (a request that failed may still have been
// applied), never an older one.
func (w *blobWriter) check(t *testing.T, base string) {
	t.Helper()
	r := w.b.do("GET", base+"/api/session/values/blob")
	expect(t, "GET blob", r, 200)
	seq, err := strconv.Atoi(strings.SplitN(r.body, "|", 2)[0])
	if err != nil || r.body != blob(seq) {
		t.Fatalf("blob: got %.20q… (%d bytes)", r.body, len(r.body))
	}
	if seq < w.acked || seq > w.tried {
		t.Fatalf("blob: got value %d, want between %d (last acknowledged) and %d (last sent)", seq, w.acked, w.tried)
	}
}

// TestWALRotationWhileOutOfDescriptors fills the raft log's segment to
// just below its size, exhausts the node's descriptors with idle
// connections to the app port, and writes on over kept-alive connections,
// so that raft-wal seals the segment and has to create the next one while
// no descriptor is free. Once the connections are gone the node must
// write again, lose nothing, and restart cleanly.
//
// raft-wal's (v0.4) rotation goroutine only logs "rotate error" when
// creating the next segment fails (too many open files); its in-memory
// tail stays the sealed segment and every later append fails with
// "segment is sealed". Until the cluster package reopened the log on
// that error, the node stepped down on every election it won and wrote
// nothing until it was restarted.
func TestWALRotationWhileOutOfDescriptors(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node processes")
	}
	data := t.TempDir()
	args := []string{"-id", "fd2", "-data", data}
	p := startProcFDLimit(t, fdLimit, args...)
	p.waitReady(t)
	pid := p.Pid()

	const writers = 8
	ws := make([]*blobWriter, writers)
	for i := range ws {
		ws[i] = &blobWriter{b: newBrowser(t)}
		expect(t, "login", ws[i].b.do("POST", p.http+fmt.Sprintf("/api/login?user=w%d", i)), 200)
	}
	// writeUntil runs every writer (each over its kept-alive connection)
	// until stop says so, and returns how many writes were acknowledged.
	writeUntil := func(timeout time.Duration, stop func() bool) int {
		var done atomic.Bool
		var acked atomic.Int64
		var wg sync.WaitGroup
		for _, w := range ws {
			wg.Go(func() {
				for !done.Load() && w.fails < 3 {
					if w.put(p.http, timeout) {
						acked.Add(1)
					}
				}
			})
		}
		for !stop() {
			time.Sleep(10 * time.Millisecond)
		}
		done.Store(true)
		wg.Wait()
		return int(acked.Load())
	}

	// Fill the first segment to 3 MiB below its size.
	start := time.Now()
	n := writeUntil(0, func() bool {
		fill, err := walTailFill(data)
		return err != nil || fill >= walSegmentSize-3<<20 || time.Since(start) > 30*time.Second
	})
	fill, err := walTailFill(data)
	if err != nil {
		t.Fatal(err)
	}
	segs, _ := walSegments(data)
	t.Logf("filled: %d writes in %v, segment %d of %d MiB written, %d segment files", n,
		time.Since(start).Round(time.Millisecond), fill>>20, walSegmentSize>>20, len(segs))
	if len(segs) != 1 || fill < walSegmentSize-3<<20 {
		t.Fatalf("want one segment filled to 3 MiB below its size, have %d segments, %d bytes", len(segs), fill)
	}
	for _, w := range ws {
		if w.fails > 0 {
			t.Fatalf("a write before the flood failed: %s", w.lastErr)
		}
	}

	// Exhaust the descriptors.
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	flooded := time.Now()
	for range fdLimit + 50 {
		if c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.http, "http://"), time.Second); err == nil {
			flood = append(flood, c)
		}
	}
	nodeproc.WaitFor(t, 3*time.Second, "the node to run out of descriptors", func() error {
		if n, err := openFDs(pid); err != nil || n < fdLimit-1 {
			return fmt.Errorf("%d descriptors open (%v)", n, err)
		}
		return nil
	})

	// Write on over the kept-alive connections until the segment is full
	// (raft-wal rotates right after the write that seals it). The idle
	// connections are cut by the node's 5 s header timeout, so this must
	// end well before that.
	rotated := func() bool {
		s, _ := walSegments(data)
		return len(s) > 1
	}
	n = writeUntil(time.Second, func() bool {
		return rotated() || strings.Contains(p.Log(), "rotate error") || time.Since(flooded) > 3500*time.Millisecond
	})
	// A rotation that was triggered finishes or fails in the background.
	_ = nodeproc.Poll(2*time.Second, func() error {
		if rotated() || strings.Contains(p.Log(), "rotate error") {
			return nil
		}
		return errors.New("no rotation yet")
	})
	fds, _ := openFDs(pid)
	segs, _ = walSegments(data)
	fill, _ = walTailFill(data)
	t.Logf("while out of descriptors (%d open): %d writes acknowledged, %d segment files, tail segment at %d bytes",
		fds, n, len(segs), fill)
	for i, w := range ws {
		if w.fails > 0 {
			t.Logf("writer %d: %d failed writes, last: %s", i, w.fails, w.lastErr)
		}
	}
	if l := firstLineWith(p.Log(), "rotate error"); l != "" {
		t.Logf("node log: %s", l)
	} else {
		t.Fatalf("the segment's rotation did not fail while the node was out of descriptors (%d segment files, tail at %d bytes): this run tests nothing", len(segs), fill)
	}
	if !p.Running() {
		t.Fatalf("the node exited while out of descriptors (%v):\n%s", p.Err(), p.Tail(40))
	}
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	released := time.Now()

	// Writes must work again within seconds, over new connections and the
	// kept-alive ones alike.
	for _, w := range ws {
		w.b.c.http.Transport.(*http.Transport).CloseIdleConnections()
	}
	var lastErr string
	recovered := -1
	err = nodeproc.Poll(8*time.Second, func() error {
		if !p.Running() {
			return nodeproc.Abort(fmt.Errorf("the node exited:\n%s", p.Tail(30)))
		}
		w := ws[0]
		w.fails = 0
		if !w.put(p.http, 2*time.Second) {
			lastErr = w.lastErr
			return errors.New(w.lastErr)
		}
		return nil
	})
	if err != nil {
		t.Errorf("no write succeeded in the 8 s after the flood ended: %v\nlast error: %s\nnode log:\n%s",
			err, lastErr, grepLog(p.Log(), 24, "level=ERROR", "rotate", "sealed"))
	} else {
		t.Logf("writes work again %v after the flood ended", time.Since(released).Round(time.Millisecond))
		recovered = len(p.Log())
		for _, w := range ws {
			w.fails = 0
			if !w.put(p.http, 5*time.Second) {
				t.Errorf("a write after the flood: %s", w.lastErr)
			}
		}
		for _, w := range ws {
			w.check(t, p.http)
		}
		if s, _ := walSegments(data); len(s) < 2 {
			t.Errorf("the node writes again but the log still has %d segment file(s)", len(s))
		}
	}

	// A graceful stop and a restart on the same data dir keep every
	// acknowledged write, and the restarted node writes.
	if err := p.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if code := p.ExitCode(); code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0\n%s", code, p.Tail(20))
	}
	if recovered < 0 {
		recovered = math.MaxInt // it never did: failed above already
	}
	checkCleanLog(t, p.Name(), p.Log(), recovered)
	p2 := startProcFDLimit(t, fdLimit, args...)
	p2.waitReady(t)
	for _, w := range ws {
		w.check(t, p2.http)
	}
	for _, w := range ws {
		w.fails = 0
		if !w.put(p2.http, 5*time.Second) {
			t.Fatalf("a write after the restart: %s", w.lastErr)
		}
		w.check(t, p2.http)
	}
	if err := p2.Stop(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	checkCleanLog(t, p2.Name()+" (restarted)", p2.Log(), 0)
}

// grepLog returns the lines of log that contain any of pats, at most n
// (the first and the last n/2).
func grepLog(log string, n int, pats ...string) string {
	var out []string
	for line := range strings.Lines(log) {
		for _, p := range pats {
			if strings.Contains(line, p) {
				out = append(out, strings.TrimRight(line, "\n"))
				break
			}
		}
	}
	if len(out) > n {
		out = append(out[:n/2], append([]string{"…"}, out[len(out)-n/2:]...)...)
	}
	return strings.Join(out, "\n")
}
