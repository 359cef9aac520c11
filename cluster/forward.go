package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/raftsession/raftsession/session"
)

// Node-to-node requests travel on the raft port (protocol byte 'F') as
// length-prefixed frames. Many requests share one connection: each frame
// carries a request ID and responses come back in any order, so concurrent
// commits from one follower reach the leader together and raft commits
// them as one batch.
//
//	request:  len u32 | id u64 | kind u8 | budget i64 (ns left, 0 none) | payload
//	response: len u32 | id u64 | status u8 | payload
const (
	reqApply        byte = 1 // payload: fsm command → fsm.Result
	reqReadIndex    byte = 2 // → commit index after leadership was verified
	reqGet          byte = 3 // key[32] | minIndex u64 → record
	reqListOwner    byte = 4 // minIndex u64 | owner → infos
	reqStats        byte = 5 // → lastContact i64 | lastTerm u64 | lastIndex u64
	reqRemoveServer byte = 6 // id → ok
	reqWaitApplied  byte = 7 // index u64 → ok once applied locally
)

const (
	statusOK        byte = 0
	statusNotLeader byte = 1 // payload: leader raft address, may be empty
	statusNotFound  byte = 2
	statusTimeout   byte = 3 // the leader could not finish in time; outcome unknown
	statusUnknown   byte = 4 // leadership lost mid-commit; outcome unknown
	statusError     byte = 5 // payload: message
)

// maxFrame bounds one frame: a reply may carry a long list of sessions.
// Requests are bounded far lower (see maxRequestFrame); anything bigger is
// garbage and the connection is dropped before allocating it.
const maxFrame = 8 << 20

// maxRequestFrame bounds one request frame for the given session limits:
// the largest legitimate request is one session change, which the limits
// bound, with ample room for encoding overhead.
func maxRequestFrame(l session.Limits) int {
	return min(max(1<<20, 4*(l.MaxBytes+l.MaxKeys*l.MaxKeyBytes)), maxFrame)
}

// maxConnsPerPeer is how many connections a follower keeps to the leader.
// One would do for multiplexing; two keep one slow large request from
// delaying every small one behind it in the TCP stream.
const maxConnsPerPeer = 2

var (
	errConnLost = errors.New("cluster: connection to leader lost")
	errDial     = errors.New("cluster: cannot reach leader")
)

type frame struct {
	id      uint64
	kind    byte  // request kind or response status
	budget  int64 // request: nanoseconds the caller still waits; 0 none
	payload []byte
}

func writeFrame(w *bufio.Writer, f *frame, request bool) error {
	n := 8 + 1 + len(f.payload)
	if request {
		n += 8
	}
	var hdr [4 + 8 + 1 + 8]byte
	binary.BigEndian.PutUint32(hdr[0:], uint32(n))
	binary.BigEndian.PutUint64(hdr[4:], f.id)
	hdr[12] = f.kind
	h := hdr[:13]
	if request {
		binary.BigEndian.PutUint64(hdr[13:], uint64(f.budget))
		h = hdr[:21]
	}
	if _, err := w.Write(h); err != nil {
		return err
	}
	_, err := w.Write(f.payload)
	return err
}

func readFrame(r *bufio.Reader, request bool) (*frame, error) {
	n, err := readFrameHeader(r, request, maxFrame)
	if err != nil {
		return nil, err
	}
	return readFrameBody(r, n, request)
}

// readFrameHeader reads a frame's length and checks it against limit,
// before anything is allocated for the frame.
func readFrameHeader(r *bufio.Reader, request bool, limit int) (int, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	min := uint32(9)
	if request {
		min = 17
	}
	if n < min || int64(n) > int64(limit) {
		return 0, fmt.Errorf("cluster: bad frame length %d", n)
	}
	return int(n), nil
}

func readFrameBody(r *bufio.Reader, n int, request bool) (*frame, error) {
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	f := &frame{id: binary.BigEndian.Uint64(buf), kind: buf[8], payload: buf[9:]}
	if request {
		f.budget = int64(binary.BigEndian.Uint64(buf[9:]))
		f.payload = buf[17:]
	}
	return f, nil
}

