package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftsession/raftsession/fsm"
	"github.com/raftsession/raftsession/session"
)

// benchCluster starts a quiet 3-node cluster for benchmarks, with its raft
// log in logStore.
func benchCluster(b *testing.B, logStore string) []*Node {
	b.Helper()
	return startCluster(b, 3, func(c *Config) {
		c.LogStore = logStore
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	})
}

// BenchmarkCommit measures, on a 3-node cluster per log store, the raw
// raft.Apply ceiling on the leader (no batching, no forwarding) beside
// commits of a 100-byte set through cluster.Store on the leader and on a
// follower, at concurrency 1, 8, 64 and 256. Each sub-benchmark reports
// commits/s and p50/p99 latency; the Store paths also report the commands
// per raft entry the leader's batcher achieved. Run:
//
//	go test -run '^$' -bench Commit -benchtime 3s ./cluster/
func BenchmarkCommit(b *testing.B) {
	for _, ls := range logStores {
		b.Run(ls, func(b *testing.B) { benchCommit(b, benchCluster(b, ls)) })
	}
}

func benchCommit(b *testing.B, nodes []*Node) {
	leader := leaderOf(nodes)
	follower := followersOf(nodes)[0]
	for _, conc := range []int{1, 8, 64, 256} {
		ids := make([]string, conc)
		for i := range ids {
			ids[i] = session.NewID()
			create(b, leader.Store(), ids[i])
		}
		value := make([]byte, 100)
		change := func(i int) *session.Change {
			return &session.Change{ID: ids[i], Delta: session.Delta{Ops: []session.Op{{Kind: session.OpSet, Key: "k", Value: value}}}}
		}
		cmds := make([][]byte, conc)
		for i := range cmds {
			cmds[i], _ = fsm.EncodeChange(change(i))
		}
		paths := []struct {
			name   string
			commit func(i int) error
		}{
			{"raw", func(i int) error { return leader.raft.Apply(cmds[i], 5*time.Second).Error() }},
			{"leader", func(i int) error { _, err := leader.Store().Commit(context.Background(), change(i)); return err }},
			{"follower", func(i int) error { _, err := follower.Store().Commit(context.Background(), change(i)); return err }},
		}
		for _, p := range paths {
			b.Run(fmt.Sprintf("%s/c=%d", p.name, conc), func(b *testing.B) {
				entries, commands := leader.metrics.Entries.Load(), leader.metrics.EntryCommands.Load()
				runConcurrently(b, conc, p.commit)
				if p.name != "raw" {
					if e := leader.metrics.Entries.Load() - entries; e > 0 {
						b.ReportMetric(float64(leader.metrics.EntryCommands.Load()-commands)/float64(e), "cmds/entry")
					}
				}
			})
		}
	}
}

// runConcurrently runs b.N calls of commit spread over conc goroutines
// (worker w passes w) and reports commits/s and p50/p99 latency.
func runConcurrently(b *testing.B, conc int, commit func(w int) error) {
	lat := make([][]time.Duration, conc)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := commit(w); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "commits/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkLeaderFailover crashes the leader of a fresh 3-node cluster
// (no leadership transfer) and measures the time until a commit through a
// survivor succeeds, with the default timeouts. Ten trials per iteration;
// it reports the median and the maximum. Run:
//
//	go test -run '^$' -bench LeaderFailover -benchtime 1x ./cluster/
func BenchmarkLeaderFailover(b *testing.B) {
	for range b.N {
		var times []time.Duration
		for range 10 {
			times = append(times, failoverOnce(b))
		}
		slices.Sort(times)
		b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "median-ms")
		b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "max-ms")
	}
}

func failoverOnce(b *testing.B) time.Duration {
	b.StopTimer()
	dir := b.TempDir()
	var nodes []*Node
	for i := range 3 {
		cfg := testConfig(b, fmt.Sprintf("f%d", i), dir)
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg.BootstrapExpect = 3
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		n, err := Start(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	waitFor(b, 15*time.Second, "leader", func() bool { return leaderOf(nodes) != nil && allKnowLeader(nodes) })
	id := session.NewID()
	create(b, nodes[0].Store(), id)
	old := leaderOf(nodes)
	var survivor *Node
	for _, n := range nodes {
		if n != old {
			survivor = n
			break
		}
	}
	b.StartTimer()
	crash := time.Now()
	old.shutdown()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := survivor.Store().Commit(ctx, &session.Change{ID: id})
		cancel()
		if err == nil {
			return time.Since(crash)
		}
		if time.Since(crash) > 20*time.Second {
			b.Fatalf("no commit within 20s of the crash: %v", err)
		}
	}
}

// BenchmarkReadAfterWrite measures what a browser sees when its next
// request lands on another follower right after a write: a commit through
// one follower, then a read-your-writes Load of that session on the other
// follower. "quiet" leaves 50 ms between trials, so the leader is idle
// and sends no AppendEntries of its own; "loaded" runs 8 writers of other
// sessions through the leader meanwhile, as a busy cluster would. It
// reports the read's p50/p90 and the share of reads that went to the
// leader. Run:
//
//	go test -run '^$' -bench ReadAfterWrite -benchtime 100x ./cluster/
func BenchmarkReadAfterWrite(b *testing.B) {
	nodes := benchCluster(b, "")
	b.Run("quiet", func(b *testing.B) { readAfterWrite(b, nodes, 50*time.Millisecond) })
	b.Run("loaded", func(b *testing.B) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		leader := leaderOf(nodes)
		for range 8 {
			id := session.NewID()
			create(b, leader.Store(), id)
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					leader.Store().Commit(context.Background(), &session.Change{ID: id, Delta: session.Delta{
						Ops: []session.Op{{Kind: session.OpIncr, Key: "n", Delta: 1}}}})
				}
			})
		}
		defer func() { close(stop); wg.Wait() }()
		readAfterWrite(b, nodes, time.Millisecond)
	})
}

func readAfterWrite(b *testing.B, nodes []*Node, pause time.Duration) {
	fs := followersOf(nodes)
	writer, reader := fs[0], fs[1]
	id := session.NewID()
	create(b, writer.Store(), id)
	fallbacks := reader.metrics.ReadFallbacks.Load()
	var reads []time.Duration
	for b.Loop() {
		time.Sleep(pause)
		r, err := writer.Store().Commit(ctxT(b, 5*time.Second), &session.Change{ID: id, Delta: session.Delta{
			Ops: []session.Op{{Kind: session.OpSet, Key: "n", Value: []byte(fmt.Sprint(len(reads)))}}}})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := reader.Store().Load(ctxT(b, 5*time.Second), id, session.LoadOptions{MinIndex: r.Index}); err != nil {
			b.Fatal(err)
		}
		reads = append(reads, time.Since(start))
	}
	slices.Sort(reads)
	b.ReportMetric(float64(reads[len(reads)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(reads[len(reads)*9/10].Microseconds())/1000, "p90-ms")
	b.ReportMetric(float64(reader.metrics.ReadFallbacks.Load()-fallbacks)/float64(len(reads)), "leader-reads/op")
}
