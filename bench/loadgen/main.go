// Command loadgen drives the benchmark workloads of scripts/bench against
// raftsession's cmd/node and the scs peers, and measures the scale figures.
//
//	loadgen run      -targets a,b,c -workload w1|w2|w3 -conns N -duration 10s -warmup 3s [-think 5ms]
//	loadgen fill     -targets a,b,c -count 1000000 -size 1024 -cookies file
//	loadgen probe    -target a -cookie sid=... -since UNIXNANO
//	loadgen failover -kill-pid P -targets b,c
//	loadgen snapwatch -dir DATA/snapshots -targets a,b,c -cookies file
//	loadgen report   -results r.jsonl -header h.md -doc docs/BENCHMARKS.md
//	loadgen cpureport -results r.jsonl -header h.md -doc docs/BENCHMARKS.md
//	loadgen wait     -target a -path /readyz
//	loadgen ports    -n 12
//	loadgen status   -admin a
//
// Each connection of a run keeps one keep-alive connection per target and
// sends its i-th request to target (worker+i) mod len(targets), so a
// cluster's nodes receive exactly equal shares with no load balancer in the
// path. Results are JSON lines.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadgen run|fill|probe|failover|snapwatch|report|cpureport|wait|ports|status|get|section [flags]")
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"run":       cmdRun,
		"fill":      cmdFill,
		"probe":     cmdProbe,
		"failover":  cmdFailover,
		"snapwatch": cmdSnapwatch,
		"report":    cmdReport,
		"cpureport": cmdCPUReport,
		"wait":      cmdWait,
		"ports":     cmdPorts,
		"status":    cmdStatus,
		"get":       cmdGet,
		"section":   cmdSection,
	}
	f, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "loadgen: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if err := f(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
