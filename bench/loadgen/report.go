package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
)

var systemNames = map[string]string{
	"rs3":      "raftsession 3-node",
	"rs1":      "raftsession 1-node",
	"scsmem":   "scs + memstore",
	"scsredis": "scs + redisstore",
}

var workloadNames = map[string]string{
	"w1": "W1 read: `GET /api/session/values/{key}`, existing session",
	"w2": "W2 read-modify-write: `POST /api/views`, one session shared by all connections",
	"w3": "W3 new session: `POST /api/login?user=…` without a cookie",
}

type cell struct {
	runs []Result
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (c *cell) field(f func(Result) float64) []float64 {
	var out []float64
	for _, r := range c.runs {
		out = append(out, f(r))
	}
	return out
}

func (c *cell) rps() float64 { return median(c.field(func(r Result) float64 { return r.RPS })) }

// cmdReport turns result lines into the Markdown section of
// docs/BENCHMARKS.md and replaces the text between the markers with it.
func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	results := fs.String("results", "", "JSON lines written by loadgen run")
	header := fs.String("header", "", "Markdown put before the tables (machine, versions, command)")
	footer := fs.String("footer", "", "Markdown put after the tables")
	doc := fs.String("doc", "", "file whose marked section is replaced (empty: print)")
	marker := fs.String("marker", "bench", "markers are <!-- NAME:start --> and <!-- NAME:end -->")
	fs.Parse(args)

	cells := map[string]*cell{} // system/workload/conns
	var systems, workloads []string
	var connsList []int
	if err := scanLines(*results, func(l string) {
		var r Result
		if json.Unmarshal([]byte(l), &r) != nil || r.System == "" {
			return
		}
		k := fmt.Sprintf("%s/%s/%d", r.System, r.Workload, r.Conns)
		if cells[k] == nil {
			cells[k] = &cell{}
		}
		cells[k].runs = append(cells[k].runs, r)
		if !slices.Contains(systems, r.System) {
			systems = append(systems, r.System)
		}
		if !slices.Contains(workloads, r.Workload) {
			workloads = append(workloads, r.Workload)
		}
		if !slices.Contains(connsList, r.Conns) {
			connsList = append(connsList, r.Conns)
		}
	}); err != nil {
		return err
	}
	order := []string{"rs3", "rs1", "scsmem", "scsredis"}
	slices.SortFunc(systems, func(a, b string) int { return slices.Index(order, a) - slices.Index(order, b) })
	slices.Sort(workloads)
	slices.Sort(connsList)
	get := func(s, w string, c int) *cell { return cells[fmt.Sprintf("%s/%s/%d", s, w, c)] }

	b, err := startSection(*header)
	if err != nil {
		return err
	}
	if *header != "" {
		b.WriteString("\n")
	}
	for _, w := range workloads {
		fmt.Fprintf(b, "**%s**\n\n", workloadNames[w])
		b.WriteString("| conns | system | req/s median | min–max | p50 ms | p99 ms | non-2xx + errors |\n|---:|---|---:|---:|---:|---:|---:|\n")
		for _, c := range connsList {
			for _, s := range systems {
				ce := get(s, w, c)
				if ce == nil {
					continue
				}
				rps := ce.field(func(r Result) float64 { return r.RPS })
				bad := 0.0
				for _, r := range ce.runs {
					bad += float64(r.Non2xx + r.Errors)
				}
				fmt.Fprintf(b, "| %d | %s | %s | %s–%s | %.2f | %.2f | %.0f |\n", c, systemNames[s],
					num(median(rps)), num(slices.Min(rps)), num(slices.Max(rps)),
					median(ce.field(func(r Result) float64 { return r.P50ms })),
					median(ce.field(func(r Result) float64 { return r.P99ms })), bad)
			}
		}
		b.WriteString("\n")
	}

	// Ratios of the raftsession rows to each peer, same run.
	var peers, ours []string
	for _, s := range systems {
		if strings.HasPrefix(s, "rs") {
			ours = append(ours, s)
		} else {
			peers = append(peers, s)
		}
	}
	if len(ours) > 0 && len(peers) > 0 {
		b.WriteString("**Ratios** (median req/s of raftsession ÷ median req/s of the peer, measured in this run)\n\n| workload | conns |")
		for _, o := range ours {
			for _, p := range peers {
				fmt.Fprintf(b, " %s ÷ %s |", systemNames[o], systemNames[p])
			}
		}
		b.WriteString("\n|---|---:|" + strings.Repeat("---:|", len(ours)*len(peers)) + "\n")
		for _, w := range workloads {
			for _, c := range connsList {
				fmt.Fprintf(b, "| %s | %d |", strings.ToUpper(w), c)
				for _, o := range ours {
					for _, p := range peers {
						oc, pc := get(o, w, c), get(p, w, c)
						if oc == nil || pc == nil || pc.rps() == 0 {
							b.WriteString(" – |")
							continue
						}
						fmt.Fprintf(b, " %.2f× |", oc.rps()/pc.rps())
					}
				}
				b.WriteString("\n")
			}
		}
		b.WriteString("\n")
	}

	// Kept increments of W2.
	if slices.Contains(workloads, "w2") {
		b.WriteString("**W2 increments kept** (acknowledged with 2xx during the measured runs vs. the final count; all runs of a cell added up)\n\n| conns | system | sent | kept | kept % |\n|---:|---|---:|---:|---:|\n")
		for _, c := range connsList {
			for _, s := range systems {
				ce := get(s, "w2", c)
				if ce == nil {
					continue
				}
				var sent, kept int64
				for _, r := range ce.runs {
					sent += r.Sent
					kept += r.Kept
				}
				p := 0.0
				if sent > 0 {
					p = 100 * float64(kept) / float64(sent)
				}
				fmt.Fprintf(b, "| %d | %s | %d | %d | %.1f %% |\n", c, systemNames[s], sent, kept, p)
			}
		}
		b.WriteString("\n")
	}

	// Targets of issue 7 (3-node cluster against the peers).
	if get("rs3", "w1", connsList[0]) != nil {
		b.WriteString("**Targets** (issue 7; 3-node cluster)\n\n| target | conns | measured | verdict |\n|---|---:|---:|---|\n")
		type tgt struct {
			w, peer string
			min     float64
			label   string
		}
		for _, t := range []tgt{
			{"w1", "scsredis", 1.5, "W1 ≥ 1.5× scs+redisstore"},
			{"w1", "scsmem", 0.85, "W1 ≥ 0.85× scs+memstore"},
			{"w2", "scsredis", 0.5, "W2 ≥ 0.5× scs+redisstore"},
			{"w3", "scsredis", 0.5, "W3 ≥ 0.5× scs+redisstore"},
		} {
			for _, c := range connsList {
				oc, pc := get("rs3", t.w, c), get(t.peer, t.w, c)
				if oc == nil || pc == nil || pc.rps() == 0 {
					continue
				}
				r := oc.rps() / pc.rps()
				v := "met"
				if r < t.min {
					v = fmt.Sprintf("**missed** (%.0f %% of the target)", 100*r/t.min)
				}
				fmt.Fprintf(b, "| %s | %d | %.2f× | %s |\n", t.label, c, r, v)
			}
		}
		for _, c := range connsList {
			if ce := get("rs3", "w2", c); ce != nil {
				var sent, kept int64
				for _, r := range ce.runs {
					sent += r.Sent
					kept += r.Kept
				}
				v := "met"
				if kept != sent {
					v = "**missed**"
				}
				fmt.Fprintf(b, "| W2 keeps 100 %% of increments | %d | %d / %d | %s |\n", c, kept, sent, v)
			}
		}
		b.WriteString("\n")
	}
	if *footer != "" {
		f, err := os.ReadFile(*footer)
		if err != nil {
			return err
		}
		b.Write(f)
	}
	return replaceSection(*doc, *marker, b.String())
}

func num(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	// thin grouping like the rest of BENCHMARKS.md: 12 345
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ' ')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// startSection returns a builder holding the file header, or an empty one
// when header is "".
func startSection(header string) (*strings.Builder, error) {
	var b strings.Builder
	if header != "" {
		h, err := os.ReadFile(header)
		if err != nil {
			return nil, err
		}
		b.Write(h)
	}
	return &b, nil
}

// replaceSection swaps the text between the markers in doc for body, or
// prints body when doc is empty. A doc without the markers gets the section
// appended, so other sections are never touched.
func replaceSection(doc, marker, body string) error {
	if doc == "" {
		fmt.Print(body)
		return nil
	}
	start, end := "<!-- "+marker+":start -->", "<!-- "+marker+":end -->"
	old, err := os.ReadFile(doc)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	s := string(old)
	i, j := strings.Index(s, start), strings.Index(s, end)
	block := start + "\n" + body + end
	switch {
	case i >= 0 && j > i:
		s = s[:i] + block + s[j+len(end):]
	case i < 0 && j < 0:
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		s += "\n" + block + "\n"
	default:
		return fmt.Errorf("%s: unbalanced %s markers", doc, marker)
	}
	return os.WriteFile(doc, []byte(s), 0o644)
}
