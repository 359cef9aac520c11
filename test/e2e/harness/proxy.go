package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// network is the harness's model of the links between nodes: which
// (source, destination) pairs are cut and which nodes are slowed down.
// It owns one proxy per node.
type network struct {
	mu  sync.Mutex
	cut map[string]bool // node IDs cut off from everyone
	// loseEvery, per node, makes every n-th reply chunk that node sends
	// back on a connection another node opened to it disappear, and cuts
	// that connection: the node applied the request and answered, and the
	// answer never arrived.
	loseEvery map[string]int
	lost      atomic.Int64             // reply chunks dropped so far
	delay     map[string]time.Duration // per node, added to every chunk it sends or receives
	proxies   map[string]*proxy
	pids      func() map[int]string // live node processes: pid → node ID

	unidentified atomic.Int64 // accepted connections whose source was not found
}

func newNetwork(pids func() map[int]string) *network {
	return &network{cut: map[string]bool{}, delay: map[string]time.Duration{}, loseEvery: map[string]int{},
		proxies: map[string]*proxy{}, pids: pids}
}

func (nw *network) blocked(src, dst string) bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return src != dst && (nw.cut[src] || nw.cut[dst])
}

func (nw *network) delayOf(src, dst string) time.Duration {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return max(nw.delay[src], nw.delay[dst])
}

// isolate cuts id off from every other node in both directions: new
// connections are refused and existing ones are closed.
func (nw *network) isolate(id string) {
	nw.mu.Lock()
	nw.cut[id] = true
	ps := make([]*proxy, 0, len(nw.proxies))
	for _, p := range nw.proxies {
		ps = append(ps, p)
	}
	nw.mu.Unlock()
	for _, p := range ps {
		p.closeMatching(func(c *proxyConn) bool { return c.src == id || p.dst == id })
	}
}

func (nw *network) heal(id string) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	delete(nw.cut, id)
	delete(nw.delay, id)
	delete(nw.loseEvery, id)
}

// setLoseReplies makes every n-th reply of id disappear (0 stops).
func (nw *network) setLoseReplies(id string, n int) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if n <= 0 {
		delete(nw.loseEvery, id)
		return
	}
	nw.loseEvery[id] = n
}

// loseReply says whether this reply chunk from dst is to disappear.
func (nw *network) loseReply(dst string, chunk int64) bool {
	nw.mu.Lock()
	n := nw.loseEvery[dst]
	nw.mu.Unlock()
	if n <= 0 || chunk%int64(n) != 0 {
		return false
	}
	nw.lost.Add(1)
	return true
}

func (nw *network) setDelay(id string, d time.Duration) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if d <= 0 {
		delete(nw.delay, id)
		return
	}
	nw.delay[id] = d
}

// proxy forwards connections to one node's raft port.
type proxy struct {
	nw     *network
	dst    string // node ID behind the proxy
	ln     net.Listener
	target atomic.Value // string: the node's real raft address
	mu     sync.Mutex
	conns  map[*proxyConn]struct{}
	done   chan struct{}
	wg     sync.WaitGroup
}

type proxyConn struct {
	src          string
	client, node net.Conn
	once         sync.Once
	replies      atomic.Int64 // reply chunks seen, for loseReply
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		c.client.Close()
		c.node.Close()
	})
}

func (nw *network) newProxy(dst string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("harness: proxy listen: %w", err)
	}
	p := &proxy{nw: nw, dst: dst, ln: ln, conns: map[*proxyConn]struct{}{}, done: make(chan struct{})}
	nw.mu.Lock()
	nw.proxies[dst] = p
	nw.mu.Unlock()
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) setTarget(addr string) { p.target.Store(addr) }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *proxy) serve(c net.Conn) {
	defer p.wg.Done()
	src := p.nw.identify(c)
	target, _ := p.target.Load().(string)
	if target == "" || p.nw.blocked(src, p.dst) {
		c.Close()
		return
	}
	n, err := net.DialTimeout("tcp", target, time.Second)
	if err != nil {
		c.Close()
		return
	}
	pc := &proxyConn{src: src, client: c, node: n}
	p.mu.Lock()
	select {
	case <-p.done:
		p.mu.Unlock()
		pc.close()
		return
	default:
	}
	p.conns[pc] = struct{}{}
	p.mu.Unlock()
	// A cut that raced with this dial must still win.
	if p.nw.blocked(src, p.dst) {
		pc.close()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(pc, n, c) }()
	go func() { defer wg.Done(); p.pipe(pc, c, n) }()
	wg.Wait()
	pc.close()
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
}

// pipe copies src to dst, holding each chunk back by the current delay
// (which thus adds latency and, under load, limits throughput).
func (p *proxy) pipe(pc *proxyConn, dst, src net.Conn) {
	defer pc.close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := p.nw.delayOf(pc.src, p.dst); d > 0 {
				time.Sleep(d)
			}
			if p.nw.blocked(pc.src, p.dst) {
				return
			}
			if dst == pc.client && p.nw.loseReply(p.dst, pc.replies.Add(1)) {
				return // dropped, and the connection cut
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) closeMatching(match func(*proxyConn) bool) {
	p.mu.Lock()
	var cs []*proxyConn
	for c := range p.conns {
		if match(c) {
			cs = append(cs, c)
		}
	}
	p.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
}

func (p *proxy) close() {
	close(p.done)
	p.ln.Close()
	p.closeMatching(func(*proxyConn) bool { return true })
	p.wg.Wait()
}

// identify returns the ID of the node process that opened c, or "" when
// it cannot tell. The client end of c is a socket whose local port is c's
// remote port; /proc/net/tcp gives its inode and /proc/<pid>/fd the
// process holding it.
func (nw *network) identify(c net.Conn) string {
	ra, ok1 := c.RemoteAddr().(*net.TCPAddr)
	la, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return ""
	}
	inode, err := socketInode(ra.Port, la.Port)
	if err == nil {
		for pid, id := range nw.pids() {
			if processHasSocket(pid, inode) {
				return id
			}
		}
	}
	nw.unidentified.Add(1)
	return ""
}

// socketInode finds the inode of the TCP socket with local port lport and
// remote port rport.
func socketInode(lport, rport int) (string, error) {
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		ino, found := scanInode(f, lport, rport)
		f.Close()
		if found {
			return ino, nil
		}
	}
	return "", errors.New("harness: socket not found in /proc/net")
}

func scanInode(r io.Reader, lport, rport int) (string, bool) {
	s := bufio.NewScanner(r)
	s.Scan() // header
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 10 {
			continue
		}
		if hexPort(f[1]) == lport && hexPort(f[2]) == rport {
			return f[9], true
		}
	}
	return "", false
}

func hexPort(addr string) int {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return -1
	}
	v, err := strconv.ParseUint(addr[i+1:], 16, 16)
	if err != nil {
		return -1
	}
	return int(v)
}

func processHasSocket(pid int, inode string) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	want := "socket:[" + inode + "]"
	for _, e := range ents {
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == want {
			return true
		}
	}
	return false
}
