package main

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFitLine(t *testing.T) {
	// 130 µs per response plus 2 000 µs per raft entry, exactly.
	xs := []float64{1, 1.0 / 4, 1.0 / 26}
	ys := make([]float64, len(xs))
	for i, x := range xs {
		ys[i] = 130 + 2000*x
	}
	a, b := fitLine(xs, ys)
	if math.Abs(a-130) > 1e-6 || math.Abs(b-2000) > 1e-6 {
		t.Fatalf("fitLine = %v, %v; want 130, 2000", a, b)
	}
}

func TestReadProcCountsThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/io"); err != nil {
		t.Skip("no /proc/PID/io here")
	}
	pid := os.Getpid()
	a, err := readProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Burn 50 ms of CPU (by this process's own account: a busy machine
	// stretches the wall time) and make read and write calls.
	for c0 := selfCPU(); selfCPU()-c0 < 50*time.Millisecond; {
	}
	f, err := os.Create(t.TempDir() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		f.Write([]byte("x"))
		f.ReadAt(make([]byte, 1), 0)
	}
	f.Close()
	b, err := readProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	if b.cpu-a.cpu < 30*time.Millisecond {
		t.Errorf("CPU time grew by %v in /proc after 50 ms of CPU by getrusage", b.cpu-a.cpu)
	}
	if b.writes-a.writes < 10 || b.reads-a.reads < 10 {
		t.Errorf("system calls grew by %d reads, %d writes; want at least 10 each", b.reads-a.reads, b.writes-a.writes)
	}
}

func TestParsePIDs(t *testing.T) {
	pids, err := parsePIDs("12, 34")
	if err != nil || len(pids) != 2 || pids[0] != 12 || pids[1] != 34 {
		t.Fatalf("parsePIDs = %v, %v", pids, err)
	}
	for _, bad := range []string{"x", "0", "-3", "1,,y"} {
		if _, err := parsePIDs(bad); err == nil {
			t.Errorf("parsePIDs(%q) accepted", bad)
		}
	}
	if _, err := readProc(1 << 30); err == nil {
		t.Error("readProc of a pid that cannot exist succeeded")
	}
}

func TestParseSchedstat(t *testing.T) {
	run, w, err := parseSchedstat([]byte("123456 7890123 42\n"))
	if err != nil || run != 123456*time.Nanosecond || w != 7890123*time.Nanosecond {
		t.Fatalf("parseSchedstat = %v, %v, %v; want 123.456µs, 7.890123ms", run, w, err)
	}
	for _, bad := range []string{"", "1 2", "1 2 3 4", "1 x 3", "1 -2 3", "y 2 3", "-1 2 3"} {
		if _, _, err := parseSchedstat([]byte(bad)); err == nil {
			t.Errorf("parseSchedstat(%q) accepted", bad)
		}
	}
}

// TestRunqueueWaitCountsThreadsWaitingForACore runs twice as many spinning
// threads as there are cores: whatever the machine, half of them wait at
// any moment, and the wait must show up summed over the threads.
func TestRunqueueWaitCountsThreadsWaitingForACore(t *testing.T) {
	a, ok := runqueueWait(os.Getpid())
	if !ok {
		t.Skip("no /proc/PID/task/TID/schedstat here")
	}
	n := 2 * runtime.NumCPU()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(n))
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
			}
		}()
	}
	wg.Wait()
	b, ok := runqueueWait(os.Getpid())
	if !ok {
		t.Fatal("schedstat went away")
	}
	// n threads spinning for 200 ms on n/2 cores wait about 100 ms each;
	// one thread's share alone is far below half of their sum.
	if want := time.Duration(n) * 50 * time.Millisecond; b-a < want {
		t.Errorf("run-queue wait grew by %v with %d threads spinning for 200 ms on %d cores; want at least %v", b-a, n, n/2, want)
	}
}

func TestCPURowShowsRunqueueWait(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	r := Result{Workload: "w3", Conns: 8, RPS: 4000, OK: 32000, Entries: 4000, LoadgenCPUus: 40, LoadgenWaitUS: f(100),
		Procs: []ProcUsage{
			{CPUus: 170, Reads: 2, Writes: 1, WaitUS: f(300)},
			{CPUus: 120, Reads: 2, Writes: 1, WaitUS: f(200)},
			{CPUus: 120, Reads: 2, Writes: 1, WaitUS: f(250)},
		}}
	// 750 µs of waiting per response at 4 000 responses/s: 3 threads
	// waiting on average.
	want := "| W3 | 8 | 4 000 | 8.0 | 170 | 120 / 120 | 410 | 40 | 6.00 | 3.00 | 750 (3.0) | 100 |\n"
	if got := cpuRow(r); got != want {
		t.Errorf("cpuRow =\n%q\nwant\n%q", got, want)
	}
	// A node without schedstat leaves the wait unknown, not zero.
	r.Procs[1].WaitUS, r.LoadgenWaitUS = nil, nil
	if got := cpuRow(r); !strings.HasSuffix(got, "| 6.00 | 3.00 | – | – |\n") {
		t.Errorf("cpuRow without schedstat = %q", got)
	}
}

func TestPerResponseUnknown(t *testing.T) {
	if v := perResponse(3*time.Millisecond, true, 1000); v == nil || *v != 3 {
		t.Errorf("perResponse(3ms over 1000) = %v, want 3 µs", v)
	}
	if v := perResponse(time.Millisecond, false, 1000); v != nil {
		t.Errorf("perResponse of an uncounted wait = %v, want nil", *v)
	}
	// A thread that exited between the samples can make the difference
	// negative: unknown, not a negative wait.
	if v := perResponse(-time.Millisecond, true, 1000); v != nil {
		t.Errorf("perResponse of a negative difference = %v, want nil", *v)
	}
}

func TestRunqueueWaitInSumsThreadsAndRefusesZeros(t *testing.T) {
	tasks := func(lines ...string) string {
		dir := t.TempDir()
		for i, l := range lines {
			d := filepath.Join(dir, strconv.Itoa(100+i))
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, "schedstat"), []byte(l), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	if w, ok := runqueueWaitIn(tasks("100 50 1\n", "200 25 2\n")); !ok || w != 75 {
		t.Errorf("two threads: wait %v, ok %v; want 75ns, true", w, ok)
	}
	// A kernel with its scheduler statistics turned off shows zeros.
	if w, ok := runqueueWaitIn(tasks("0 0 0\n", "0 0 0\n")); ok {
		t.Errorf("zeros: wait %v counted as measured", w)
	}
	if _, ok := runqueueWaitIn(filepath.Join(t.TempDir(), "gone")); ok {
		t.Error("a process that is gone counted as measured")
	}
}
