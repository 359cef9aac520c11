package cluster

import (
	"container/list"
	"net"
	"sync"
)

// pendingConns are the raft port's connections still in their handshake
// (TLS, or the protocol byte without TLS), oldest first. Nobody on them is
// authenticated yet, so they get a bounded set of their own, apart from
// the connections of members. A new arrival past maxPendingPerSource from
// its source displaces that source's oldest connection; past
// maxPendingConns in all, the oldest connection of the source with the
// most. An attacker without the key therefore displaces its own
// connections first: a source with more pending than the member's goes
// before it, so to push out a member's only handshake it must bring
// maxPendingConns arrivals from as many sources within the time that
// handshake takes (a round trip or two). Before this set, connections
// that sent nothing held the port's slots for handshakeTimeout each.
type pendingConns struct {
	mu       sync.Mutex
	order    list.List // of *pendingConn
	bySource map[string]int
	closed   bool
}

// pendingConn is one connection in its handshake.
type pendingConn struct {
	conn   net.Conn
	source string
	elem   *list.Element // nil once out of the set
}

// add records conn as pending. When a cap is reached it takes the
// connection that conn displaces out of the set and returns it, for the
// caller to close. Once closeAll has run, add records nothing and
// returns nil.
func (s *pendingConns) add(conn net.Conn) (p *pendingConn, displaced net.Conn) {
	src := sourceOf(conn.RemoteAddr())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil
	}
	if s.bySource == nil {
		s.bySource = map[string]int{}
	}
	// Displace the oldest connection of src, or past the global cap of a
	// source with the most pending (the oldest such connection).
	most, full := 0, false
	switch {
	case s.bySource[src] >= maxPendingPerSource:
		full = true
	case s.order.Len() >= maxPendingConns:
		full = true
		for _, n := range s.bySource {
			most = max(most, n)
		}
	}
	if full {
		for e := s.order.Front(); e != nil; e = e.Next() {
			o := e.Value.(*pendingConn)
			if most == 0 && o.source == src || most > 0 && s.bySource[o.source] == most {
				s.removeLocked(o)
				displaced = o.conn
				break
			}
		}
	}
	p = &pendingConn{conn: conn, source: src}
	p.elem = s.order.PushBack(p)
	s.bySource[src]++
	return p, displaced
}

// remove takes p out of the set when its handshake ended, and reports
// whether it was still there: false means it was displaced, or the port
// closed, while it finished.
func (s *pendingConns) remove(p *pendingConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.elem == nil {
		return false
	}
	s.removeLocked(p)
	return true
}

func (s *pendingConns) removeLocked(p *pendingConn) {
	s.order.Remove(p.elem)
	p.elem = nil
	if s.bySource[p.source]--; s.bySource[p.source] <= 0 {
		delete(s.bySource, p.source)
	}
}

// closeAll closes every pending connection; later arrivals are refused.
func (s *pendingConns) closeAll() {
	s.mu.Lock()
	s.closed = true
	var conns []net.Conn
	for e := s.order.Front(); e != nil; e = s.order.Front() {
		p := e.Value.(*pendingConn)
		s.removeLocked(p)
		conns = append(conns, p.conn)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// sourceOf names where a connection comes from, for the per-source cap:
// its IPv4 address, or the /64 of its IPv6 address (what one host is
// usually given).
func sourceOf(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		if a == nil {
			return "?"
		}
		return a.String()
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String()
}
