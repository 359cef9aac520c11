package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftsession/raftsession/cluster"
	"github.com/raftsession/raftsession/httpmw"
)

// readyMargin is how far the local replica may trail the commit index and
// still count as caught up: raft's no-op entries after an election are
// never handed to the state machine, so the applied index can stay a few
// entries behind until the next write.
const readyMargin = 16

// admin serves the admin listener of one node.
type admin struct {
	m   *Main
	reg *prometheus.Registry
}

func (a *admin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cluster/status", a.status)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", a.ready)
	mux.HandleFunc("POST /cluster/leave", a.leave)
	mux.HandleFunc("POST /cluster/rotate-key", a.rotateKey)
	return mux
}

// statusJSON is GET /cluster/status: the node's status plus the IDs (never
// the secrets) of the cookie signing keys.
type statusJSON struct {
	cluster.Status
	Ready       bool      `json:"ready"`
	NotReady    string    `json:"not_ready,omitempty"`
	KeySource   string    `json:"signing_key_source"` // "replicated" or "flag"
	SigningKeys []keyInfo `json:"signing_keys"`
}

func (a *admin) status(w http.ResponseWriter, r *http.Request) {
	st := a.m.node.Status()
	out := statusJSON{Status: st, KeySource: "flag", SigningKeys: []keyInfo{}}
	out.NotReady = a.m.notReady(st)
	out.Ready = out.NotReady == ""
	if a.m.keys != nil {
		out.KeySource = "replicated"
		out.SigningKeys = keyInfos(a.m.node.Store().SigningKeys())
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *admin) ready(w http.ResponseWriter, r *http.Request) {
	if why := a.m.notReady(a.m.node.Status()); why != "" {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+why)
		return
	}
	writeText(w, http.StatusOK, "ready")
}

// notReady says why the node should not get traffic yet, or "" when it
// should: it is in the raft configuration, knows a leader, its replica
// has caught up with the commit index, and it can sign cookies.
func (m *Main) notReady(st cluster.Status) string {
	if !slices.ContainsFunc(st.Members, func(mb cluster.Member) bool {
		return mb.ID == st.ID && (mb.Role == "voter" || mb.Role == "non-voter")
	}) {
		return "not yet in the raft configuration"
	}
	if st.Leader == "" {
		return "no leader known"
	}
	if st.AppliedIndex+readyMargin < st.CommitIndex {
		return fmt.Sprintf("replica catching up (applied %d of %d)", st.AppliedIndex, st.CommitIndex)
	}
	if m.sessionHandler() == nil {
		return "no cookie signing key yet"
	}
	return ""
}

// leave removes the node from the cluster for good and stops the process.
func (a *admin) leave(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.m.leave(ctx); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, cluster.ErrLastVoter) {
			code = http.StatusConflict // nothing changed; the node keeps serving
		}
		writeText(w, code, "leave: "+firstLine(err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"left": true, "id": a.m.node.ID()})
}

func (a *admin) rotateKey(w http.ResponseWriter, r *http.Request) {
	if a.m.keys == nil {
		writeText(w, http.StatusConflict, "the signing key comes from -secret; restart with a new -secret to change it")
		return
	}
	res, err := a.m.keys.rotate(r.Context())
	if err != nil {
		code := httpmw.StatusCode(err)
		switch {
		case errors.Is(err, errRotateTooSoon):
			code = http.StatusConflict
			w.Header().Set("Retry-After", strconv.Itoa(int(a.m.keys.grace/time.Second)+1))
		case errors.Is(err, context.Canceled):
			code = http.StatusServiceUnavailable
		}
		writeText(w, code, "rotate key: "+firstLine(err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}
