package cluster

import (
	"sync"
	"testing"
	"time"
)

func newTestPool(t *testing.T, idleFor time.Duration) (*workerPool, func()) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	p := &workerPool{idleFor: idleFor, stop: stop, wg: &wg}
	var once sync.Once
	closePool := func() {
		once.Do(func() {
			close(stop)
			wg.Wait()
		})
	}
	t.Cleanup(closePool)
	return p, closePool
}

// runAndWait runs one task on p and waits for it to finish; a task the
// pool lost fails the test instead of hanging it.
func runAndWait(t *testing.T, p *workerPool) {
	t.Helper()
	done := make(chan struct{})
	p.run(func() { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a task handed to the pool never ran")
	}
}

func waitWorkers(t *testing.T, p *workerPool, want int32, keepBusy func()) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.n.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers alive, want %d", p.n.Load(), want)
		}
		keepBusy()
	}
}

func TestWorkerPoolReusesWorkers(t *testing.T) {
	p, _ := newTestPool(t, time.Minute)
	for range 100 {
		runAndWait(t, p)
	}
	// A worker puts itself on the idle list just after its task ends:
	// at most a second one starts while the first is on its way back.
	if n := p.n.Load(); n > 2 {
		t.Fatalf("100 tasks one after another started %d workers", n)
	}
}

// After a burst, a trickle of tasks keeps the most recently idle worker
// busy and lets the others expire; handing tasks to the longest idle one
// instead would keep the whole burst's workers alive.
func TestWorkerPoolSurplusExpiresUnderTrickle(t *testing.T) {
	p, _ := newTestPool(t, 100*time.Millisecond)
	const burst = 8
	release := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(burst)
	done.Add(burst)
	for range burst {
		p.run(func() {
			started.Done()
			<-release
			done.Done()
		})
	}
	started.Wait()
	if n := p.n.Load(); n != burst {
		t.Fatalf("%d concurrent tasks ran on %d workers", burst, n)
	}
	close(release)
	done.Wait()
	// One task every 5 ms: each of 8 workers taken in turn would be used
	// every 40 ms, well inside idleFor.
	waitWorkers(t, p, 1, func() {
		runAndWait(t, p)
		time.Sleep(5 * time.Millisecond)
	})
}

func TestWorkerPoolStops(t *testing.T) {
	p, closePool := newTestPool(t, time.Minute)
	release := make(chan struct{})
	for range 4 {
		p.run(func() { <-release })
	}
	runAndWait(t, p)
	close(release)
	closePool() // waits for every worker to exit
	if n := p.n.Load(); n != 0 {
		t.Fatalf("%d workers alive after the pool stopped", n)
	}
}

// A task handed over as its worker gives up still runs.
func TestWorkerPoolHandOverRace(t *testing.T) {
	p, _ := newTestPool(t, time.Microsecond)
	for i := range 2000 {
		runAndWait(t, p)
		if i%100 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}
