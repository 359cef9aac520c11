package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

// populated returns a node with sessions of every shape: owned, with
// several values, with an empty value, plus a signing key.
func populated(tb testing.TB, n int) *node {
	tb.Helper()
	nd := newNode(tb)
	nd.apply(EncodeAddSigningKey("k1", testSecret("secret-1")))
	for i := range n {
		c := create(fmt.Sprint("s", i), set("a", strings.Repeat("x", i%50)), set("e", ""))
		if i%3 == 0 {
			c.SetOwner, c.Owner = true, fmt.Sprint("user:", i%7)
		}
		mustOK(tb, nd.change(c))
		nd.now = nd.now.Add(time.Second)
	}
	return nd
}

func persist(tb testing.TB, f *FSM) []byte {
	tb.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		tb.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		tb.Fatalf("sink closed=%v cancelled=%v, want closed only", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func TestSnapshotRoundTrip(t *testing.T) {
	src := populated(t, 300)
	data := persist(t, src.f)
	dst := populated(t, 5) // Restore must discard this state entirely.
	rc := &readCloser{Reader: bytes.NewReader(data)}
	changed := dst.f.KeyringChanged()
	if err := dst.f.Restore(rc); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Error("Restore replaced the keyring without signalling KeyringChanged")
	}
	if !rc.closed {
		t.Error("Restore did not close its reader")
	}
	requireEqualState(t, src.f, dst.f)
	checkIndexes(t, dst.f)
	if dst.f.AppliedIndex() != src.f.AppliedIndex() {
		t.Errorf("AppliedIndex = %d, want %d", dst.f.AppliedIndex(), src.f.AppliedIndex())
	}
	// An empty FSM round-trips too.
	empty := New(Config{})
	if err := dst.f.Restore(io.NopCloser(bytes.NewReader(persist(t, empty)))); err != nil {
		t.Fatal(err)
	}
	if dst.f.Len() != 0 || len(dst.f.SigningKeys()) != 0 || dst.f.AppliedIndex() != 0 {
		t.Errorf("after restoring an empty snapshot: Len %d, keys %v, index %d", dst.f.Len(), dst.f.SigningKeys(), dst.f.AppliedIndex())
	}
}

// TestSnapshotOldVersionsRestore: snapshots written before the record
// codec (inline records, with and without the request table) restore to
// the same sessions.
func TestSnapshotOldVersionsRestore(t *testing.T) {
	src := populated(t, 300)
	for _, version := range []uint16{snapVersionInline, snapVersionNoRequests} {
		snap, _ := src.f.Snapshot()
		snap.(*snapshot).version = version
		sink := &memSink{}
		if err := snap.Persist(sink); err != nil {
			t.Fatal(err)
		}
		snap.Release()
		dst := New(Config{})
		if err := dst.Restore(sink.reader()); err != nil {
			t.Fatalf("version %d: %v", version, err)
		}
		requireEqualState(t, src.f, dst)
		checkIndexes(t, dst)
	}
}

func TestSnapshotLargeValue(t *testing.T) {
	// Values larger than the reader's buffer take the chunked path.
	n := newNode(t)
	n.f = New(Config{Limits: session.Limits{MaxBytes: 1 << 20, MaxValueBytes: 1 << 20}})
	big := strings.Repeat("0123456789abcdef", (600<<10)/16)
	mustOK(t, n.change(create("a", set("big", big))))
	g := New(Config{})
	if err := g.Restore(io.NopCloser(bytes.NewReader(persist(t, n.f)))); err != nil {
		t.Fatal(err)
	}
	requireEqualState(t, n.f, g)
}

func TestRestoreRejectsDamage(t *testing.T) {
	n := populated(t, 20)
	data := persist(t, n.f)
	target := populated(t, 3)
	before := records(target.f)
	check := func(name string, b []byte) {
		t.Helper()
		err := target.f.Restore(io.NopCloser(bytes.NewReader(b)))
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("%s: Restore = %v, want ErrCorruptSnapshot", name, err)
		}
		if len(records(target.f)) != len(before) || target.f.AppliedIndex() != target.index {
			t.Fatalf("%s: failed Restore changed the state", name)
		}
	}
	for i := 0; i < len(data); i += max(1, len(data)/200) {
		check(fmt.Sprintf("truncated to %d", i), data[:i])
	}
	check("truncated by one", data[:len(data)-1])
	for _, i := range []int{0, 7, 10, len(data) / 2, len(data) - 5, len(data) - 1} {
		b := bytes.Clone(data)
		b[i] ^= 0x40
		check(fmt.Sprintf("bit flip at %d", i), b)
	}
	check("trailing data", append(bytes.Clone(data), 0))
	future := bytes.Clone(data)
	future[len(snapMagic)+1] = snapVersion + 1
	err := target.f.Restore(io.NopCloser(bytes.NewReader(future)))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("unsupported version %d", snapVersion+1)) {
		t.Fatalf("version %d: Restore = %v, want an unsupported-version error", snapVersion+1, err)
	}
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestRestoreReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	err := New(Config{}).Restore(io.NopCloser(failingReader{boom}))
	if !errors.Is(err, ErrCorruptSnapshot) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Restore = %v", err)
	}
}

