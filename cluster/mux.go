package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The first byte of every connection to the raft port says who it is for.
const (
	protoRaft    byte = 'R'
	protoForward byte = 'F'
)

// handshakeTimeout bounds how long an accepted connection may take to finish
// TLS and name its protocol: half-open and slow connections are closed
// instead of pinning a goroutine.
const handshakeTimeout = 5 * time.Second

// Bounds on the raft port. Variables, not constants, so tests can shorten
// the idle timeouts and lower the caps.
var (
	// maxPortConns caps the connections the port holds once they have
	// finished their handshake; past it, such connections are closed.
	maxPortConns = 512
	// maxPendingConns caps the connections still in their handshake, and
	// maxPendingPerSource those from one address (one IPv6 /64). A new
	// connection past a cap displaces the oldest pending one of its own
	// source, or past the global cap of the source with the most (see
	// pendingConns), so connections that send nothing push out each
	// other, long before their handshake timeout, not members.
	maxPendingConns     = 128
	maxPendingPerSource = 16
	// raftIdleTimeout closes a raft connection that has carried nothing
	// for this long; raft dials again when it needs one.
	raftIdleTimeout = 5 * time.Minute
)

// peer is who is on the other end of a connection. With TLS, id is the
// Common Name of a certificate that chains to the cluster's CA; without
// TLS nobody is authenticated.
type peer struct {
	id            string
	authenticated bool
}

// mux owns the raft port. It accepts connections, authenticates the peer
// (TLS), reads the protocol byte and hands each connection to raft's
// transport or to the forwarding server. Garbage is logged and closed; it
// never reaches raft.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	tls       *TLSConfig
	log       *rateLog

	raftConns chan net.Conn
	onForward func(net.Conn, peer)
	// allowRaft says whether a peer may talk raft to this node.
	allowRaft func(peer) bool
	// refused counts connections and requests turned away.
	refused func()

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
	slots     chan struct{} // one per connection past its handshake, up to maxPortConns
	pending   pendingConns  // connections still in their handshake

	// raft's transport does not close the connections it accepted when it
	// shuts down; the mux does, so no reader outlives the node.
	connsMu sync.Mutex
	conns   map[net.Conn]struct{}
}

func newMux(ln net.Listener, advertise net.Addr, t *TLSConfig, log *slog.Logger) *mux {
	return &mux{ln: ln, advertise: advertise, tls: t, log: newRateLog(log),
		raftConns: make(chan net.Conn, 16), closed: make(chan struct{}), conns: map[net.Conn]struct{}{},
		slots: make(chan struct{}, maxPortConns), allowRaft: func(peer) bool { return true }, refused: func() {}}
}

func (m *mux) serve() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				m.log.l.Error("raft port accept failed", "err", err)
				return
			}
			// Out of file descriptors (a flood on another port can do
			// it) or a connection gone before it was accepted: back off
			// and try again, as net/http and memberlist do. Giving up
			// would leave the node undiallable until it restarts.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Warn("accept", "raft port: accept failed, trying again", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-m.closed:
				return
			}
			continue
		}
		delay = 0
		p, displaced := m.pending.add(conn)
		if p == nil {
			conn.Close() // the mux is closing
			continue
		}
		if displaced != nil {
			m.refused()
			m.log.Warn("handshake-displaced", "raft port: too many connections in their handshake, closing one of the source with the most", "remote", displaced.RemoteAddr(), "limit", maxPendingConns, "per_source", maxPendingPerSource)
			displaced.Close()
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(p)
		}()
	}
}

// route finishes the handshake of a pending connection and hands it on.
// With TLS the connection leaves the pending set as soon as the peer has
// proved it holds the key, so only handshakes can be displaced; without
// TLS, once the protocol byte is in.
func (m *mux) route(p *pendingConn) {
	conn := p.conn
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	var from peer
	if m.tls != nil {
		tc := tls.Server(conn, m.serverTLS())
		err := tc.Handshake()
		if !m.pending.remove(p) {
			conn.Close() // displaced: counted and logged then
			return
		}
		if err != nil {
			m.refused()
			m.log.Warn("tls-handshake", "raft port: TLS handshake failed", "remote", conn.RemoteAddr(), "err", err)
			conn.Close()
			return
		}
		from = peerOf(tc)
		if conn = m.takeSlot(tc); conn == nil {
			return
		}
	}
	var b [1]byte
	_, err := io.ReadFull(conn, b[:])
	if m.tls == nil {
		if !m.pending.remove(p) {
			conn.Close() // displaced while it finished
			return
		}
		if err == nil {
			if conn = m.takeSlot(conn); conn == nil {
				return
			}
		}
	}
	if err != nil {
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	switch b[0] {
	case protoRaft:
		if !m.allowRaft(from) {
			m.refused()
			m.log.Warn("raft-refused", "raft port: raft connection from a node that is not a member, closing", "remote", conn.RemoteAddr(), "peer", from.id)
			conn.Close()
			return
		}
		tc := &trackedConn{Conn: &idleConn{Conn: conn, idle: raftIdleTimeout}, m: m}
		if !m.track(tc) {
			conn.Close()
			return
		}
		select {
		case m.raftConns <- tc:
		case <-m.closed:
			tc.Close()
		}
	case protoForward:
		m.onForward(conn, from)
	default:
		m.refused()
		m.log.Warn("bad-proto", "raft port: unknown protocol byte, closing", "remote", conn.RemoteAddr(), "byte", b[0])
		conn.Close()
	}
}

// takeSlot gives conn one of the port's maxPortConns slots, returned when
// it closes, or closes it and returns nil when none is free.
func (m *mux) takeSlot(conn net.Conn) net.Conn {
	select {
	case m.slots <- struct{}{}:
		return &slotConn{Conn: conn, slots: m.slots}
	default:
		m.refused()
		m.log.Warn("too-many-conns", "raft port: connection limit reached, closing new connection", "remote", conn.RemoteAddr(), "limit", cap(m.slots))
		conn.Close()
		return nil
	}
}

// peerOf names the authenticated peer of a finished TLS handshake: the
// Common Name of its verified certificate.
func peerOf(tc *tls.Conn) peer {
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return peer{}
	}
	return peer{id: cs.PeerCertificates[0].Subject.CommonName, authenticated: true}
}