// forwardClient keeps multiplexed connections to peers.
type forwardClient struct {
	dial   func(addr string, timeout time.Duration) (net.Conn, error)
	log    *slog.Logger
	nextID atomic.Uint64
	// maxRequest is the largest request frame peers accept.
	maxRequest int
	// loseReply, when set (tests), is asked about every reply: true drops
	// it and cuts the connection, as a crash of the leader right after it
	// applied the request, or a broken network, would. Atomic: tests set
	// it while read loops run.
	loseReply atomic.Pointer[func(kind byte) bool]

	mu     sync.Mutex
	peers  map[string][]*clientConn
	closed bool
	wg     sync.WaitGroup
}

func newForwardClient(dial func(string, time.Duration) (net.Conn, error), maxRequest int, log *slog.Logger) *forwardClient {
	return &forwardClient{dial: dial, log: log, peers: map[string][]*clientConn{}, maxRequest: maxRequest}
}

type clientConn struct {
	c      *forwardClient
	addr   string
	conn   net.Conn
	sendCh chan *frame
	done   chan struct{}

	mu       sync.Mutex
	pending  map[uint64]chan *frame
	dead     bool
	lastUsed time.Time // when the last request was queued
}

// idleFor reports whether the connection has had no request in flight and
// none queued for at least d. It is then closed by its client before the
// server's idle timeout could close it under a request.
func (cc *clientConn) idleFor(d time.Duration, now time.Time) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return len(cc.pending) == 0 && now.Sub(cc.lastUsed) >= d
}

// errAbandoned means the caller stopped waiting (the leader changed) after
// the request was sent: its outcome is unknown.
var errAbandoned = errors.New("cluster: leader changed while waiting for its reply")

// call sends one request to addr and waits for its response. A returned
// error wrapping errDial means the request was never sent. A close of
// abandon (may be nil) makes call stop waiting with errAbandoned: a
// request to a leader that hangs must not hold its caller once another
// leader is elected.
func (c *forwardClient) call(ctx context.Context, addr string, kind byte, payload []byte, abandon <-chan struct{}) (*frame, error) {
	if 17+len(payload) > c.maxRequest {
		// The peer would drop the connection, and every request on it.
		return nil, fmt.Errorf("cluster: %w: a request of %d bytes", session.ErrTooLarge, len(payload))
	}
	cc, err := c.conn(ctx, addr)
	if err != nil {
		return nil, err
	}
	// The deadline travels as the time left, not as a wall-clock instant,
	// so clock skew between nodes cannot expire or extend it.
	f := &frame{id: c.nextID.Add(1), kind: kind, payload: payload}
	if dl, ok := ctx.Deadline(); ok {
		f.budget = max(int64(time.Until(dl)), 1)
	}
	ch := make(chan *frame, 1)
	cc.mu.Lock()
	if cc.dead {
		cc.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", errDial, addr)
	}
	cc.pending[f.id] = ch
	cc.lastUsed = time.Now()
	cc.mu.Unlock()
	select {
	case <-abandon:
		// Not sent yet: the caller may safely retry with the new leader.
		cc.forget(f.id)
		return nil, fmt.Errorf("%w: leader changed before sending", errDial)
	default:
	}
	select {
	case cc.sendCh <- f:
	case <-cc.done:
		return nil, fmt.Errorf("%w: %s", errConnLost, addr)
	case <-ctx.Done():
		cc.forget(f.id)
		return nil, fmt.Errorf("%w: %w", errDial, ctx.Err())
	}
	select {
	case r := <-ch:
		return r, nil
	case <-cc.done:
		return nil, fmt.Errorf("%w: %s", errConnLost, addr)
	case <-abandon:
		cc.forget(f.id)
		return nil, errAbandoned
	case <-ctx.Done():
		cc.forget(f.id)
		return nil, ctx.Err()
	}
}

func (cc *clientConn) forget(id uint64) {
	cc.mu.Lock()
	delete(cc.pending, id)
	cc.mu.Unlock()
}

