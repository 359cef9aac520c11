package cluster

import (
	"log/slog"
	"sync"
	"time"
)

// rateLog logs warnings about what peers send at most once per second per
// kind of event, so that garbage on the port cannot flood the log. Lines
// dropped meanwhile are counted in the next one.
type rateLog struct {
	l *slog.Logger

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

func newRateLog(l *slog.Logger) *rateLog {
	return &rateLog{l: l, last: map[string]time.Time{}, suppressed: map[string]int{}}
}

// Warn logs msg unless a line of the same kind went out within the last
// second. kind is one of a fixed set of names, so the maps stay small.
func (r *rateLog) Warn(kind, msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.last[kind]) < time.Second {
		r.suppressed[kind]++
		r.mu.Unlock()
		return
	}
	r.last[kind] = now
	if n := r.suppressed[kind]; n > 0 {
		args = append(args, "suppressed_since_last", n)
		delete(r.suppressed, kind)
	}
	r.mu.Unlock()
	r.l.Warn(msg, args...)
}