type failingSink struct{ memSink }

func (s *failingSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestPersistCancelsOnError(t *testing.T) {
	snap, _ := populated(t, 10).f.Snapshot()
	sink := &failingSink{}
	if err := snap.Persist(sink); err == nil {
		t.Fatal("Persist succeeded on a failing sink")
	}
	if !sink.cancelled || sink.closed {
		t.Fatalf("sink cancelled=%v closed=%v, want cancelled only", sink.cancelled, sink.closed)
	}
}

func TestPersistConcurrentWithApply(t *testing.T) {
	// Run with -race: Persist reads the captured shards while Apply
	// clones and writes them.
	n := populated(t, 500)
	want := records(n.f)
	snap, _ := n.f.Snapshot()
	var wg sync.WaitGroup
	sink := &memSink{}
	wg.Go(func() {
		if err := snap.Persist(sink); err != nil {
			t.Error(err)
		}
	})
	for i := range 500 {
		id := fmt.Sprint("s", i)
		if i%2 == 0 {
			n.change(&session.Change{ID: id, Delta: session.Delta{Ops: []session.Op{set("a", "changed")}}})
		} else {
			n.change(&session.Change{ID: id, Destroy: true})
		}
		n.change(create(fmt.Sprint("new", i)))
	}
	wg.Wait()
	g := New(Config{})
	if err := g.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	got := records(g)
	if len(got) != len(want) {
		t.Fatalf("snapshot has %d records, want %d as of Snapshot()", len(got), len(want))
	}
	for k, r := range want {
		if got[k] == nil || got[k].Version != r.Version {
			t.Fatalf("record %v: snapshot has %+v, want %+v", k, got[k], r)
		}
	}
}

// LogBytesSinceSnapshot counts what Apply and ApplyBatch were given since
// the last persisted snapshot or Restore.
func TestLogBytesSinceSnapshot(t *testing.T) {
	nd := populated(t, 10)
	if nd.f.LogBytesSinceSnapshot() == 0 {
		t.Fatal("no log bytes counted after 11 entries")
	}
	before := nd.f.LogBytesSinceSnapshot()
	snap, err := nd.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap.Release() // never persisted: the log is not compacted
	if got := nd.f.LogBytesSinceSnapshot(); got != before {
		t.Fatalf("after a snapshot that was not persisted: %d bytes, want %d", got, before)
	}
	data := persist(t, nd.f)
	if got := nd.f.LogBytesSinceSnapshot(); got != 0 {
		t.Fatalf("after a persisted snapshot: %d bytes, want 0", got)
	}
	cmd, err := EncodeChange(create("later", set("a", "b")))
	if err != nil {
		t.Fatal(err)
	}
	nd.apply(cmd)
	if got := nd.f.LogBytesSinceSnapshot(); got != int64(len(cmd)) {
		t.Fatalf("after one Apply: %d bytes, want %d", got, len(cmd))
	}
	if err := nd.f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if got := nd.f.LogBytesSinceSnapshot(); got != 0 {
		t.Fatalf("after Restore: %d bytes, want 0", got)
	}
}