// conn returns the least loaded live connection to addr, dialling a new
// one while there are fewer than maxConnsPerPeer.
func (c *forwardClient) conn(ctx context.Context, addr string) (*clientConn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: client closed", errDial)
	}
	conns := c.reapIdle(addr)
	var best *clientConn
	bestLoad := -1
	for _, cc := range conns {
		cc.mu.Lock()
		load := len(cc.pending)
		cc.mu.Unlock()
		if best == nil || load < bestLoad {
			best, bestLoad = cc, load
		}
	}
	if best != nil && (bestLoad == 0 || len(conns) >= maxConnsPerPeer) {
		c.mu.Unlock()
		return best, nil
	}
	c.mu.Unlock()

	timeout := time.Second
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	conn, err := c.dial(addr, timeout)
	if err != nil {
		if best != nil {
			return best, nil
		}
		return nil, fmt.Errorf("%w %s: %w", errDial, addr, err)
	}
	cc := &clientConn{c: c, addr: addr, conn: conn, sendCh: make(chan *frame, 64),
		done: make(chan struct{}), pending: map[uint64]chan *frame{}, lastUsed: time.Now()}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		conn.Close()
		return nil, fmt.Errorf("%w: client closed", errDial)
	}
	if existing := c.peers[addr]; len(existing) >= maxConnsPerPeer {
		// Others dialled meanwhile (many commits right after a leader
		// change): keep the pool at its size.
		c.mu.Unlock()
		conn.Close()
		return existing[0], nil
	}
	c.peers[addr] = append(c.peers[addr], cc)
	c.wg.Add(2)
	c.mu.Unlock()
	go cc.writeLoop()
	go cc.readLoop()
	return cc, nil
}

// clientIdle is how long an unused connection to a peer is kept: well
// under the server's forwardIdleTimeout.
func clientIdle() time.Duration { return forwardIdleTimeout / 2 }

// reapIdle closes addr's idle connections and returns the others. c.mu is
// held.
func (c *forwardClient) reapIdle(addr string) []*clientConn {
	conns := c.peers[addr]
	now := time.Now()
	live := conns[:0:0]
	for _, cc := range conns {
		if cc.idleFor(clientIdle(), now) {
			cc.mu.Lock()
			cc.dead = true
			close(cc.done)
			cc.mu.Unlock()
			cc.conn.Close()
			continue
		}
		live = append(live, cc)
	}
	if len(live) == 0 {
		delete(c.peers, addr)
	} else {
		c.peers[addr] = live
	}
	return live
}

// writeLoop writes queued requests and flushes only when the queue is
// empty (see flushGate), so a burst of concurrent requests costs one
// syscall.
func (cc *clientConn) writeLoop() {
	defer cc.c.wg.Done()
	w := bufio.NewWriterSize(cc.conn, 64<<10)
	var gate flushGate
	for {
		var f *frame
		select {
		case f = <-cc.sendCh:
		case <-cc.done:
			return
		}
		if err := writeFrame(w, f, true); err != nil {
			cc.fail(err)
			return
		}
		if gate.flush(cc.sendCh) {
			if err := w.Flush(); err != nil {
				cc.fail(err)
				return
			}
		}
	}
}

func (cc *clientConn) readLoop() {
	defer cc.c.wg.Done()
	r := bufio.NewReaderSize(cc.conn, 64<<10)
	for {
		f, err := readFrame(r, false)
		if err != nil {
			cc.fail(err)
			return
		}
		if lose := cc.c.loseReply.Load(); lose != nil && (*lose)(f.kind) {
			cc.fail(errors.New("cluster: reply lost (test)"))
			return
		}
		cc.mu.Lock()
		ch := cc.pending[f.id]
		delete(cc.pending, f.id)
		cc.mu.Unlock()
		if ch != nil {
			ch <- f
		}
	}
}

// fail drops a broken connection from the pool, so a restarted leader
// leaves no dead connection behind, and wakes every waiter.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	if cc.dead {
		cc.mu.Unlock()
		return
	}
	cc.dead = true
	close(cc.done)
	cc.mu.Unlock()
	cc.conn.Close()
	c := cc.c
	c.mu.Lock()
	conns := c.peers[cc.addr]
	for i, x := range conns {
		if x == cc {
			c.peers[cc.addr] = append(conns[:i:i], conns[i+1:]...)
			break
		}
	}
	if len(c.peers[cc.addr]) == 0 {
		delete(c.peers, cc.addr)
	}
	c.mu.Unlock()
	if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
		c.log.Debug("forward connection closed", "peer", cc.addr, "err", err)
	}
}

