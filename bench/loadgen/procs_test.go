package main

import (
	"math"
	"os"
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
