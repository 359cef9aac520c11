package cluster

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// workerPool runs tasks on goroutines that outlive them. A goroutine per
// forwarded request grew a fresh stack for every commit (the decoder and
// raft's Apply need more than a new goroutine starts with), which profiles
// of a loaded leader put at 5 % of its CPU. The most recently idle worker
// takes the next task, so after a burst the surplus workers go idle for
// idleFor and exit while the steady load keeps a few busy; the number of
// workers is bounded by the tasks in flight, which the caller bounds.
type workerPool struct {
	idleFor time.Duration
	stop    <-chan struct{} // closed: idle workers exit
	wg      *sync.WaitGroup // counts the workers

	mu   sync.Mutex
	idle []chan func() // each idle worker's hand-over channel, most recent last
	n    atomic.Int32  // workers alive
}

// run hands task to the most recently idle worker, or starts one.
func (p *workerPool) run(task func()) {
	p.mu.Lock()
	if k := len(p.idle); k > 0 {
		ch := p.idle[k-1]
		p.idle = p.idle[:k-1]
		p.mu.Unlock()
		ch <- task // buffered: never blocks
		return
	}
	p.mu.Unlock()
	p.wg.Add(1)
	p.n.Add(1)
	go p.work(task)
}

func (p *workerPool) work(task func()) {
	defer p.wg.Done()
	defer p.n.Add(-1)
	ch := make(chan func(), 1)
	t := time.NewTimer(p.idleFor)
	defer t.Stop()
	for {
		task()
		task = nil // an idle worker keeps nothing of its last request alive
		p.mu.Lock()
		p.idle = append(p.idle, ch)
		p.mu.Unlock()
		t.Reset(p.idleFor)
		select {
		case task = <-ch:
			continue
		case <-t.C:
		case <-p.stop:
		}
		if p.leave(ch) {
			return
		}
		// run took this worker off the list as it gave up: a task is
		// on its way.
		task = <-ch
	}
}

// leave takes ch off the idle list, or reports that run already did.
func (p *workerPool) leave(ch chan func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.Index(p.idle, ch)
	if i < 0 {
		return false
	}
	p.idle = slices.Delete(p.idle, i, i+1)
	return true
}
