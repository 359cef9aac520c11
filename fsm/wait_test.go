package fsm

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

func TestWaitApplied(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	if err := n.f.WaitApplied(ctx, 0); err != nil {
		t.Fatalf("WaitApplied(0) = %v", err)
	}
	const waiters = 20
	var wg sync.WaitGroup
	errs := make(chan error, waiters)
	started := make(chan struct{}, waiters)
	for i := range waiters {
		target := uint64(i%5 + 1)
		wg.Go(func() {
			started <- struct{}{}
			if err := n.f.WaitApplied(ctx, target); err != nil {
				errs <- err
				return
			}
			if got := n.f.AppliedIndex(); got < target {
				errs <- errors.New("woken before its index was applied")
			}
		})
	}
	for range waiters {
		<-started
	}
	for range 5 {
		n.apply(EncodeNoop())
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := n.f.nwait.Load(); got != 0 {
		t.Errorf("%d waiters left registered", got)
	}
}

func TestWaitAppliedContext(t *testing.T) {
	n := newNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := n.f.WaitApplied(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied = %v, want DeadlineExceeded", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := n.f.WaitApplied(cctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied = %v, want Canceled", err)
	}
	if got := n.f.nwait.Load(); got != 0 {
		t.Errorf("%d waiters left registered after cancellation", got)
	}
	// Already applied: succeeds even with a dead context.
	n.apply(EncodeNoop())
	if err := n.f.WaitApplied(cctx, 1); err != nil {
		t.Fatalf("WaitApplied on an applied index = %v", err)
	}
}

func TestWaitAppliedRace(t *testing.T) {
	// Waiters registering while entries apply must never miss a wake-up.
	n := newNode(t)
	const entries = 300
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := uint64(w + 1); i <= entries; i += 7 {
				if err := n.f.WaitApplied(context.Background(), i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range entries {
		n.apply(EncodeNoop())
	}
	wg.Wait()
}

func TestWaitAppliedAfterRestore(t *testing.T) {
	src := populated(t, 3)
	data := persist(t, src.f)
	dst := New(Config{})
	done := make(chan error, 1)
	go func() { done <- dst.WaitApplied(context.Background(), src.index) }()
	if err := dst.Restore(&readCloser{Reader: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestReadsConcurrentWithApply(t *testing.T) {
	// Run with -race.
	n := populated(t, 50)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				n.f.Get(session.KeyOf("s1"), t0)
				n.f.ListOwner("user:0", t0)
				n.f.SigningKeys()
				n.f.Len()
			}
		})
	}
	for i := range 300 {
		n.change(&session.Change{ID: "s1", Delta: session.Delta{SetOwner: true, Owner: []string{"user:0", "user:1"}[i%2]}})
		if i%50 == 0 {
			snap, _ := n.f.Snapshot()
			snap.Release()
			n.apply(EncodeAddSigningKey(string(rune('a'+i/50)), testSecret("s")))
		}
	}
	cancel()
	wg.Wait()
	checkIndexes(t, n.f)
}
