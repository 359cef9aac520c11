package cluster

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/session"
)

// BenchmarkMemoryPolicy loads MEM_BENCH_N sessions (default 10000) of one
// 1 KiB value into a state machine, as a node applying its log would, and
// reports the peak and final RSS against the live heap. Run each case in
// its own process, since RSS never shrinks back for the next one:
//
//	MEM_BENCH_N=1000000 go test -run '^$' -bench 'MemoryPolicy/runtime-default' -benchtime 1x ./cluster/
//	MEM_BENCH_N=1000000 go test -run '^$' -bench 'MemoryPolicy/policy' -benchtime 1x ./cluster/
func BenchmarkMemoryPolicy(b *testing.B) {
	n := 10_000
	if s := os.Getenv("MEM_BENCH_N"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			b.Fatalf("MEM_BENCH_N=%q: want a positive integer", s)
		}
	}
	run := func(b *testing.B, limit int64) {
		release := acquireMemoryPolicy(limit, slog.New(slog.DiscardHandler))
		defer release()
		for b.Loop() {
			f := loadSessions(b, n)
			runtime.GC()
			sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
			metrics.Read(sample)
			live := float64(sample[0].Value.Uint64())
			rss, peak := procStatus(b, "VmRSS"), procStatus(b, "VmHWM")
			b.ReportMetric(live/float64(n), "live-B/session")
			b.ReportMetric(rss/float64(n), "rss-B/session")
			b.ReportMetric(rss/live, "rss/live")
			b.ReportMetric(peak/live, "peak-rss/live")
			runtime.KeepAlive(f)
		}
	}
	b.Run("runtime-default", func(b *testing.B) { run(b, -1) })
	b.Run("policy", func(b *testing.B) { run(b, 0) })
}

// loadSessions applies n session creations in batches of 64, pausing now
// and then as a node serving real traffic would, so that the policy's
// periodic look at the heap sees it grow.
func loadSessions(b *testing.B, n int) *fsm.FSM {
	f := fsm.New(fsm.Config{})
	value := bytes.Repeat([]byte{'v'}, 1024)
	now := time.Now()
	logs := make([]*raft.Log, 0, 64)
	for i := range n {
		data, err := fsm.EncodeChange(&session.Change{ID: "s-" + strconv.Itoa(i), Create: true, Delta: session.Delta{
			Ops: []session.Op{{Kind: session.OpSet, Key: "data", Value: value}}, IdleTimeout: time.Hour, Lifetime: time.Hour}})
		if err != nil {
			b.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: data, AppendedAt: now})
		if len(logs) == cap(logs) || i == n-1 {
			f.ApplyBatch(logs)
			logs = logs[:0]
		}
		if i%100_000 == 99_999 {
			time.Sleep(memoryPolicyPeriod)
		}
	}
	return f
}

// procStatus returns a size field of /proc/self/status in bytes.
func procStatus(b *testing.B, field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb * 1024
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}
