package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Workload drives virtual browsers against a cluster and records what
// they did. Start it with [Workload.Run]; the zero value of every field
// but Targets has a default.
type Workload struct {
	// Targets returns the base URLs requests may go to; each request picks
	// one at random (no affinity), as a load balancer without health
	// checks would.
	Targets func() []string
	// Browsers is the number of single-tab browsers (default 8).
	Browsers int
	// TwoTab is the number of browsers with two concurrent tabs sharing
	// one cookie jar. Use them only under -consistency linearizable.
	TwoTab int
	// Think is the pause between one browser's requests (default 15ms).
	Think time.Duration
	// Timeout bounds one request (default 10s: longer than a node takes
	// to give up on a commit, so a timed-out write is no longer in flight
	// on the node that took it).
	Timeout time.Duration
	// Seed seeds the browsers' choices.
	Seed uint64
	// Users prefixes the browsers' user names; unique per workload.
	Users string

	hist     *History
	client   *http.Client
	browsers []*browser
}

// History is the record of one workload run.
type History struct {
	mu           sync.Mutex
	start        time.Time
	ops          []Op
	failed       int // writes that did not happen (refused, 4xx)
	readFailures int
	statuses     map[string]int // unexpected answers, for the report
	end          int64
}

// Op is one recorded operation.
type Op struct {
	Client  int // porcupine client: browser*2 + tab
	In      input
	Out     output
	Call    int64 // ns since the workload started, monotonic
	Return  int64
	Node    string // X-Node of the answer, or the target
	Outcome string // ok or unknown
}

func (h *History) now() int64 { return int64(time.Since(h.start)) }

func (h *History) add(op Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

func (h *History) note(kind string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.statuses[kind]++
}

// Ops returns a copy of the recorded operations.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Stats summarises a history.
type Stats struct {
	Ops          int           // every request, recorded or not
	Writes       int           // acknowledged writes
	Unknown      int           // writes of unknown outcome
	Failed       int           // writes that did not happen
	Reads        int           // successful reads
	ReadFailures int           // reads that got no answer or an error
	MaxWriteGap  time.Duration // longest time without an acknowledged write
	Statuses     map[string]int
}

// Stats computes the summary of the operations recorded so far.
func (h *History) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := Stats{Failed: h.failed, ReadFailures: h.readFailures, Statuses: maps.Clone(h.statuses)}
	var acks []int64
	for _, op := range h.ops {
		switch {
		case !op.In.Kind.isWrite():
			st.Reads++
		case op.Outcome == "unknown":
			st.Unknown++
		default:
			st.Writes++
			acks = append(acks, op.Return)
		}
	}
	st.Ops = len(h.ops) + h.failed + h.readFailures
	sort.Slice(acks, func(i, j int) bool { return acks[i] < acks[j] })
	end := h.end
	if end == 0 {
		end = int64(time.Since(h.start))
	}
	prev := int64(0)
	for _, a := range append(acks, end) {
		st.MaxWriteGap = max(st.MaxWriteGap, time.Duration(a-prev))
		prev = a
	}
	return st
}

// Run starts the browsers and returns at once; the returned stop function
// stops them, waits for them, and returns the history.
func (w *Workload) Run() (stop func() *History) {
	if w.Browsers == 0 && w.TwoTab == 0 {
		w.Browsers = 8
	}
	if w.Think == 0 {
		w.Think = 15 * time.Millisecond
	}
	if w.Timeout == 0 {
		w.Timeout = 10 * time.Second
	}
	if w.Users == "" {
		w.Users = "u"
	}
	w.hist = &History{start: time.Now(), statuses: map[string]int{}}
	w.client = &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     30 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range w.Browsers {
		b := w.newBrowser(i)
		wg.Go(func() { b.runSingle(ctx) })
	}
	for i := range w.TwoTab {
		b := w.newBrowser(w.Browsers + i)
		wg.Go(func() { b.runTwoTabs(ctx) })
	}
	return func() *History {
		cancel()
		wg.Wait()
		w.hist.mu.Lock()
		w.hist.end = w.hist.now()
		w.hist.mu.Unlock()
		return w.hist
	}
}

// browser is one virtual browser: a cookie jar and a user name.
type browser struct {
	w    *Workload
	id   int
	user string
	jar  jar
	rng  *rand.Rand
	seq  int
	mu   sync.Mutex // guards rng and seq between tabs
}

