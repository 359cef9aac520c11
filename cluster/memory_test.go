package cluster

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestGCPercentFor(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 100}, {32 << 20, 100}, {gcHeadroom, 100}, {128 << 20, 50}, {320 << 20, 20},
		{1 << 30, gcPercentFloor}, {4 << 30, gcPercentFloor},
	} {
		if got := gcPercentFor(tc.live); got != tc.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}

func TestReadCgroupLimit(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		want          uint64
	}{
		{"v2 limit", "2147483648\n", 2 << 30},
		{"v2 none", "max\n", 0},
		{"v1 none", "9223372036854771712\n", 0},
		{"garbage", "lots\n", 0},
	} {
		p := filepath.Join(dir, "memory.max")
		if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := readCgroupLimit(p); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
	if got := readCgroupLimit(filepath.Join(dir, "missing")); got != 0 {
		t.Errorf("missing file: got %d, want 0", got)
	}
}

// TestMemoryPolicyRestores: the policy is shared by the nodes of a
// process and undone when the last one releases it; a negative limit
// never touches the runtime.
func TestMemoryPolicyRestores(t *testing.T) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOGC or GOMEMLIMIT set: the policy stays off")
	}
	log := slog.New(slog.DiscardHandler)
	current := func() int64 { return debug.SetMemoryLimit(-1) }
	before, beforeGC := current(), debug.SetGCPercent(-1)
	debug.SetGCPercent(beforeGC)

	const limit = 3 << 40
	r1 := acquireMemoryPolicy(limit, log)
	r2 := acquireMemoryPolicy(limit/2, log) // a second node joins the first's policy
	if got := current(); got != limit {
		t.Fatalf("memory limit %d, want %d", got, limit)
	}
	r1()
	r1() // idempotent
	if got := current(); got != limit {
		t.Fatalf("after the first release: memory limit %d, want %d", got, limit)
	}
	r2()
	if got := current(); got != before {
		t.Fatalf("after the last release: memory limit %d, want %d", got, before)
	}
	if gc := debug.SetGCPercent(-1); gc != beforeGC {
		t.Fatalf("after the last release: GOGC %d, want %d", gc, beforeGC)
	} else {
		debug.SetGCPercent(gc)
	}

	off := acquireMemoryPolicy(-1, log)
	if got := current(); got != before {
		t.Fatalf("opted out: memory limit %d, want %d", got, before)
	}
	off()
}
