// Command fsyncgroups measures whether several raft logs in one process
// raise the write ceiling of one disk: it runs G writers, each appending
// 1 KiB records to its own file with an fsync after every append (what a
// raft leader does for an entry, without batching), and reports the
// appends per second of all of them together, for each G given.
//
//	go run ./fsyncgroups -groups 1,2,4,8,16 -duration 5s
//
// docs/SCALING.md uses it for the sharding design.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	groups := flag.String("groups", "1,2,4,8,16", "comma-separated numbers of logs to run at once")
	duration := flag.Duration("duration", 5*time.Second, "how long each number of logs runs")
	dir := flag.String("dir", "", "directory for the logs (default: a temporary one, on the disk of TMPDIR)")
	flag.Parse()
	if err := run(*groups, *duration, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "fsyncgroups:", err)
		os.Exit(1)
	}
}

func run(groups string, d time.Duration, dir string) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "fsyncgroups")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	fmt.Printf("| logs | appends+fsyncs/s, all logs | per log |\n|---:|---:|---:|\n")
	for _, s := range strings.Split(groups, ",") {
		g, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || g <= 0 {
			return fmt.Errorf("-groups: %q is not a positive number", s)
		}
		total, err := measure(dir, g, d)
		if err != nil {
			return err
		}
		rate := float64(total) / d.Seconds()
		fmt.Printf("| %d | %.0f | %.0f |\n", g, rate, rate/float64(g))
	}
	return nil
}

// measure runs g writers for d and returns how many appends they made.
func measure(dir string, g int, d time.Duration) (int64, error) {
	record := make([]byte, 1024)
	var count atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, g)
	deadline := time.Now().Add(d)
	for i := range g {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("log-%d-%d", g, i)))
		if err != nil {
			return 0, err
		}
		wg.Go(func() {
			defer f.Close()
			for time.Now().Before(deadline) {
				if _, err := f.Write(record); err != nil {
					errs <- err
					return
				}
				if err := f.Sync(); err != nil {
					errs <- err
					return
				}
				count.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return 0, err
	}
	return count.Load(), nil
}