// flushGate decides when a connection's writer flushes: when its queue is
// empty, and still empty after every goroutine that was ready to run has
// had its turn. The replies to the commands of one raft entry are ready
// together, as are requests that arrive together; flushing after the
// first would cost a write (and a read on the other side) for each.
// Gosched returns at once when nothing else is ready, so a lone frame
// waits for nothing; and the writer yields once per flush, so frames that
// keep arriving while it yields cannot put the flush off again and again.
type flushGate struct{ yielded bool }

func (g *flushGate) flush(q <-chan *frame) bool {
	if len(q) > 0 {
		return false
	}
	if !g.yielded {
		g.yielded = true
		runtime.Gosched()
		if len(q) > 0 {
			return false
		}
	}
	g.yielded = false
	return true
}

func (c *forwardClient) close() {
	c.mu.Lock()
	c.closed = true
	var all []*clientConn
	for _, conns := range c.peers {
		all = append(all, conns...)
	}
	c.mu.Unlock()
	for _, cc := range all {
		cc.fail(net.ErrClosed)
	}
	c.wg.Wait()
}

// Bounds on what peers may make the forwarding server hold. Variables so
// tests can shorten the timeouts.
var (
	// forwardIdleTimeout closes a forward connection that sent no request
	// for this long. Clients drop their own idle connections sooner (see
	// clientIdle), so a request never races with this close.
	forwardIdleTimeout = 2 * time.Minute
	// frameReadTimeout bounds reading one frame once its header arrived.
	frameReadTimeout = 10 * time.Second
	// forwardWriteTimeout bounds writing answers to a peer: one that
	// stops reading them (its socket buffers full) is dropped.
	forwardWriteTimeout = 10 * time.Second
	// workerIdle is how long a worker of the forwarding server waits for
	// its next task before it exits.
	workerIdle = 10 * time.Second
)

const (
	// maxInFlight bounds requests being handled across all connections,
	// and maxInFlightPerConn those of one connection.
	maxInFlight        = 2048
	maxInFlightPerConn = 1024
	// maxBytesInFlight bounds the request bytes held across all
	// connections, and maxConnBytesInFlight those of one connection: a
	// frame's buffer is allocated only once its bytes fit, so a flood of
	// large frames waits in the kernel's socket buffers, not in the heap.
	maxBytesInFlight     = 16 << 20
	maxConnBytesInFlight = maxFrame
)