// slotConn gives its connection slot back when closed, once.
type slotConn struct {
	net.Conn
	slots chan struct{}
	once  sync.Once
}

func (c *slotConn) Close() error {
	c.once.Do(func() { <-c.slots })
	return c.Conn.Close()
}

// idleConn closes a connection on which nothing arrived for idle: every
// Read pushes the deadline out.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

func (m *mux) track(c net.Conn) bool {
	m.connsMu.Lock()
	defer m.connsMu.Unlock()
	if m.conns == nil {
		return false
	}
	m.conns[c] = struct{}{}
	return true
}

// trackedConn leaves the mux's set when raft closes it, so the set holds
// only open connections.
type trackedConn struct {
	net.Conn
	m *mux
}

func (c *trackedConn) Close() error {
	c.m.connsMu.Lock()
	if c.m.conns != nil {
		delete(c.m.conns, c)
	}
	c.m.connsMu.Unlock()
	return c.Conn.Close()
}

func (m *mux) close() {
	m.closeOnce.Do(func() {
		close(m.closed)
		m.ln.Close()
		m.pending.closeAll()
		m.connsMu.Lock()
		conns := m.conns
		m.conns = nil
		m.connsMu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	m.wg.Wait()
}

// dial connects to a peer's raft port for protocol proto.
func (m *mux) dial(addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	conn, _, err := m.dialPeer(addr, proto, timeout)
	return conn, err
}

// dialPeer is dial that also names the server that answered (with TLS).
func (m *mux) dialPeer(addr string, proto byte, timeout time.Duration) (net.Conn, peer, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, peer{}, err
	}
	var from peer
	if m.tls != nil {
		tc := tls.Client(conn, m.clientTLS())
		_ = tc.SetDeadline(time.Now().Add(timeout))
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, peer{}, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		_ = tc.SetDeadline(time.Time{})
		from = peerOf(tc)
		conn = tc
	}
	if _, err := conn.Write([]byte{proto}); err != nil {
		conn.Close()
		return nil, peer{}, err
	}
	return conn, from, nil
}

func (m *mux) serverTLS() *tls.Config {
	return &tls.Config{
		Certificates:          []tls.Certificate{m.tls.Certificate},
		ClientAuth:            tls.RequireAndVerifyClientCert,
		ClientCAs:             m.tls.CA,
		MinVersion:            tls.VersionTLS13,
		VerifyPeerCertificate: m.checkPeerName,
	}
}

func (m *mux) clientTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{m.tls.Certificate},
		MinVersion:   tls.VersionTLS13,
		// Peers are dialled by IP, so the usual host-name check cannot
		// apply; verifyServer checks the chain against our CA and the name
		// against AllowedNames instead.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return m.verifyServer(raw)
		},
	}
}

func (m *mux) verifyServer(raw [][]byte) error {
	if len(raw) == 0 {
		return errors.New("peer presented no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, err := certs[0].Verify(x509.VerifyOptions{Roots: m.tls.CA, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return err
	}
	return m.checkPeerName(nil, chains)
}

// checkPeerName accepts a verified peer whose CN or a DNS name matches an
// allowed pattern.
func (m *mux) checkPeerName(_ [][]byte, chains [][]*x509.Certificate) error {
	if len(m.tls.AllowedNames) == 0 {
		return nil
	}
	if len(chains) == 0 || len(chains[0]) == 0 {
		return errors.New("peer certificate not verified")
	}
	leaf := chains[0][0]
	names := append([]string{leaf.Subject.CommonName}, leaf.DNSNames...)
	for _, p := range m.tls.AllowedNames {
		for _, n := range names {
			if ok, _ := path.Match(p, n); ok && n != "" {
				return nil
			}
		}
	}
	return fmt.Errorf("peer certificate names %q match no allowed name", names)
}

// raftLayer adapts the mux to raft.StreamLayer.
type raftLayer struct{ m *mux }

func (l raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftConns:
		return c, nil
	case <-l.m.closed:
		return nil, net.ErrClosed
	}
}

func (l raftLayer) Close() error   { return nil }
func (l raftLayer) Addr() net.Addr { return l.m.advertise }

func (l raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.m.dial(string(addr), protoRaft, timeout)
}
