package scsstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

func TestStore(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("find unknown", func(t *testing.T) { testFindUnknown(t, b) })
			t.Run("commit creates then overwrites", func(t *testing.T) { testCommitOverwrites(t, b) })
			t.Run("delete", func(t *testing.T) { testDelete(t, b) })
			t.Run("expiry", func(t *testing.T) { testExpiry(t, b) })
			t.Run("late commit after delete elsewhere", func(t *testing.T) { testLateCommit(t, b) })
		})
	}
}

func mustFind(t *testing.T, s *Store, token string) ([]byte, bool) {
	t.Helper()
	b, found, err := s.Find(token)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	return b, found
}

func testFindUnknown(t *testing.T, b backend) {
	s := New(b.Store)
	for _, token := range []string{"", session.NewID(), "not a token at all"} {
		if _, found := mustFind(t, s, token); found {
			t.Errorf("Find(%q) found a session", token)
		}
	}
}

func testCommitOverwrites(t *testing.T, b backend) {
	s, peer := New(b.Store), New(b.Peer)
	token := session.NewID()
	if err := s.Commit(token, []byte("one"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, found := mustFind(t, peer, token); !found || string(got) != "one" {
		t.Fatalf("peer Find: %q %v, want one", got, found)
	}
	if err := peer.Commit(token, []byte("two"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, found := mustFind(t, s, token); !found || string(got) != "two" {
		t.Fatalf("Find after overwrite: %q %v, want two", got, found)
	}
}

func testDelete(t *testing.T, b backend) {
	s := New(b.Store)
	token := session.NewID()
	if err := s.Commit(token, []byte("x"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(token); err != nil {
		t.Fatal(err)
	}
	if _, found := mustFind(t, New(b.Peer), token); found {
		t.Fatal("deleted session found on the peer")
	}
	if err := s.Delete(session.NewID()); err != nil {
		t.Fatalf("Delete of an unknown token: %v", err)
	}
}

func testExpiry(t *testing.T, b backend) {
	s := New(b.Store)
	past := session.NewID()
	if err := s.Commit(past, []byte("x"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, found := mustFind(t, s, past); found {
		t.Fatal("a session committed with a past expiry was found")
	}
	soon := session.NewID()
	if err := s.Commit(soon, []byte("x"), time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, found := mustFind(t, s, soon); !found {
		t.Fatal("session not found before its expiry")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, found := mustFind(t, s, soon); !found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("session still found 5s after its expiry")
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
}

// testLateCommit is scs issue 45's race: a request loads the session, the
// user logs out through another instance, then the first request commits.
func testLateCommit(t *testing.T, b backend) {
	s, peer := New(b.Store), New(b.Peer)
	token := session.NewID()
	if err := peer.Commit(token, []byte("logged in"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, found := mustFind(t, s, token); !found { // the in-flight request loads
		t.Fatal("session not found")
	}
	if err := peer.Delete(token); err != nil { // logout elsewhere
		t.Fatal(err)
	}
	err := s.Commit(token, []byte("late"), time.Now().Add(time.Minute))
	if !errors.Is(err, ErrEnded) || !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("late commit: %v, want ErrEnded", err)
	}
	if _, found := mustFind(t, peer, token); found {
		t.Fatal("the late commit brought the deleted session back")
	}
}

// TestInFlightWindow checks the memory's bounds with a fake clock: a
// token is known for at least InFlight after Find, and forgotten after
// two periods.
func TestInFlightWindow(t *testing.T) {
	mem := session.NewMemoryStore(session.MemoryOptions{})
	defer mem.Close()
	var mu sync.Mutex
	now := time.Now()
	s := New(mem)
	s.InFlight = time.Minute
	s.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	token := session.NewID()
	if err := s.Commit(token, []byte("x"), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	advance(90 * time.Second) // one rotation: still known
	if !s.known(token) {
		t.Fatal("token forgotten within two periods")
	}
	advance(2 * time.Minute)
	if s.known(token) {
		t.Fatal("token still known after two idle periods")
	}
	if _, found := mustFind(t, s, token); !found || !s.known(token) {
		t.Fatal("Find did not make the token known again")
	}
}

// TestCommitUnavailable: a store error is returned, wrapped, so scs's
// ErrorFunc (with httpmw.StatusCode: 503) answers the request.
func TestCommitUnavailable(t *testing.T) {
	s := New(failingStore{})
	err := s.Commit(session.NewID(), []byte("x"), time.Now().Add(time.Minute))
	if !errors.Is(err, session.ErrNoLeader) {
		t.Fatalf("Commit: %v, want ErrNoLeader", err)
	}
	if _, _, err := s.Find(session.NewID()); !errors.Is(err, session.ErrNoLeader) {
		t.Fatalf("Find: %v, want ErrNoLeader", err)
	}
}

type failingStore struct{}

func (failingStore) Load(context.Context, string, session.LoadOptions) (*session.Record, error) {
	return nil, session.ErrNoLeader
}

func (failingStore) Commit(context.Context, *session.Change) (session.Result, error) {
	return session.Result{}, session.ErrNoLeader
}
