package main

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// cmdFill creates -count sessions of one -size value each with concurrent
// cookie-less PUTs spread over the targets (followers forward to the
// leader, whose commits group into batches), and saves some cookies so
// later steps can read known sessions.
func cmdFill(args []string) error {
	fs := flag.NewFlagSet("fill", flag.ExitOnError)
	targets := fs.String("targets", "127.0.0.1:8080", "comma-separated host:port list")
	conns := fs.Int("conns", 192, "concurrent connections")
	count := fs.Int64("count", 1_000_000, "sessions to create")
	size := fs.Int("size", 1024, "bytes of the one value in each session")
	cookiesOut := fs.String("cookies", "", "write up to -keep cookies (target cookie per line) here")
	keep := fs.Int("keep", 1000, "cookies to keep")
	timeout := fs.Duration("timeout", 30*time.Second, "per-request timeout")
	fs.Parse(args)
	ts := splitTargets(*targets)
	if len(ts) == 0 {
		return errors.New("need -targets")
	}
	value := make([]byte, *size)
	rand.Read(value)
	for i := range value { // printable, so it survives any text handling
		value[i] = 'a' + value[i]%26
	}
	var next, done, fails atomic.Int64
	var mu sync.Mutex
	var kept []string
	var wg sync.WaitGroup
	start := time.Now()
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				n := done.Load()
				fmt.Fprintf(os.Stderr, "fill: %d sessions, %.0f/s, %d failed requests\n", n, float64(n)/time.Since(start).Seconds(), fails.Load())
			}
		}
	}()
	for c := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := ts[c%len(ts)]
			cn := newConn(t, *timeout)
			defer cn.close()
			req := buildRequest("PUT", t, "/api/session/values/blob", "", value)
			for next.Add(1) <= *count {
				for {
					r, err := cn.do(req)
					if err == nil && r.status/100 == 2 && r.cookie != "" {
						if n := done.Add(1); n <= int64(*keep) {
							mu.Lock()
							kept = append(kept, t+" "+r.cookie)
							mu.Unlock()
						}
						break
					}
					fails.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	el := time.Since(start)
	if *cookiesOut != "" {
		if err := os.WriteFile(*cookiesOut, []byte(strings.Join(kept, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	out, _ := json.Marshal(map[string]any{"sessions": done.Load(), "seconds": el.Seconds(), "per_second": float64(done.Load()) / el.Seconds(), "failed_requests": fails.Load()})
	fmt.Println(string(out))
	return nil
}

func readCookies(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			out = append(out, f[1])
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no cookies", path)
	}
	return out, nil
}

// cmdProbe waits until -target serves GET -path for -cookie with 200 and
// prints the milliseconds since -since (default: its own start).
func cmdProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	target := fs.String("target", "127.0.0.1:8080", "host:port")
	cookie := fs.String("cookie", "", "Cookie header value")
	path := fs.String("path", "/api/session/values/blob", "path to GET")
	since := fs.Int64("since", 0, "start time in Unix nanoseconds (0 = now)")
	timeout := fs.Duration("timeout", 120*time.Second, "give up after")
	fs.Parse(args)
	t0 := time.Now()
	if *since > 0 {
		t0 = time.Unix(0, *since)
	}
	req := buildRequest("GET", *target, *path, *cookie, nil)
	cn := newConn(*target, 2*time.Second)
	defer cn.close()
	for time.Since(t0) < *timeout {
		r, err := cn.do(req)
		if err == nil && r.status == 200 {
			fmt.Printf("%.0f\n", ms(time.Since(t0)))
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s did not serve %s within %s", *target, *path, *timeout)
}

// cmdFailover SIGKILLs -kill-pid and writes through the surviving targets
// until one write succeeds; it prints the milliseconds from the kill.
func cmdFailover(args []string) error {
	fs := flag.NewFlagSet("failover", flag.ExitOnError)
	pid := fs.Int("kill-pid", 0, "process to SIGKILL (the leader)")
	targets := fs.String("targets", "", "surviving nodes' host:port list")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after")
	fs.Parse(args)
	ts := splitTargets(*targets)
	if *pid <= 0 || len(ts) == 0 {
		return errors.New("need -kill-pid and -targets")
	}
	// One writer per survivor, each looping, so a write held by a follower
	// waiting for the new leader does not delay tries on the other one.
	t0 := time.Now()
	if err := syscall.Kill(*pid, syscall.SIGKILL); err != nil {
		return err
	}
	done := make(chan time.Duration, len(ts))
	var stop atomic.Bool
	for _, t := range ts {
		go func() {
			cn := newConn(t, 5*time.Second)
			defer cn.close()
			req := buildRequest("PUT", t, "/api/session/values/failover", "", []byte("x"))
			for !stop.Load() && time.Since(t0) < *timeout {
				r, err := cn.do(req)
				if err == nil && r.status/100 == 2 {
					done <- time.Since(t0)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	select {
	case d := <-done:
		stop.Store(true)
		fmt.Printf("%.0f\n", ms(d))
		return nil
	case <-time.After(*timeout):
		stop.Store(true)
		return fmt.Errorf("no successful write within %s", *timeout)
	}
}

// cmdSnapwatch reads known sessions on all targets while it watches a raft
// snapshot directory, and reports how long the next snapshot took (from the
// moment its .tmp directory appears until it is renamed) and the read
// latency before and while it was taken.
func cmdSnapwatch(args []string) error {
	fs := flag.NewFlagSet("snapwatch", flag.ExitOnError)
	dir := fs.String("dir", "", "raft snapshots directory of one node")
	targets := fs.String("targets", "", "comma-separated host:port list to read from")
	cookiesPath := fs.String("cookies", "", "cookie file written by fill")
	conns := fs.Int("conns", 4, "concurrent readers")
	timeout := fs.Duration("timeout", 300*time.Second, "give up waiting for a snapshot after")
	fs.Parse(args)
	ts := splitTargets(*targets)
	cookies, err := readCookies(*cookiesPath)
	if err != nil {
		return err
	}
	type sample struct {
		at  time.Time
		lat time.Duration
	}
	var mu sync.Mutex
	var samples []sample
	var stop atomic.Bool
	var wg sync.WaitGroup
	for c := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cns := make([]*conn, len(ts))
			reqs := make([][]byte, len(ts))
			for i, t := range ts {
				cns[i] = newConn(t, 10*time.Second)
				defer cns[i].close()
				reqs[i] = buildRequest("GET", t, "/api/session/values/blob", cookies[c%len(cookies)], nil)
			}
			var local []sample
			for i := 0; !stop.Load(); i++ {
				k := (c + i) % len(ts)
				t0 := time.Now()
				if _, err := cns[k].do(reqs[k]); err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				local = append(local, sample{t0, time.Since(t0)})
				time.Sleep(time.Millisecond) // a steady trickle, not saturation
			}
			mu.Lock()
			samples = append(samples, local...)
			mu.Unlock()
		}()
	}
	// A snapshot already being written when we start is ignored: its start
	// time is unknown.
	inProgress := map[string]bool{}
	tmpSeen := func() (string, bool) {
		ents, _ := os.ReadDir(*dir)
		for _, e := range ents {
			if n, ok := strings.CutSuffix(e.Name(), ".tmp"); ok && !inProgress[n] {
				return n, true
			}
		}
		return "", false
	}
	if ents, err := os.ReadDir(*dir); err == nil {
		for _, e := range ents {
			if n, ok := strings.CutSuffix(e.Name(), ".tmp"); ok {
				inProgress[n] = true
			}
		}
	}
	watchStart := time.Now()
	var name string
	var begin, end time.Time
	for {
		if n, ok := tmpSeen(); ok {
			name, begin = n, time.Now()
			break
		}
		if time.Since(watchStart) > *timeout {
			stop.Store(true)
			wg.Wait()
			return fmt.Errorf("no snapshot started in %s within %s", *dir, *timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
	for {
		if _, err := os.Stat(*dir + "/" + name); err == nil {
			end = time.Now()
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	var before, during []time.Duration
	for _, s := range samples {
		switch {
		case s.at.Before(begin.Add(-time.Second)):
			before = append(before, s.lat)
		case s.at.Before(end):
			during = append(during, s.lat)
		}
	}
	var first, last time.Time
	for i, s := range samples {
		if i == 0 || s.at.Before(first) {
			first = s.at
		}
		if s.at.After(last) {
			last = s.at
		}
	}
	slices.Sort(before)
	slices.Sort(during)
	res := map[string]any{
		"snapshot":      name,
		"reads_per_s":   float64(len(samples)) / max(last.Sub(first).Seconds(), 1e-9),
		"seconds":       end.Sub(begin).Seconds(),
		"reads_before":  len(before),
		"p50_before_ms": pct(before, 0.5),
		"p99_before_ms": pct(before, 0.99),
		"reads_during":  len(during),
		"p50_during_ms": pct(during, 0.5),
		"p99_during_ms": pct(during, 0.99),
		"max_during_ms": 0.0,
		"window_note":   "during = from 1 s before the .tmp directory appeared (FSM capture) until its rename",
	}
	if len(during) > 0 {
		res["max_during_ms"] = ms(during[len(during)-1])
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return nil
}

// scanLines is bufio.Scanner over a file with a large buffer.
func scanLines(path string, fn func(string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fn(sc.Text())
	}
	return sc.Err()
}
