package fsm

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/btree"
	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/session"
)

// Benchmarks that build a state use FSM_BENCH_N sessions (default 10000,
// small enough for CI smoke runs with -benchtime=1x). The numbers in
// docs/BENCHMARKS.md use FSM_BENCH_N=1000000.
func benchN(b *testing.B) int {
	if s := os.Getenv("FSM_BENCH_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("FSM_BENCH_N=%q: want a positive integer", s)
		}
		return n
	}
	return 10_000
}

const benchValueSize = 1024

func benchID(i int) string { return "session-" + strconv.Itoa(i) }

// benchClock hands out leader times one microsecond apart, so a long
// benchmark never lets its sessions expire.
type benchClock struct {
	index uint64
	now   time.Time
}

func (c *benchClock) next(data []byte, l *raft.Log) *raft.Log {
	c.index++
	c.now = c.now.Add(time.Microsecond)
	*l = raft.Log{Index: c.index, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: c.now}
	return l
}

// buildState creates n sessions, each with one 1 KiB value, through
// ApplyBatch as raft would.
func buildState(b *testing.B, n int) (*FSM, *benchClock) {
	b.Helper()
	f := New(Config{})
	clock := &benchClock{now: time.Now()}
	value := bytes.Repeat([]byte{'v'}, benchValueSize)
	logs := make([]*raft.Log, 0, 64)
	ring := make([]raft.Log, 64)
	for i := 0; i < n; i++ {
		c := &session.Change{ID: benchID(i), Create: true, Delta: session.Delta{
			Ops:         []session.Op{{Kind: session.OpSet, Key: "data", Value: value}},
			IdleTimeout: time.Hour, Lifetime: 24 * time.Hour,
		}}
		data, err := EncodeChange(c)
		if err != nil {
			b.Fatal(err)
		}
		logs = append(logs, clock.next(data, &ring[len(logs)]))
		if len(logs) == cap(logs) || i == n-1 {
			for _, r := range f.ApplyBatch(logs) {
				if err := r.(*Result).Err; err != nil {
					b.Fatal(err)
				}
			}
			logs = logs[:0]
		}
	}
	return f, clock
}

var shared struct {
	sync.Mutex
	n     int
	f     *FSM
	clock *benchClock
}

// sharedState builds the big state once for the read and snapshot
// benchmarks; building a million sessions takes seconds.
func sharedState(b *testing.B) (*FSM, *benchClock) {
	n := benchN(b)
	shared.Lock()
	defer shared.Unlock()
	if shared.f == nil || shared.n != n {
		shared.f, shared.clock = nil, nil
		runtime.GC()
		shared.f, shared.clock = buildState(b, n)
		shared.n = n
	}
	return shared.f, shared.clock
}

// updateCommands returns pre-encoded updates that each replace the 1 KiB
// value of a random existing session.
func updateCommands(b *testing.B, n, count int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([][]byte, count)
	value := bytes.Repeat([]byte{'u'}, benchValueSize)
	for i := range out {
		c := &session.Change{ID: benchID(rng.IntN(n)), Delta: session.Delta{
			Ops: []session.Op{{Kind: session.OpSet, Key: "data", Value: value}}}}
		var err error
		if out[i], err = EncodeChange(c); err != nil {
			b.Fatal(err)
		}
	}
	return out
}

func BenchmarkApplyUpdate1KiB(b *testing.B) {
	n := benchN(b)
	f, clock := buildState(b, n)
	cmds := updateCommands(b, n, 4096)
	b.Run("single", func(b *testing.B) {
		var l raft.Log
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if r := f.Apply(clock.next(cmds[i%len(cmds)], &l)).(*Result); r.Err != nil {
				b.Fatal(r.Err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "applies/s")
	})
	b.Run("batch64", func(b *testing.B) {
		ring := make([]raft.Log, 64)
		logs := make([]*raft.Log, 64)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			for j := range logs {
				logs[j] = clock.next(cmds[(i*64+j)%len(cmds)], &ring[j])
			}
			for _, r := range f.ApplyBatch(logs) {
				if err := r.(*Result).Err; err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "applies/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/apply")
	})
}

// BenchmarkGetParallel reads random live sessions from all cores, once on
// a quiet FSM and once while one goroutine (as raft's FSM goroutine would)
// applies 1 KiB updates as fast as it can.
func BenchmarkGetParallel(b *testing.B) {
	n := benchN(b)
	f, clock := sharedState(b)
	keys := make([]session.Key, n)
	for i := range keys {
		keys[i] = session.KeyOf(benchID(i))
	}
	cmds := updateCommands(b, n, 4096)
	now := clock.now
	var seed atomic.Uint64
	read := func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(seed.Add(1), 0))
			misses := 0
			for pb.Next() {
				if _, ok := f.Get(keys[rng.IntN(len(keys))], now); !ok {
					misses++
				}
			}
			if misses > 0 {
				b.Errorf("%d gets missed", misses)
			}
		})
	}
	b.Run("quiet", read)
	b.Run("while-applying", func(b *testing.B) {
		stop := make(chan struct{})
		var applied atomic.Int64
		var wg sync.WaitGroup
		wg.Go(func() {
			var l raft.Log
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				f.Apply(clock.next(cmds[i%len(cmds)], &l))
				applied.Add(1)
			}
		})
		defer func() { close(stop); wg.Wait() }()
		b.ResetTimer()
		read(b)
		b.StopTimer()
		b.ReportMetric(float64(applied.Load())/b.Elapsed().Seconds(), "bg-applies/s")
	})
}

