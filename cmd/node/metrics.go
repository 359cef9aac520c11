package main

import (
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gometricsprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/raftsession/raftsession/cluster"
)

// nodeCollector exports a node's status and counters at scrape time.
type nodeCollector struct {
	node    *cluster.Node
	keys    func() int // number of signing keys in use
	state   *prometheus.Desc
	leader  *prometheus.Desc
	term    *prometheus.Desc
	applied *prometheus.Desc
	commit  *prometheus.Desc
	last    *prometheus.Desc
	contact *prometheus.Desc
	members *prometheus.Desc
	sess    *prometheus.Desc
	signing *prometheus.Desc

	commits   *prometheus.Desc
	commitErr *prometheus.Desc
	latency   *prometheus.Desc
	forwarded *prometheus.Desc
	waits     *prometheus.Desc
	fallbacks *prometheus.Desc
	refused   *prometheus.Desc
	retries   *prometheus.Desc

	entries, entryCmds, holds, holdMisses *prometheus.Desc
}

func newNodeCollector(node *cluster.Node, keys func() int) *nodeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("raftsession_"+name, help, labels, nil)
	}
	return &nodeCollector{
		node:       node,
		keys:       keys,
		state:      d("raft_state", "1 for the raft state this node is in.", "state"),
		leader:     d("raft_leader", "1 if this node is the raft leader."),
		term:       d("raft_term", "Current raft term."),
		applied:    d("raft_applied_index", "Last log index applied to the local session state."),
		commit:     d("raft_commit_index", "Raft commit index as this node knows it."),
		last:       d("raft_last_index", "Last index in the local raft log."),
		contact:    d("raft_last_contact_seconds", "Seconds since the last contact with the leader (0 on the leader)."),
		members:    d("raft_members", "Servers in the raft configuration by role.", "role"),
		sess:       d("sessions", "Sessions held by the local replica (including expired ones not yet removed)."),
		signing:    d("signing_keys", "Cookie signing keys in use."),
		commits:    d("commits_total", "Commits attempted through this node."),
		commitErr:  d("commit_errors_total", "Commits through this node that failed (rejections are not failures)."),
		latency:    d("commit_duration_seconds", "Latency of commits through this node."),
		forwarded:  d("forwarded_total", "Commits forwarded to the leader."),
		waits:      d("read_waits_total", "Read-your-writes reads that waited for the local replica to catch up."),
		fallbacks:  d("read_fallbacks_total", "Read-your-writes reads that then went to the leader."),
		retries:    d("commit_retries_total", "Commits whose outcome was unknown (reply lost) and were retried under the same request number, applied at most once."),
		entries:    d("batch_entries_total", "Log entries this node's group commit proposed as leader."),
		entryCmds:  d("batch_commands_total", "Commands those entries carried."),
		holds:      d("batch_holds_total", "Times the leader held its queue for commits it expected (-group-commit-wait)."),
		holdMisses: d("batch_hold_misses_total", "Holds that ran out before half of the commits they waited for came; misses in a row skip the next holds."),
		refused:    d("node_port_refused_total", "Node-to-node connections and requests refused: failed authentication, a sender not allowed the request, the connection limit, garbage."),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.state, c.leader, c.term, c.applied, c.commit, c.last, c.contact,
		c.members, c.sess, c.signing, c.commits, c.commitErr, c.latency, c.forwarded, c.waits, c.fallbacks, c.refused, c.retries,
		c.entries, c.entryCmds, c.holds, c.holdMisses} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.node.Status()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	for _, s := range []string{"Leader", "Follower", "Candidate", "Shutdown"} {
		gauge(c.state, b2f(st.State == s), s)
	}
	gauge(c.leader, b2f(st.State == "Leader"))
	gauge(c.term, float64(st.Term))
	gauge(c.applied, float64(st.AppliedIndex))
	gauge(c.commit, float64(st.CommitIndex))
	gauge(c.last, float64(st.LastIndex))
	contact := 0.0
	if !st.LastContact.IsZero() {
		contact = time.Since(st.LastContact).Seconds()
	}
	gauge(c.contact, contact)
	roles := map[string]int{"voter": 0, "non-voter": 0}
	for _, m := range st.Members {
		if _, ok := roles[m.Role]; ok {
			roles[m.Role]++
		}
	}
	for role, n := range roles {
		gauge(c.members, float64(n), role)
	}
	gauge(c.sess, float64(st.Sessions))
	gauge(c.signing, float64(c.keys()))

	m := c.node.Metrics()
	counter(c.commits, m.Commits.Load())
	counter(c.commitErr, m.CommitErrors.Load())
	counter(c.forwarded, m.Forwarded.Load())
	counter(c.waits, m.ReadWaits.Load())
	counter(c.fallbacks, m.ReadFallbacks.Load())
	counter(c.refused, m.Refused.Load())
	counter(c.retries, m.CommitRetries.Load())
	counter(c.entries, m.Entries.Load())
	counter(c.entryCmds, m.EntryCommands.Load())
	counter(c.holds, m.Holds.Load())
	counter(c.holdMisses, m.HoldMisses.Load())
	buckets := make(map[float64]uint64, len(cluster.LatencyBuckets))
	var cum uint64
	for i, le := range cluster.LatencyBuckets {
		cum += m.CommitLatency[i].Load()
		buckets[le.Seconds()] = cum
	}
	count := cum + m.CommitLatency[len(cluster.LatencyBuckets)].Load()
	ch <- prometheus.MustNewConstHistogram(c.latency, count, m.CommitSeconds(), buckets)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// raftMetrics is the go-metrics sink that receives hashicorp/raft's own
// metrics (raft_commitTime, raft_apply, raft_replication_*, ...). go-metrics
// has one global sink per process, so every Main in a process (tests run
// several) shares it and registers it in its own registry.
var raftMetrics struct {
	once sync.Once
	sink prometheus.Collector
	err  error
}

func raftMetricsCollector() (prometheus.Collector, error) {
	raftMetrics.once.Do(func() {
		opts := gometricsprom.DefaultPrometheusOpts
		opts.Name = "raftsession_raft_go_metrics"
		// The sink registers itself; it is registered again in each
		// Main's registry.
		opts.Registerer = prometheus.NewRegistry()
		sink, err := gometricsprom.NewPrometheusSinkFrom(opts)
		if err != nil {
			raftMetrics.err = err
			return
		}
		cfg := gometrics.DefaultConfig("")
		cfg.EnableHostname = false
		// The Go collector reports runtime metrics; this one would also
		// start a goroutine nothing can stop.
		cfg.EnableRuntimeMetrics = false
		if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
			raftMetrics.err = err
			return
		}
		raftMetrics.sink = sink
	})
	return raftMetrics.sink, raftMetrics.err
}

// newRegistry returns the registry /metrics serves for node.
func newRegistry(node *cluster.Node, keys func() int) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	raftSink, err := raftMetricsCollector()
	if err != nil {
		return nil, err
	}
	for _, c := range []prometheus.Collector{
		newNodeCollector(node, keys),
		raftSink,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
