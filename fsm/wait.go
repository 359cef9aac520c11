package fsm

import (
	"container/heap"
	"context"
)

// AppliedIndex returns the index of the last log entry this FSM has
// applied, or of the snapshot it was restored from. raft's own
// AppliedIndex runs ahead of it: raft counts an entry as applied when it
// hands it to the FSM goroutine, not when the FSM is done.
//
// raft never hands LogNoop and LogBarrier entries to an FSM, so after a
// leader change AppliedIndex can stay below the commit index until the next
// command; a leader that needs it to catch up proposes [EncodeNoop].
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitApplied returns nil once AppliedIndex is at least index, or ctx's
// error if ctx ends first. Waiters are woken by Apply, not by polling.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	if f.applied.Load() >= index {
		return nil
	}
	w := &waiter{index: index, ch: make(chan struct{})}
	f.waitMu.Lock()
	heap.Push(&f.waiters, w)
	f.nwait.Store(int64(len(f.waiters)))
	// Re-check after announcing the waiter: setApplied stores the index
	// before it reads nwait, so either it sees this waiter or this load
	// sees its index.
	if f.applied.Load() >= index {
		heap.Remove(&f.waiters, w.pos)
		f.nwait.Store(int64(len(f.waiters)))
		f.waitMu.Unlock()
		return nil
	}
	f.waitMu.Unlock()

	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
	}
	f.waitMu.Lock()
	woken := w.pos < 0
	if !woken {
		heap.Remove(&f.waiters, w.pos)
		f.nwait.Store(int64(len(f.waiters)))
	}
	f.waitMu.Unlock()
	if woken {
		// The index arrived as the context ended; the wait succeeded.
		return nil
	}
	return ctx.Err()
}

// setApplied publishes index after the state it covers is visible, then
// wakes the waiters it satisfies.
func (f *FSM) setApplied(index uint64) {
	f.applied.Store(index)
	if f.nwait.Load() == 0 {
		return
	}
	f.waitMu.Lock()
	for len(f.waiters) > 0 && f.waiters[0].index <= index {
		w := heap.Pop(&f.waiters).(*waiter)
		close(w.ch)
	}
	f.nwait.Store(int64(len(f.waiters)))
	f.waitMu.Unlock()
}

type waiter struct {
	index uint64
	ch    chan struct{}
	pos   int // index in the heap; -1 once popped
}

// waitHeap orders waiters by index so that each Apply wakes exactly the
// waiters it satisfies and looks at no others.
type waitHeap []*waiter

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].index < h[j].index }
func (h waitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos = i
	h[j].pos = j
}

func (h *waitHeap) Push(x any) {
	w := x.(*waiter)
	w.pos = len(*h)
	*h = append(*h, w)
}

func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.pos = -1
	return w
}
