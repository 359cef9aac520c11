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

func TestPendingConnsDisplaceFromTheBusiestSource(t *testing.T) {
	oldAll, oldPer := maxPendingConns, maxPendingPerSource
	maxPendingConns, maxPendingPerSource = 4, 3
	t.Cleanup(func() { maxPendingConns, maxPendingPerSource = oldAll, oldPer })

	var s pendingConns
	add := func(c net.Conn, want net.Conn, why string) *pendingConn {
		t.Helper()
		p, d := s.add(c)
		if p == nil {
			t.Fatal("add refused a connection before closeAll")
		}
		if d != want {
			t.Fatalf("%s: displaced %v, want %v", why, d, want)
		}
		return p
	}
	x1 := from("10.0.0.9")
	a1, a2, a3, a4 := from("10.0.0.1"), from("10.0.0.1"), from("10.0.0.1"), from("10.0.0.1")
	d1, e1, f1 := from("10.0.0.4"), from("10.0.0.5"), from("10.0.0.6")
	px1 := add(x1, nil, "first")
	pa1 := add(a1, nil, "under both caps")
	add(a2, nil, "under both caps")
	add(a3, nil, "under both caps")
	// Past the source's cap: that source's oldest goes, not x1, the oldest
	// of all.
	add(a4, a1, "a fourth from 10.0.0.1")
	if s.remove(pa1) {
		t.Fatal("remove reported a displaced connection as still pending")
	}
	// Past the global cap: the oldest of the source with the most.
	add(d1, a2, "a new source at the global cap")
	add(e1, a3, "a new source at the global cap")
	// Every source has one: the oldest of all goes.
	add(f1, x1, "one each")
	if s.remove(px1) {
		t.Fatal("remove reported a displaced connection as still pending")
	}
	if got := s.order.Len(); got != 4 {
		t.Fatalf("%d pending, want 4", got)
	}
	// An IPv6 /64 is one source; a connection without an address is one too.
	if sourceOf(from("2001:db8::1").RemoteAddr()) != sourceOf(from("2001:db8::ffff:1").RemoteAddr()) {
		t.Fatal("two addresses of one IPv6 /64 are different sources")
	}
	if sourceOf(nil) == "" || sourceOf((*net.TCPAddr)(nil)) == "" {
		t.Fatal("no source for a connection without an address")
	}
	s.closeAll()
	if p, _ := s.add(from("10.0.0.9")); p != nil {
		t.Fatal("add recorded a connection after closeAll")
	}
	if len(s.bySource) != 0 || s.order.Len() != 0 {
		t.Fatalf("after closeAll: %d pending, sources %v", s.order.Len(), s.bySource)
	}
}
