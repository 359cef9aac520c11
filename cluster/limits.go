package cluster

import "github.com/raftsession/raftsession/session"

var _ session.LimitStore = (*Store)(nil)

// Limits implements [session.LimitStore]: the per-session limits the
// replicated state machine enforces, from [Config.Limits]. The middleware
// takes them as its own, so they are declared once, in the Config.
func (s *Store) Limits() session.Limits { return s.n.cfg.Limits }