func (w *Workload) newBrowser(id int) *browser {
	b := &browser{w: w, id: id, user: fmt.Sprintf("%s%d", w.Users, id),
		rng: rand.New(rand.NewPCG(w.Seed, uint64(id)))}
	w.browsers = append(w.browsers, b)
	return b
}

func (b *browser) intn(n int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rng.IntN(n)
}

func (b *browser) unique() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	return fmt.Sprintf("b%d-%d", b.id, b.seq)
}

func (b *browser) think(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d/2 + time.Duration(b.intn(int(d)+1)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// runSingle is a single-tab browser: any operation, including the ones
// that change or end the session.
func (b *browser) runSingle(ctx context.Context) {
	resync := false // an earlier write's outcome is unknown: only write until one is acknowledged
	for b.think(ctx, b.w.Think) {
		var in input
		r := b.intn(100)
		switch {
		case resync || r < 25:
			in = input{Kind: opPut, Key: fmt.Sprintf("k%d", b.intn(4)), Value: b.unique()}
		case r < 55:
			in = input{Kind: opGet}
		case r < 62:
			in = input{Kind: opGetKey, Key: fmt.Sprintf("k%d", b.intn(4))}
		case r < 70:
			in = input{Kind: opDel, Key: fmt.Sprintf("k%d", b.intn(4))}
		case r < 84:
			in = input{Kind: opViews}
		case r < 91:
			in = input{Kind: opLogin, Value: b.user}
		case r < 96:
			in = input{Kind: opLogout}
		default:
			in = input{Kind: opLogoutAll}
		}
		op, ok := b.do(0, in, "")
		if ok && in.Kind.isWrite() {
			resync = op.Outcome == "unknown"
		}
		if !ok || op.Outcome == "unknown" {
			// Back off a little, as a browser's retry would.
			if !b.think(ctx, 100*time.Millisecond) {
				return
			}
		}
	}
}

// runTwoTabs is a browser with two tabs sharing its cookie jar, each
// editing its own keys of the one session at the same time.
func (b *browser) runTwoTabs(ctx context.Context) {
	for {
		op, ok := b.do(0, input{Kind: opPut, Key: "t0k0", Value: b.unique()}, "")
		if ok && op.Outcome == "ok" {
			break
		}
		if !b.think(ctx, 100*time.Millisecond) {
			return
		}
	}
	var wg sync.WaitGroup
	for tab := range 2 {
		wg.Go(func() {
			for b.think(ctx, b.w.Think) {
				key := fmt.Sprintf("t%dk%d", tab, b.intn(3))
				var in input
				switch r := b.intn(100); {
				case r < 40:
					in = input{Kind: opPut, Key: key, Value: b.unique()}
				case r < 70:
					in = input{Kind: opGet}
				case r < 78:
					in = input{Kind: opGetKey, Key: key}
				case r < 86:
					in = input{Kind: opDel, Key: key}
				default:
					in = input{Kind: opViews}
				}
				if op, ok := b.do(tab, in, ""); !ok || op.Outcome == "unknown" {
					if !b.think(ctx, 100*time.Millisecond) {
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// do sends one operation to target (a random one when empty) and records
// it. ok is false when nothing is recorded: a failed read, or a write
// that did not happen. Stopping the workload does not cancel a request in
// flight: a write abandoned by the client could still apply after the
// cluster looked converged.
func (b *browser) do(tab int, in input, target string) (Op, bool) {
	h := b.w.hist
	in.Browser = b.id
	if target == "" {
		ts := b.w.Targets()
		if len(ts) == 0 {
			return Op{}, false
		}
		target = ts[b.intn(len(ts))]
	}
	method, path, body := request(in)
	op := Op{Client: b.id*2 + tab, In: in, Node: target, Call: h.now()}
	status, resp, node, err := b.send(method, target+path, body)
	op.Return = h.now()
	if node != "" {
		op.Node = node
	}
	var dial *net.OpError
	refused := errors.As(err, &dial) && dial.Op == "dial"
	if !in.Kind.isWrite() {
		var perr error
		switch {
		case err != nil:
			perr = err
		case in.Kind == opGet && status == http.StatusOK:
			var s struct {
				New    bool              `json:"new"`
				Owner  string            `json:"owner"`
				Values map[string]string `json:"values"`
			}
			if perr = json.Unmarshal(resp, &s); perr == nil {
				op.Out = output{New: s.New, Owner: s.Owner}
				if !s.New {
					op.Out.Values = canonical(s.Values)
				}
			}
		case in.Kind == opGetKey && (status == http.StatusOK || status == http.StatusNotFound):
			op.Out = output{Found: status == http.StatusOK, Value: string(resp)}
		default:
			perr = fmt.Errorf("status %d", status)
		}
		if perr != nil {
			h.mu.Lock()
			h.readFailures++
			h.mu.Unlock()
			h.note(fmt.Sprintf("%s: %s", in.Kind, errKind(status, err)))
			return op, false
		}
		op.Outcome = "ok"
		h.add(op)
		return op, true
	}
	switch {
	case refused || err == nil && status >= 400 && status < 500:
		h.mu.Lock()
		h.failed++
		h.mu.Unlock()
		h.note(fmt.Sprintf("%s: %s", in.Kind, errKind(status, err)))
		return op, false
	case err != nil || status >= 500:
		h.note(fmt.Sprintf("%s: %s", in.Kind, errKind(status, err)))
		op.Out.Unknown, op.Outcome = true, "unknown"
	case in.Kind == opViews:
		var v struct{ Views int64 }
		if json.Unmarshal(resp, &v) != nil {
			h.note("views: bad body")
			op.Out.Unknown, op.Outcome = true, "unknown"
			break
		}
		op.Out.Views, op.Outcome = v.Views, "ok"
	default:
		op.Outcome = "ok"
	}
	h.add(op)
	return op, true
}

func errKind(status int, err error) string {
	if err == nil {
		return fmt.Sprintf("HTTP %d", status)
	}
	var dial *net.OpError
	switch {
	case errors.As(err, &dial) && dial.Op == "dial":
		return "refused"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "conn error"
}

func request(in input) (method, path, body string) {
	switch in.Kind {
	case opGet:
		return http.MethodGet, "/api/session", ""
	case opGetKey:
		return http.MethodGet, "/api/session/values/" + url.PathEscape(in.Key), ""
	case opPut:
		return http.MethodPut, "/api/session/values/" + url.PathEscape(in.Key), in.Value
	case opDel:
		return http.MethodDelete, "/api/session/values/" + url.PathEscape(in.Key), ""
	case opViews:
		return http.MethodPost, "/api/views", ""
	case opLogin:
		return http.MethodPost, "/api/login?user=" + url.QueryEscape(in.Value), ""
	case opLogout:
		return http.MethodPost, "/api/logout", ""
	default:
		return http.MethodPost, "/api/logout-everywhere", ""
	}
}

// send does one HTTP request with the browser's cookies and takes the
// cookies of the answer into the jar.
func (b *browser) send(method, u, body string) (int, []byte, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.w.Timeout)
	defer cancel()
	var rd io.Reader
	if body != "" || method == http.MethodPut {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, "", err
	}
	if c := b.jar.header(); c != "" {
		req.Header.Set("Cookie", c)
	}
	resp, err := b.w.client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, "", err
	}
	b.jar.update(resp.Cookies())
	return resp.StatusCode, data, resp.Header.Get("X-Node"), nil
}

// jar is a browser's cookie jar for the one host all nodes share.
type jar struct {
	mu      sync.Mutex
	cookies map[string]string
}

func (j *jar) header() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	var parts []string
	for k, v := range j.cookies {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func (j *jar) update(cs []*http.Cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cookies == nil {
		j.cookies = map[string]string{}
	}
	for _, c := range cs {
		if c.MaxAge < 0 || !c.Expires.IsZero() && c.Expires.Before(time.Now()) {
			delete(j.cookies, c.Name)
			continue
		}
		j.cookies[c.Name] = c.Value
	}
}

func (j *jar) snapshot() map[string]string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return maps.Clone(j.cookies)
}

// FinalReads reads every browser's session on every target, one request
// at a time, after [Workload.Run]'s stop. The reads join the history (so
// the checker holds them to the model) and every target must give the
// same answer; the error lists the browsers for which they differ.
func (w *Workload) FinalReads(targets []string) error {
	var errs []error
	for _, b := range w.browsers {
		var first *output
		firstNode := ""
		for _, t := range targets {
			op, ok := b.do(0, input{Kind: opGet}, t)
			if !ok {
				errs = append(errs, fmt.Errorf("browser %d: final read on %s failed", b.id, t))
				continue
			}
			if first == nil {
				first, firstNode = &op.Out, op.Node
				continue
			}
			if op.Out != *first {
				errs = append(errs, fmt.Errorf("browser %d: %s says %s, %s says %s", b.id,
					firstNode, describe(op.In, *first), op.Node, describe(op.In, op.Out)))
			}
		}
	}
	return errors.Join(errs...)
}
