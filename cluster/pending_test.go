package cluster

import (
	"net"
	"testing"
)

// addrConn is a connection that only has a remote address, for the
// bookkeeping of pendingConns.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }
func (addrConn) Close() error           { return nil }

func from(ip string) net.Conn {
	return addrConn{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
}

func TestPendingConnsDisplaceTheOldestOfTheSourceThenOfAll(t *testing.T) {
	oldAll, oldPer := maxPendingConns, maxPendingPerSource
	maxPendingConns, maxPendingPerSource = 4, 2
	t.Cleanup(func() { maxPendingConns, maxPendingPerSource = oldAll, oldPer })

	var s pendingConns
	add := func(c net.Conn) (*pendingConn, net.Conn) {
		t.Helper()
		p, d := s.add(c)
		if p == nil {
			t.Fatal("add refused a connection before closeAll")
		}
		return p, d
	}
	a1, a2, a3 := from("10.0.0.1"), from("10.0.0.1"), from("10.0.0.1")
	b1, b2, c1 := from("10.0.0.2"), from("10.0.0.2"), from("10.0.0.3")
	add(a1)
	pa2, _ := add(a2)
	if _, d := add(b1); d != nil {
		t.Fatalf("a connection under both caps displaced %v", d.RemoteAddr())
	}
	// A third from 10.0.0.1 displaces 10.0.0.1's oldest, not b1.
	if _, d := add(a3); d != a1 {
		t.Fatalf("the source cap displaced %v, want the source's oldest", d)
	}
	// Four pending (a2, b1, a3, b2): the next from a new source displaces
	// the oldest of all.
	if _, d := add(b2); d != nil {
		t.Fatalf("the fourth pending connection displaced %v", d)
	}
	if _, d := add(c1); d != a2 {
		t.Fatalf("the global cap displaced %v, want the oldest pending (a2)", d)
	}
	if s.remove(pa2) {
		t.Fatal("remove reported a displaced connection as still pending")
	}
	if got := s.order.Len(); got != 4 {
		t.Fatalf("%d pending, want 4", got)
	}
	// An IPv6 /64 is one source.
	if sourceOf(from("2001:db8::1").RemoteAddr()) != sourceOf(from("2001:db8::ffff:1").RemoteAddr()) {
		t.Fatal("two addresses of one IPv6 /64 are different sources")
	}
	s.closeAll()
	if p, _ := s.add(from("10.0.0.9")); p != nil {
		t.Fatal("add recorded a connection after closeAll")
	}
	if len(s.bySource) != 0 || s.order.Len() != 0 {
		t.Fatalf("after closeAll: %d pending, sources %v", s.order.Len(), s.bySource)
	}
}
