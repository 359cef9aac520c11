package cluster

import (
	"container/list"
	"net"
	"sync"
)

// pendingConns are the raft port's connections still in their handshake
// (TLS and the protocol byte), oldest first. Nobody on them is
// authenticated yet, so they get a bounded set of their own, apart from
// the connections of members: once maxPendingConns are waiting, or
// maxPendingPerSource from one source, a new arrival displaces the oldest
// (of its own source, when that cap is the one reached). A member's
// handshake takes milliseconds; to push one out, an attacker must open
// maxPendingConns connections from many addresses within that time, where
// holding the port used to take one connection per slot every
// handshakeTimeout.
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
	var oldest *list.Element
	if s.bySource[src] >= maxPendingPerSource {
		for e := s.order.Front(); e != nil; e = e.Next() {
			if e.Value.(*pendingConn).source == src {
				oldest = e
				break
			}
		}
	} else if s.order.Len() >= maxPendingConns {
		oldest = s.order.Front()
	}
	if oldest != nil {
		o := oldest.Value.(*pendingConn)
		s.removeLocked(o)
		displaced = o.conn
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
	if !ok {
		return a.String()
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String()
}
