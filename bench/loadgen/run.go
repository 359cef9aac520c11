package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Result is one measured run; scripts/bench collects them as JSON lines.
type Result struct {
	System   string  `json:"system"`
	Workload string  `json:"workload"`
	Conns    int     `json:"conns"`
	Run      int     `json:"run"`
	Seconds  float64 `json:"seconds"`
	OK       int64   `json:"ok"`
	Non2xx   int64   `json:"non2xx"`
	Errors   int64   `json:"errors"`
	RPS      float64 `json:"rps"` // 2xx responses per second
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	// W2 only: increments acknowledged with 2xx during the measured run and
	// how many of them the final count shows.
	Sent int64 `json:"sent,omitempty"`
	Kept int64 `json:"kept,omitempty"`
	// With -watch: each watched process's usage and the load generator's
	// own CPU time and run-queue wait, per 2xx response; with -status: the
	// raft log entries the run added.
	Procs         []ProcUsage `json:"procs,omitempty"`
	LoadgenCPUus  float64     `json:"loadgen_cpu_us,omitempty"`
	LoadgenWaitUS *float64    `json:"loadgen_wait_us,omitempty"`
	Entries       uint64      `json:"entries,omitempty"`
}

func splitTargets(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	targets := fs.String("targets", "127.0.0.1:8080", "comma-separated host:port list")
	workload := fs.String("workload", "w1", "w1 (read), w2 (shared counter), w3 (login, no cookie)")
	conns := fs.Int("conns", 8, "concurrent connections (closed loop)")
	duration := fs.Duration("duration", 10*time.Second, "measured duration")
	warmup := fs.Duration("warmup", 3*time.Second, "unmeasured warm-up before the run")
	sessions := fs.Int("sessions", 0, "w1: distinct sessions read (0 = one per connection)")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	think := fs.Duration("think", 0, "pause of each connection after an answer, before its next request")
	system := fs.String("system", "", "label stored in the result")
	runIdx := fs.Int("run", 1, "run number stored in the result")
	out := fs.String("out", "", "append the JSON result to this file (also printed)")
	watchPIDs := fs.String("watch", "", "comma-separated pids whose CPU time and system calls per response to report (Linux /proc)")
	status := fs.String("status", "", "admin host:port of a raftsession node: report the raft log entries the run added")
	fs.Parse(args)

	ts := splitTargets(*targets)
	if len(ts) == 0 || *conns < 1 {
		return errors.New("need -targets and -conns >= 1")
	}
	wl, err := newWorkload(*workload, ts, *conns, *sessions, *timeout)
	if err != nil {
		return err
	}
	wl.think = *think
	if *warmup > 0 {
		if _, err := wl.phase(*warmup); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	pids, err := parsePIDs(*watchPIDs)
	if err != nil {
		return err
	}
	wt := &watch{pids: pids, status: *status}
	if err := wt.start(); err != nil {
		return err
	}
	res, err := wl.phase(*duration)
	if err != nil {
		return err
	}
	if err := wt.stop(&res); err != nil {
		return err
	}
	res.System, res.Workload, res.Conns, res.Run = *system, *workload, *conns, *runIdx
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := fmt.Fprintln(f, string(b)); err != nil {
			return err
		}
	}
	return nil
}

type workload struct {
	name     string
	targets  []string
	conns    int
	sessions int
	timeout  time.Duration
	think    time.Duration // pause after each answer
}

func newWorkload(name string, targets []string, conns, sessions int, timeout time.Duration) (*workload, error) {
	switch name {
	case "w1", "w2", "w3":
	default:
		return nil, fmt.Errorf("unknown workload %q", name)
	}
	if sessions <= 0 {
		sessions = conns
	}
	return &workload{name: name, targets: targets, conns: conns, sessions: sessions, timeout: timeout}, nil
}