// forwardServer answers requests from peers. handle runs on a worker
// goroutine per request in flight, bounded per connection and in total.
type forwardServer struct {
	handle func(ctx context.Context, from peer, kind byte, payload []byte) (status byte, resp []byte)
	log    *rateLog

	inflight   chan struct{}
	bytes      *semaphore.Weighted
	maxRequest int
	workers    workerPool

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newForwardServer(handle func(context.Context, peer, byte, []byte) (byte, []byte), maxRequest int, log *rateLog) *forwardServer {
	ctx, cancel := context.WithCancel(context.Background())
	s := &forwardServer{handle: handle, log: log, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{},
		inflight: make(chan struct{}, maxInFlight), bytes: semaphore.NewWeighted(maxBytesInFlight), maxRequest: maxRequest}
	s.workers = workerPool{idleFor: workerIdle, stop: ctx.Done(), wg: &s.wg}
	return s
}

func (s *forwardServer) serve(conn net.Conn, from peer) {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
	}()

	out := make(chan *frame, 256)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		w := bufio.NewWriterSize(conn, 64<<10)
		var gate flushGate
		failed := false
		fail := func(err error) {
			if !failed && errors.Is(err, os.ErrDeadlineExceeded) {
				s.log.Warn("forward-write", "forward connection closed: the peer did not read its answers", "remote", conn.RemoteAddr(), "timeout", forwardWriteTimeout)
			}
			failed = true
			conn.Close()
		}
		var armed time.Time
		for f := range out {
			// A peer that stops reading its answers would otherwise
			// block this writer, then every handler of the connection
			// and their in-flight slots, for good. The deadline moves
			// on as writes go through, so a write fails only after
			// (at least nine tenths of) forwardWriteTimeout without
			// progress.
			if now := time.Now(); now.Sub(armed) > forwardWriteTimeout/10 {
				_ = conn.SetWriteDeadline(now.Add(forwardWriteTimeout))
				armed = now
			}
			if err := writeFrame(w, f, false); err != nil {
				fail(err)
				continue // keep draining so handlers never block
			}
			if gate.flush(out) {
				if err := w.Flush(); err != nil {
					fail(err)
				}
			}
		}
	}()
	// Handlers stop when their connection goes: nobody waits for them.
	connCtx, connCancel := context.WithCancel(s.ctx)
	defer connCancel()
	var handlers sync.WaitGroup
	c := &serverConn{s: s, conn: conn, from: from, ctx: connCtx, out: out, handlers: &handlers,
		slots: make(chan struct{}, maxInFlightPerConn), bytes: semaphore.NewWeighted(maxConnBytesInFlight),
		r: bufio.NewReaderSize(conn, 64<<10)}
	for c.next() {
	}
	connCancel()
	handlers.Wait()
	close(out)
	<-writerDone
}

// serverConn is the reading side of one forward connection.
type serverConn struct {
	s        *forwardServer
	conn     net.Conn
	from     peer
	ctx      context.Context
	out      chan<- *frame
	handlers *sync.WaitGroup
	slots    chan struct{}
	bytes    *semaphore.Weighted
	r        *bufio.Reader
}

// next reads one request and starts its handler; false ends the
// connection. The request's in-flight slots and byte budget are taken
// before its buffer is allocated, and given back when its handler ends.
func (c *serverConn) next() bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(forwardIdleTimeout))
	n, err := readFrameHeader(c.r, true, c.s.maxRequest)
	if err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			c.s.log.Warn("forward-read", "forward connection closed", "remote", c.conn.RemoteAddr(), "err", err)
		}
		return false
	}
	release, ok := c.acquire(int64(n))
	if !ok {
		return false
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(frameReadTimeout))
	f, err := readFrameBody(c.r, n, true)
	if err != nil {
		release()
		c.s.log.Warn("forward-read", "forward connection closed mid-frame", "remote", c.conn.RemoteAddr(), "err", err)
		return false
	}
	c.handlers.Add(1)
	c.s.workers.run(func() {
		defer c.handlers.Done()
		defer release()
		c.out <- c.answer(f)
	})
	return true
}

func (c *serverConn) acquire(n int64) (release func(), ok bool) {
	select {
	case c.slots <- struct{}{}:
	case <-c.ctx.Done():
		return nil, false
	}
	select {
	case c.s.inflight <- struct{}{}:
	case <-c.ctx.Done():
		<-c.slots
		return nil, false
	}
	if c.bytes.Acquire(c.ctx, n) != nil {
		<-c.s.inflight
		<-c.slots
		return nil, false
	}
	if c.s.bytes.Acquire(c.ctx, n) != nil {
		c.bytes.Release(n)
		<-c.s.inflight
		<-c.slots
		return nil, false
	}
	return func() {
		c.s.bytes.Release(n)
		c.bytes.Release(n)
		<-c.s.inflight
		<-c.slots
	}, true
}

func (c *serverConn) answer(f *frame) *frame {
	ctx, cancel := c.ctx, context.CancelFunc(func() {})
	if f.budget > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(f.budget))
	}
	status, resp := c.s.handle(ctx, c.from, f.kind, f.payload)
	cancel()
	if len(resp) > maxFrame-64 {
		// The peer would drop the whole connection, and every request
		// multiplexed on it, on a frame this large.
		status, resp = statusError, []byte("reply too large")
	}
	return &frame{id: f.id, kind: status, payload: resp}
}

func (s *forwardServer) close() {
	s.mu.Lock()
	s.cancel()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
