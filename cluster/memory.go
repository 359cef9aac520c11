package cluster

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The memory policy (see Config.MemoryLimit). A node's memory is its
// sessions: nearly all of the heap is live session state that stays for
// hours. The runtime's default, GOGC=100, lets the heap grow to twice the
// live data between collections, so RSS doubles the sessions. A lower
// GOGC costs more collections: each marks the whole live heap, and a
// write over HTTP allocates a few kilobytes (the request, the command and
// its decodes, about 7-12 KB per W3 request on the nodes of a 3-node
// cluster), so collections come every few thousand writes. The memory
// saved is most of a gigabyte at a million sessions; the CPU spent was
// 12 % of a node's after 150k sessions created at full speed.
//
// The GC's CPU per byte allocated grows with live/headroom, which
// gcPercentFloor caps at 100/gcPercentFloor. Measured filling 1M
// sessions of 1 KiB over HTTP (docs/BENCHMARKS.md): three nodes with floor
// 30 and 256 MiB of headroom ended at 1.83-2.0 GiB RSS each, with floor 10
// and 64 MiB at 1.64-1.69 GiB, filling 20% slower on 2 shared cores; on
// one node floor 5 reached 1.60 GiB but cut the fill rate by 40%.
const (
	// gcHeadroom is the room the heap gets above the live data while that
	// is small: heaps under it keep GOGC=100, so a little app pays no GC
	// cost for the policy.
	gcHeadroom = 64 << 20
	// gcPercentFloor bounds GOGC from below once the live heap exceeds
	// gcHeadroom*100/gcPercentFloor (640 MiB): the heap then peaks about
	// 10% above the live data.
	gcPercentFloor = 10
	// cgroupShare is the part of a cgroup memory limit given to the Go
	// heap as its soft limit; the rest covers stacks, the runtime's own
	// structures and memory that is not Go's (mapped log segments).
	cgroupShare = 0.9
	// memoryPolicyPeriod is how often the live heap is checked.
	memoryPolicyPeriod = 2 * time.Second
)

// gcPercentFor returns the GOGC for a live heap of live bytes: headroom of
// gcHeadroom, but no less than gcPercentFloor percent, and no more than
// the runtime's default of 100.
func gcPercentFor(live uint64) int {
	if live <= gcHeadroom {
		return 100
	}
	return max(int(uint64(gcHeadroom)*100/live), gcPercentFloor)
}

// memoryPolicy is process-wide, like the settings it changes: the first
// node that starts applies it, the last one that closes restores what it
// found.
var memoryPolicy struct {
	sync.Mutex
	users   int
	restore func()
}

// acquireMemoryPolicy applies the policy Config.MemoryLimit describes,
// unless another node of this process already has, and returns the
// function that releases it.
func acquireMemoryPolicy(limit int64, log *slog.Logger) (release func()) {
	if limit < 0 {
		return func() {}
	}
	if limit == 0 && (os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "") {
		log.Info("memory policy: GOGC or GOMEMLIMIT is set; leaving the runtime's settings alone")
		return func() {}
	}
	memoryPolicy.Lock()
	defer memoryPolicy.Unlock()
	memoryPolicy.users++
	if memoryPolicy.users == 1 {
		memoryPolicy.restore = startMemoryPolicy(limit, log)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			memoryPolicy.Lock()
			defer memoryPolicy.Unlock()
			if memoryPolicy.users--; memoryPolicy.users == 0 {
				memoryPolicy.restore()
				memoryPolicy.restore = nil
			}
		})
	}
}

// startMemoryPolicy sets the soft memory limit (limit, or the cgroup's
// share when limit is 0 and there is a cgroup limit) and starts the
// goroutine that lowers GOGC as the live heap grows. It returns the
// function that stops the goroutine and restores the previous settings.
func startMemoryPolicy(limit int64, log *slog.Logger) func() {
	source := "Config.MemoryLimit"
	if limit == 0 {
		if cg := cgroupMemoryLimit(); cg > 0 {
			limit, source = int64(float64(cg)*cgroupShare), "cgroup memory limit"
		}
	}
	prevLimit := int64(-1)
	if limit > 0 {
		prevLimit = debug.SetMemoryLimit(limit)
		log.Info("memory policy: soft memory limit", "bytes", limit, "from", source)
	}
	prevGC := debug.SetGCPercent(100)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		adaptGCPercent(stop, log)
	}()
	return func() {
		close(stop)
		<-done
		debug.SetGCPercent(prevGC)
		if prevLimit >= 0 {
			debug.SetMemoryLimit(prevLimit)
		}
	}
}

// adaptGCPercent sets GOGC from the live heap every memoryPolicyPeriod
// until stop is closed.
func adaptGCPercent(stop <-chan struct{}, log *slog.Logger) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(memoryPolicyPeriod)
	defer t.Stop()
	current := 100
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // a runtime without the metric: keep the default
		}
		live := sample[0].Value.Uint64()
		if p := gcPercentFor(live); p != current {
			debug.SetGCPercent(p)
			log.Debug("memory policy: GOGC", "percent", p, "live_heap", live)
			current = p
		}
	}
}

// cgroupMemoryLimit returns the memory limit of this process's cgroup
// (v2, or v1) or of the nearest limited ancestor, or 0 when there is none
// or it cannot be read.
func cgroupMemoryLimit() uint64 {
	type hierarchy struct{ root, rel, file string }
	var found []hierarchy
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			// v2: "0::/path"; v1: "N:memory:/path" (or "N:a,memory,b:/path").
			parts := strings.SplitN(sc.Text(), ":", 3)
			if len(parts) != 3 {
				continue
			}
			switch {
			case parts[0] == "0" && parts[1] == "":
				found = append(found, hierarchy{"/sys/fs/cgroup", parts[2], "memory.max"})
			case containsField(parts[1], "memory"):
				found = append(found, hierarchy{"/sys/fs/cgroup/memory", parts[2], "memory.limit_in_bytes"})
			}
		}
	}
	var limit uint64
	for _, h := range found {
		// Walk up to the root: a limit on a parent (a systemd slice, the
		// container) bounds this process as well.
		for dir := filepath.Join(h.root, h.rel); strings.HasPrefix(dir, h.root); dir = filepath.Dir(dir) {
			if n := readCgroupLimit(filepath.Join(dir, h.file)); n > 0 && (limit == 0 || n < limit) {
				limit = n
			}
			if dir == h.root {
				break
			}
		}
	}
	return limit
}

func containsField(list, name string) bool {
	for f := range strings.SplitSeq(list, ",") {
		if f == name {
			return true
		}
	}
	return false
}

// readCgroupLimit reads a memory limit file: a number of bytes, or "max"
// (v2) or a huge number (v1) for none. It returns 0 for none and for a
// file it cannot read.
func readCgroupLimit(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n >= 1<<60 {
		return 0
	}
	return n
}
