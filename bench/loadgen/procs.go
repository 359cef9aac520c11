package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcUsage is what one watched process (a node of the system under load)
// spent during a measured run, per 2xx response.
type ProcUsage struct {
	PID int `json:"pid"`
	// CPUus is user plus system CPU time, in microseconds per response.
	CPUus float64 `json:"cpu_us"`
	// Reads and Writes count read- and write-family system calls
	// (/proc/PID/io syscr and syscw) per response.
	Reads  float64 `json:"reads"`
	Writes float64 `json:"writes"`
	// WaitUS is the time the process's threads spent runnable but waiting
	// for a core, summed over its threads (/proc/PID/task/*/schedstat), in
	// microseconds per response; nil where the kernel keeps no schedstat.
	WaitUS *float64 `json:"wait_us,omitempty"`
}

// procSample is a process's cumulative counters at one instant.
type procSample struct {
	cpu           time.Duration
	reads, writes int64
	wait          time.Duration
	waitOK        bool
}

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ), 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// readProc reads pid's CPU time and system call counts from /proc.
func readProc(pid int) (procSample, error) {
	var s procSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields that follow start after its last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// utime and stime are fields 14 and 15 of the whole line.
	for _, x := range f[11:13] {
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return s, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		s.cpu += time.Duration(n) * clockTick
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "syscr":
			s.reads = n
		case "syscw":
			s.writes = n
		}
	}
	s.wait, s.waitOK = runqueueWait(pid)
	return s, nil
}

// runqueueWait sums, over pid's threads, the time each spent runnable but
// waiting for a core: the second field of /proc/PID/task/TID/schedstat.
// A thread that exits takes its share with it; Go's threads seldom do. ok
// is false when the kernel keeps no such statistics: no schedstat files,
// or files of zeros (what a kernel with them turned off shows; a live
// process has always spent some time on a core).
func runqueueWait(pid int) (wait time.Duration, ok bool) {
	return runqueueWaitIn(fmt.Sprintf("/proc/%d/task", pid))
}

// runqueueWaitIn is runqueueWait over the thread directories in dir.
func runqueueWaitIn(dir string) (wait time.Duration, ok bool) {
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	var onCore time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited meanwhile, or no schedstat
		}
		run, w, err := parseSchedstat(b)
		if err != nil {
			return 0, false
		}
		onCore += run
		wait += w
	}
	return wait, onCore > 0
}

// parseSchedstat reads a schedstat line: "time on a core (ns), time
// runnable but waiting for one (ns), timeslices".
func parseSchedstat(b []byte) (onCore, wait time.Duration, err error) {
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return 0, 0, fmt.Errorf("schedstat: %d fields, want 3", len(f))
	}
	var v [2]int64
	for i := range v {
		v[i], err = strconv.ParseInt(f[i], 10, 64)
		if err != nil || v[i] < 0 {
			return 0, 0, fmt.Errorf("schedstat: bad field %q", f[i])
		}
	}
	return time.Duration(v[0]), time.Duration(v[1]), nil
}

// perResponse is d in microseconds per response, or nil when unknown:
// not counted, or less than nothing (a thread that exited between the
// samples took its share with it).
func perResponse(d time.Duration, ok bool, n float64) *float64 {
	if !ok || d < 0 {
		return nil
	}
	v := float64(d.Microseconds()) / n
	return &v
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// watch samples the watched processes, this load generator's own CPU time
// and the raft log index of -status around a measured run.
type watch struct {
	pids   []int
	status string // admin host:port whose /cluster/status gives last_index

	procs    []procSample
	self     time.Duration
	selfWait time.Duration
	waitOK   bool
	index    uint64
}

func parsePIDs(s string) ([]int, error) {
	var pids []int
	for _, p := range splitTargets(s) {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-watch: bad pid %q", p)
		}
		pids = append(pids, n)
	}
	return pids, nil
}

func (w *watch) start() error {
	w.procs = w.procs[:0]
	for _, pid := range w.pids {
		s, err := readProc(pid)
		if err != nil {
			return err
		}
		w.procs = append(w.procs, s)
	}
	w.self = selfCPU()
	w.selfWait, w.waitOK = runqueueWait(os.Getpid())
	if w.status != "" {
		st, err := clusterStatus(w.status)
		if err != nil {
			return err
		}
		w.index = st.LastIndex
	}
	return nil
}

// stop fills res's usage fields, per 2xx response of the run, when
// anything was watched.
func (w *watch) stop(res *Result) error {
	n := float64(res.OK)
	if n == 0 || (len(w.pids) == 0 && w.status == "") {
		return nil
	}
	for i, pid := range w.pids {
		s, err := readProc(pid)
		if err != nil {
			return err
		}
		a := w.procs[i]
		res.Procs = append(res.Procs, ProcUsage{PID: pid,
			CPUus:  float64((s.cpu - a.cpu).Microseconds()) / n,
			Reads:  float64(s.reads-a.reads) / n,
			Writes: float64(s.writes-a.writes) / n,
			WaitUS: perResponse(s.wait-a.wait, s.waitOK && a.waitOK, n)})
	}
	res.LoadgenCPUus = float64((selfCPU() - w.self).Microseconds()) / n
	selfWait, ok := runqueueWait(os.Getpid())
	res.LoadgenWaitUS = perResponse(selfWait-w.selfWait, ok && w.waitOK, n)
	if w.status != "" {
		st, err := clusterStatus(w.status)
		if err != nil {
			return err
		}
		if st.LastIndex < w.index {
			return fmt.Errorf("%s: the raft log's last index went back from %d to %d (leader change or restart)", w.status, w.index, st.LastIndex)
		}
		res.Entries = st.LastIndex - w.index
	}
	return nil
}