func BenchmarkHeapPerSession(b *testing.B) {
	n := benchN(b)
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f, _ := buildState(b, n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(f)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "B/session")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n)/benchValueSize*100-100, "%overhead")
	}
}

// BenchmarkSnapshot measures what a snapshot costs the apply goroutine:
// the Snapshot call itself (ms-blocked), and the slowest single Apply in
// the 2048 that follow it, some of which pay for cloning a shard. ns/op is
// the Snapshot call plus those applies.
func BenchmarkSnapshot(b *testing.B) {
	n := benchN(b)
	f, clock := sharedState(b)
	cmds := updateCommands(b, n, 4096)
	var l raft.Log
	var worst, total time.Duration
	for b.Loop() {
		start := time.Now()
		snap, err := f.Snapshot()
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		for i := range 2 * nShards {
			t := time.Now()
			f.Apply(clock.next(cmds[i%len(cmds)], &l))
			worst = max(worst, time.Since(t))
		}
		snap.Release()
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/1e6, "ms-blocked")
	b.ReportMetric(float64(worst.Microseconds()), "µs-worst-apply-after")
}

type discardSink struct{ n int64 }

func (s *discardSink) Write(p []byte) (int, error) { s.n += int64(len(p)); return len(p), nil }
func (s *discardSink) Close() error                { return nil }
func (s *discardSink) ID() string                  { return "discard" }
func (s *discardSink) Cancel() error               { return nil }

func BenchmarkPersist(b *testing.B) {
	f, _ := sharedState(b)
	size := int64(0)
	for b.Loop() {
		snap, err := f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		sink := &discardSink{}
		if err := snap.Persist(sink); err != nil {
			b.Fatal(err)
		}
		snap.Release()
		size = sink.n
	}
	b.SetBytes(size)
}

// BenchmarkRestore restores a snapshot of the shared state into a new
// FSM. warm reuses heap the previous restore freed; cold first returns
// every free page to the OS (debug.FreeOSMemory), so the restore pays the
// first-touch page faults a freshly started node pays. minor-faults/op
// counts them (getrusage).
func BenchmarkRestore(b *testing.B) {
	n := benchN(b)
	f, _ := sharedState(b)
	snap, _ := f.Snapshot()
	sink := &memSink{}
	sink.Grow(n * (benchValueSize + 128))
	if err := snap.Persist(sink); err != nil {
		b.Fatal(err)
	}
	snap.Release()
	data := sink.Bytes()
	for _, cold := range []bool{false, true} {
		name := "warm"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			var faults int64
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				runtime.GC()
				if cold {
					debug.FreeOSMemory()
				}
				before := minorFaults()
				start := time.Now()
				b.StartTimer()
				g := New(Config{})
				if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				elapsed += time.Since(start)
				faults += minorFaults() - before
				if g.Len() != f.Len() {
					b.Fatalf("restored %d records, want %d", g.Len(), f.Len())
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(elapsed.Milliseconds())/float64(b.N), "ms/restore")
			b.ReportMetric(float64(faults)/float64(b.N), "minor-faults/op")
		})
	}
}

// BenchmarkIndexChoice compares the candidate primary indexes on the two
// operations that matter: a point read, and an insert made right after a
// snapshot (which, for the copy-on-write structures, pays the copying).
func BenchmarkIndexChoice(b *testing.B) {
	n := benchN(b)
	keys := make([]session.Key, n)
	for i := range keys {
		keys[i] = session.KeyOf(benchID(i))
	}
	rec := &session.Record{}

	b.Run("shardedmap", func(b *testing.B) {
		st := newState()
		for i := range keys {
			s := &st.shards[shardOf(&keys[i])]
			s.writable()[keys[i]] = entry{rec: rec}
		}
		b.Run("get", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				st.read(&keys[(i*7919)%n])
			}
		})
		b.Run("put-after-snapshot", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if i%1000 == 0 {
					for j := range st.shards {
						st.shards[j].shared = true
					}
				}
				k := &keys[(i*7919)%n]
				m := st.shards[shardOf(k)].writable()
				m[*k] = entry{rec: rec}
			}
		})
	})

	type item struct {
		k session.Key
		r *session.Record
	}
	b.Run("btree", func(b *testing.B) {
		t := btree.NewG(32, func(a, b item) bool { return bytes.Compare(a.k[:], b.k[:]) < 0 })
		for i := range keys {
			t.ReplaceOrInsert(item{keys[i], rec})
		}
		var mu sync.RWMutex // BTreeG needs a lock for reads concurrent with writes.
		b.Run("get", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				mu.RLock()
				t.Get(item{k: keys[(i*7919)%n]})
				mu.RUnlock()
			}
		})
		b.Run("put-after-snapshot", func(b *testing.B) {
			var snap *btree.BTreeG[item]
			for i := 0; b.Loop(); i++ {
				if i%1000 == 0 {
					snap = t.Clone()
				}
				t.ReplaceOrInsert(item{keys[(i*7919)%n], rec})
			}
			runtime.KeepAlive(snap)
		})
	})

	b.Run("iradix", func(b *testing.B) {
		txn := iradix.New[*session.Record]().Txn()
		for i := range keys {
			txn.Insert(keys[i][:], rec)
		}
		tree := txn.Commit()
		b.Run("get", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				tree.Get(keys[(i*7919)%n][:])
			}
		})
		b.Run("put", func(b *testing.B) {
			// Every tree is a snapshot: each committed insert copies its path.
			for i := 0; b.Loop(); i++ {
				tree, _, _ = tree.Insert(keys[(i*7919)%n][:], rec)
			}
		})
	})
}

