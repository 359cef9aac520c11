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
	"sync"
	"sync/atomic"
	"time"
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

// maxFrame bounds one frame. A session is at most a few hundred KiB even
// with generous limits; anything bigger is garbage and the connection is
// dropped before allocating it.
const maxFrame = 8 << 20

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
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	min := uint32(9)
	if request {
		min = 17
	}
	if n < min || n > maxFrame {
		return nil, fmt.Errorf("cluster: bad frame length %d", n)
	}
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

	mu     sync.Mutex
	peers  map[string][]*clientConn
	closed bool
	wg     sync.WaitGroup
}

func newForwardClient(dial func(string, time.Duration) (net.Conn, error), log *slog.Logger) *forwardClient {
	return &forwardClient{dial: dial, log: log, peers: map[string][]*clientConn{}}
}

type clientConn struct {
	c      *forwardClient
	addr   string
	conn   net.Conn
	sendCh chan *frame
	done   chan struct{}

	mu      sync.Mutex
	pending map[uint64]chan *frame
	dead    bool
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
	conns := c.peers[addr]
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
		done: make(chan struct{}), pending: map[uint64]chan *frame{}}
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

// writeLoop writes queued requests and flushes only when the queue is
// empty, so a burst of concurrent requests costs one syscall.
func (cc *clientConn) writeLoop() {
	defer cc.c.wg.Done()
	w := bufio.NewWriterSize(cc.conn, 64<<10)
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
		if len(cc.sendCh) == 0 {
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

// forwardServer answers requests from peers. handle runs in its own
// goroutine per request, bounded per connection.
type forwardServer struct {
	handle func(ctx context.Context, kind byte, payload []byte) (status byte, resp []byte)
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// maxInFlightPerConn bounds the goroutines one peer connection can start.
const maxInFlightPerConn = 4096

func newForwardServer(handle func(context.Context, byte, []byte) (byte, []byte), log *slog.Logger) *forwardServer {
	ctx, cancel := context.WithCancel(context.Background())
	return &forwardServer{handle: handle, log: log, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
}

func (s *forwardServer) serve(conn net.Conn) {
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
		for f := range out {
			if err := writeFrame(w, f, false); err != nil {
				conn.Close()
				continue // keep draining so handlers never block
			}
			if len(out) == 0 {
				if err := w.Flush(); err != nil {
					conn.Close()
				}
			}
		}
	}()
	// Handlers stop when their connection goes: nobody waits for them.
	connCtx, connCancel := context.WithCancel(s.ctx)
	defer connCancel()
	var handlers sync.WaitGroup
	sem := make(chan struct{}, maxInFlightPerConn)
	r := bufio.NewReaderSize(conn, 64<<10)
	for {
		f, err := readFrame(r, true)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("forward connection closed", "remote", conn.RemoteAddr(), "err", err)
			}
			break
		}
		select {
		case sem <- struct{}{}:
		case <-s.ctx.Done():
		}
		if s.ctx.Err() != nil {
			break
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			defer func() { <-sem }()
			ctx, cancel := connCtx, context.CancelFunc(func() {})
			if f.budget > 0 {
				ctx, cancel = context.WithTimeout(ctx, time.Duration(f.budget))
			}
			status, resp := s.handle(ctx, f.kind, f.payload)
			cancel()
			if len(resp) > maxFrame-64 {
				// The peer would drop the whole connection, and every
				// request multiplexed on it, on a frame this large.
				status, resp = statusError, []byte("reply too large")
			}
			out <- &frame{id: f.id, kind: status, payload: resp}
		}()
	}
	connCancel()
	handlers.Wait()
	close(out)
	<-writerDone
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
