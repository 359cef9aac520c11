package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftsession/raftsession/internal/nodeproc"
)

// Environment:
//
//	E2E_SOAK=20m        loop every scenario for that long (TestSoak); run with -timeout 0 or larger
//	E2E_ARTIFACTS=dir   keep node logs, histories' visualizations and summary.txt in dir
//	E2E_RACE=1          build cmd/node with -race
var (
	artifactsRoot string
	soakFor       time.Duration
	summary       = &table{rows: map[string]*row{}}
)

func TestMain(m *testing.M) {
	keep := true
	artifactsRoot = os.Getenv("E2E_ARTIFACTS")
	if artifactsRoot == "" {
		keep = false
		dir, err := os.MkdirTemp("", "raftsession-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		artifactsRoot = dir
	}
	if v := os.Getenv("E2E_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "E2E_SOAK=%q: %v\n", v, err)
			os.Exit(2)
		}
		soakFor = d
	}
	start := time.Now()
	code := m.Run()
	nodeproc.Cleanup()
	if summary.len() > 0 {
		var b strings.Builder
		summary.print(&b, time.Since(start))
		fmt.Print(b.String())
		_ = os.WriteFile(filepath.Join(artifactsRoot, "summary.txt"), []byte(b.String()), 0o644)
	}
	if code != 0 || keep {
		fmt.Printf("e2e artifacts: %s\n", artifactsRoot)
	} else {
		os.RemoveAll(artifactsRoot)
	}
	os.Exit(code)
}

// row aggregates the runs of one scenario.
type row struct {
	runs, ops, unknown, violations, readFailures, inconclusive int
	maxGap                                                     time.Duration
	failed                                                     bool
}

type table struct {
	mu    sync.Mutex
	rows  map[string]*row
	order []string
}

func (t *table) len() int { t.mu.Lock(); defer t.mu.Unlock(); return len(t.rows) }

func (t *table) add(name string, st Stats, v Verdict, failed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rows[name]
	if r == nil {
		r = &row{}
		t.rows[name] = r
		t.order = append(t.order, name)
	}
	r.runs++
	r.ops += st.Ops
	r.unknown += st.Unknown
	r.violations += v.Violations
	r.inconclusive += v.Inconclusive
	r.readFailures += st.ReadFailures
	r.maxGap = max(r.maxGap, st.MaxWriteGap)
	r.failed = r.failed || failed
}

func (t *table) print(w io.Writer, total time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := append([]string(nil), t.order...)
	fmt.Fprintf(w, "\ne2e summary (%s total)\n", total.Round(time.Second))
	fmt.Fprintf(w, "%-22s %5s %8s %8s %10s %14s %13s %s\n", "scenario", "runs", "ops", "unknown", "violations", "max write gap", "read failures", "result")
	for _, n := range names {
		r := t.rows[n]
		res := "pass"
		if r.failed {
			res = "FAIL"
		}
		if r.inconclusive > 0 {
			res += fmt.Sprintf(" (%d inconclusive)", r.inconclusive)
		}
		fmt.Fprintf(w, "%-22s %5d %8d %8d %10d %14s %13d %s\n", n, r.runs, r.ops, r.unknown, r.violations,
			r.maxGap.Round(time.Millisecond), r.readFailures, res)
	}
}