// BenchmarkSnapshotReads measures what taking and persisting a snapshot
// costs readers: while Snapshot and Persist (to a discarding sink) run,
// one goroutine per core reads a random session every 200 µs and one applies 1 KiB
// updates at about 20k/s, as raft's FSM goroutine would under load. It
// reports the slowest read and the slowest apply seen during the
// snapshot, and the 99.9th percentile read.
func BenchmarkSnapshotReads(b *testing.B) {
	b.Run("snapshot", func(b *testing.B) { snapshotReads(b, true) })
	// The same load without a snapshot, for comparison: on a machine with
	// few cores, the slowest reads are goroutines waiting for a core.
	b.Run("none", func(b *testing.B) { snapshotReads(b, false) })
}

func snapshotReads(b *testing.B, takeSnapshot bool) {
	n := benchN(b)
	f, clock := sharedState(b)
	keys := make([]session.Key, n)
	for i := range keys {
		keys[i] = session.KeyOf(benchID(i))
	}
	cmds := updateCommands(b, n, 4096)
	now := clock.now
	// Read latencies go into a histogram of 1 µs buckets, so that the
	// readers allocate nothing (an allocation during a GC cycle can make
	// its goroutine assist the collector, which would be counted here).
	const buckets = 200_000
	const readEvery = 200 * time.Microsecond
	var hist [buckets]int64
	var worstRead, worstApply time.Duration
	var gcs uint32
	var ms runtime.MemStats
	for b.Loop() {
		runtime.ReadMemStats(&ms)
		gcBefore := ms.NumGC
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		for r := range runtime.GOMAXPROCS(0) {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(r), 9))
				mine := make([]int64, buckets)
				var worst time.Duration
				// Reads are due every readEvery, like requests arriving;
				// a read's latency counts from when it was due, so time
				// spent waiting for a core counts as well.
				due := time.Now()
				for {
					select {
					case <-stop:
						mu.Lock()
						for j, c := range mine {
							hist[j] += c
						}
						worstRead = max(worstRead, worst)
						mu.Unlock()
						return
					default:
					}
					due = due.Add(readEvery)
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait)
					}
					f.Get(keys[rng.IntN(len(keys))], now)
					d := time.Since(due)
					worst = max(worst, d)
					mine[min(int(d/time.Microsecond), buckets-1)]++
				}
			})
		}
		// The applier stands in for raft's FSM goroutine: it also takes the
		// snapshot, since Snapshot must not run concurrently with Apply.
		var applyWorst time.Duration
		snaps := make(chan raft.FSMSnapshot)
		wantSnap := make(chan struct{})
		wg.Go(func() {
			var l raft.Log
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for i := 0; ; {
				select {
				case <-stop:
					return
				case <-wantSnap:
					snap, err := f.Snapshot()
					if err != nil {
						b.Error(err)
					}
					snaps <- snap
					continue
				case <-tick.C:
				}
				for range 20 {
					t := time.Now()
					f.Apply(clock.next(cmds[i%len(cmds)], &l))
					applyWorst = max(applyWorst, time.Since(t))
					i++
				}
			}
		})
		time.Sleep(50 * time.Millisecond)
		if takeSnapshot {
			wantSnap <- struct{}{}
			snap := <-snaps
			if err := snap.Persist(&discardSink{}); err != nil {
				b.Fatal(err)
			}
			snap.Release()
		} else {
			time.Sleep(time.Second)
		}
		time.Sleep(50 * time.Millisecond)
		close(stop)
		wg.Wait()
		worstApply = max(worstApply, applyWorst)
		runtime.ReadMemStats(&ms)
		gcs += ms.NumGC - gcBefore
	}
	var total, seen int64
	for _, c := range hist {
		total += c
	}
	for us, c := range hist {
		if seen += c; seen*1000 >= total*999 {
			b.ReportMetric(float64(us), "µs-p99.9-read")
			break
		}
	}
	b.ReportMetric(float64(worstRead.Microseconds()), "µs-worst-read")
	b.ReportMetric(float64(worstApply.Microseconds()), "µs-worst-apply")
	b.ReportMetric(float64(gcs)/float64(b.N), "gc-cycles/op")
}