// setupRequest does one request on a fresh connection and insists on 2xx.
func setupRequest(addr string, timeout time.Duration, req []byte) (response, error) {
	c := newConn(addr, timeout)
	defer c.close()
	var last error
	for range 50 {
		r, err := c.do(req)
		if err == nil && r.status/100 == 2 {
			r.body = slices.Clone(r.body)
			return r, nil
		}
		if err == nil {
			err = fmt.Errorf("status %d: %s", r.status, r.body)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return response{}, fmt.Errorf("setup request to %s: %w", addr, last)
}

// views extracts n from {"views":n}.
func views(body []byte) (int64, error) {
	var v struct {
		Views int64 `json:"views"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return 0, fmt.Errorf("views response %q: %w", body, err)
	}
	return v.Views, nil
}

// phase prepares fresh sessions, runs the closed loop for d and measures it.
func (w *workload) phase(d time.Duration) (Result, error) {
	T := len(w.targets)
	// reqs[worker][target]
	reqs := make([][][]byte, w.conns)
	var w2cookie string
	var w2start int64
	switch w.name {
	case "w1":
		cookies := make([]string, w.sessions)
		for i := range cookies {
			addr := w.targets[i%T]
			r, err := setupRequest(addr, w.timeout, buildRequest("PUT", addr, "/api/session/values/greeting", "", []byte("hello, world")))
			if err != nil {
				return Result{}, err
			}
			if r.cookie == "" {
				return Result{}, errors.New("w1 setup: no Set-Cookie")
			}
			cookies[i] = r.cookie
		}
		for c := range reqs {
			for _, t := range w.targets {
				reqs[c] = append(reqs[c], buildRequest("GET", t, "/api/session/values/greeting", cookies[c%len(cookies)], nil))
			}
		}
	case "w2":
		r, err := setupRequest(w.targets[0], w.timeout, buildRequest("POST", w.targets[0], "/api/views", "", nil))
		if err != nil {
			return Result{}, err
		}
		if r.cookie == "" {
			return Result{}, errors.New("w2 setup: no Set-Cookie")
		}
		if w2start, err = views(r.body); err != nil {
			return Result{}, err
		}
		w2cookie = r.cookie
		for c := range reqs {
			for _, t := range w.targets {
				reqs[c] = append(reqs[c], buildRequest("POST", t, "/api/views", w2cookie, nil))
			}
		}
	case "w3":
		for c := range reqs {
			for _, t := range w.targets {
				reqs[c] = append(reqs[c], buildRequest("POST", t, "/api/login?user=bench"+strconv.Itoa(c), "", nil))
			}
		}
	}

	type tally struct {
		ok, non2xx, errs int64
		lat              []time.Duration
		end              time.Time
	}
	tallies := make([]tally, w.conns)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for c := range w.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns := make([]*conn, T)
			for i, t := range w.targets {
				conns[i] = newConn(t, w.timeout)
			}
			defer func() {
				for _, cn := range conns {
					cn.close()
				}
			}()
			tl := &tallies[c]
			tl.lat = make([]time.Duration, 0, 1<<16)
			for i := 0; ; i++ {
				t0 := time.Now()
				if !t0.Before(deadline) {
					tl.end = t0
					return
				}
				k := (c + i) % T
				r, err := conns[k].do(reqs[c][k])
				if err != nil {
					tl.errs++
					time.Sleep(5 * time.Millisecond)
					continue
				}
				tl.lat = append(tl.lat, time.Since(t0))
				if r.status/100 == 2 {
					tl.ok++
				} else {
					tl.non2xx++
				}
				if w.think > 0 {
					time.Sleep(w.think)
				}
			}
		}()
	}
	wg.Wait()
	var res Result
	var all []time.Duration
	end := start
	for i := range tallies {
		tl := &tallies[i]
		res.OK += tl.ok
		res.Non2xx += tl.non2xx
		res.Errors += tl.errs
		all = append(all, tl.lat...)
		if tl.end.After(end) {
			end = tl.end
		}
	}
	res.Seconds = end.Sub(start).Seconds()
	res.RPS = float64(res.OK) / res.Seconds
	slices.Sort(all)
	res.P50ms, res.P99ms = pct(all, 0.50), pct(all, 0.99)
	if len(all) > 0 {
		res.MaxMs = ms(all[len(all)-1])
	}
	if w.name == "w2" {
		r, err := setupRequest(w.targets[0], w.timeout, buildRequest("POST", w.targets[0], "/api/views", w2cookie, nil))
		if err != nil {
			return Result{}, fmt.Errorf("w2 final count: %w", err)
		}
		final, err := views(r.body)
		if err != nil {
			return Result{}, err
		}
		// Final count = start + kept + this last increment.
		res.Sent, res.Kept = res.OK, final-w2start-1
	}
	return res, nil
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return ms(sorted[i])
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
