package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"slices"
	"strings"
)

// cmdCPUReport turns runs made with -watch (the 3-node cluster, leader
// first) and -status into the Markdown of scripts/bench --cpu: where the
// CPU of one response goes, and a fit of each write workload's CPU to
// "per response + per raft entry".
func cmdCPUReport(args []string) error {
	fs := flag.NewFlagSet("cpureport", flag.ExitOnError)
	results := fs.String("results", "", "JSON lines written by loadgen run -watch -status")
	header := fs.String("header", "", "Markdown put before the table")
	doc := fs.String("doc", "", "file whose marked section is replaced (empty: print)")
	marker := fs.String("marker", "bench-cpu", "markers are <!-- NAME:start --> and <!-- NAME:end -->")
	fs.Parse(args)

	var runs []Result
	if err := scanLines(*results, func(l string) {
		var r Result
		if json.Unmarshal([]byte(l), &r) == nil && len(r.Procs) > 0 && r.OK > 0 {
			runs = append(runs, r)
		}
	}); err != nil {
		return err
	}
	if len(runs) == 0 {
		return fmt.Errorf("%s: no runs with -watch", *results)
	}
	b, err := startSection(*header)
	if err != nil {
		return err
	}
	b.WriteString("| workload | conns | req/s | commands per raft entry | CPU µs per response: leader | followers | 3 nodes | load generator | system calls per response (3 nodes): reads | writes | waiting for a core, µs per response: 3 nodes (threads waiting) | load generator |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range runs {
		b.WriteString(cpuRow(r))
	}
	b.WriteString("\n")
	for _, w := range []string{"w2", "w3"} {
		var xs, ys []float64 // raft entries per response, 3-node CPU µs per response
		for _, r := range runs {
			if r.Workload == w && r.Entries > 0 {
				xs = append(xs, float64(r.Entries)/float64(r.OK))
				ys = append(ys, nodesCPU(r))
			}
		}
		if len(xs) < 2 || slices.Min(xs) == slices.Max(xs) {
			continue
		}
		perResp, perEntry := fitLine(xs, ys)
		fmt.Fprintf(b, "%s, least-squares fit over its %d rows: the three nodes spend %s µs of CPU per response plus %s µs per raft entry.\n",
			strings.ToUpper(w), len(xs), num(perResp), num(perEntry))
	}
	return replaceSection(*doc, *marker, b.String())
}

// cpuRow is the table row of one run made with -watch (leader first).
func cpuRow(r Result) string {
	var reads, writes float64
	var followers []string
	for i, p := range r.Procs {
		reads += p.Reads
		writes += p.Writes
		if i > 0 {
			followers = append(followers, num(p.CPUus))
		}
	}
	cmdsPerEntry := "–"
	if r.Entries > 0 && r.Workload != "w1" {
		cmdsPerEntry = fmt.Sprintf("%.1f", float64(r.OK)/float64(r.Entries))
	}
	nodesWait, loadgenWait := "–", "–"
	if w, ok := nodesWaitUS(r); ok {
		// µs per response × responses per second = µs of waiting per
		// second: how many threads waited for a core on average.
		nodesWait = fmt.Sprintf("%s (%.1f)", num(w), w*r.RPS/1e6)
	}
	if r.LoadgenWaitUS != nil {
		loadgenWait = num(*r.LoadgenWaitUS)
	}
	return fmt.Sprintf("| %s | %d | %s | %s | %s | %s | %s | %s | %.2f | %.2f | %s | %s |\n", strings.ToUpper(r.Workload), r.Conns,
		num(r.RPS), cmdsPerEntry, num(r.Procs[0].CPUus), strings.Join(followers, " / "), num(nodesCPU(r)), num(r.LoadgenCPUus), reads, writes,
		nodesWait, loadgenWait)
}

// nodesCPU is the CPU per response of all the watched nodes together.
func nodesCPU(r Result) float64 {
	var total float64
	for _, p := range r.Procs {
		total += p.CPUus
	}
	return total
}

// nodesWaitUS is the run-queue wait per response of all the watched nodes
// together; ok is false when any of them has none on record.
func nodesWaitUS(r Result) (total float64, ok bool) {
	for _, p := range r.Procs {
		if p.WaitUS == nil {
			return 0, false
		}
		total += *p.WaitUS
	}
	return total, len(r.Procs) > 0
}

// fitLine returns the intercept and slope of the least-squares line
// through (xs[i], ys[i]).
func fitLine(xs, ys []float64) (intercept, slope float64) {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	slope = (n*sxy - sx*sy) / (n*sxx - sx*sx)
	return (sy - slope*sx) / n, slope
}
