package fsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/raftsession/raftsession/session"
)

func (n *node) encode(c *session.Change) []byte {
	n.tb.Helper()
	b, err := EncodeChange(c)
	if err != nil {
		n.tb.Fatal(err)
	}
	return b
}

// applyRaw applies data as the next entry without checking the Result's
// index (a repeated request answers with its first index).
func (n *node) applyRaw(data []byte) *Result {
	n.tb.Helper()
	r, ok := n.f.Apply(n.entry(data)).(*Result)
	if !ok {
		n.tb.Fatal("Apply returned no *Result")
	}
	return r
}

func counter(t *testing.T, n *node, id string) string {
	t.Helper()
	rec, ok := n.get(id)
	if !ok {
		t.Fatalf("session %s is gone", id)
	}
	return string(rec.Values.Get("n"))
}

func TestRequestAppliesOnce(t *testing.T) {
	n := newNode(t)
	n.apply(n.encode(create("s")))
	inc := EncodeRequest("node-a/1", 1, 1, n.encode(incr("s", "n")))
	first := n.apply(inc)
	if first.Err != nil || len(first.Values) != 1 || first.Values[0] != 1 {
		t.Fatalf("first attempt: %+v", first)
	}
	// The retry of a request whose reply was lost, appended by the next
	// leader: the stored result, nothing applied again.
	again := n.applyRaw(inc)
	if again.Index != first.Index || again.Err != nil || again.Values[0] != 1 {
		t.Fatalf("retry: got %+v, want the first result %+v", again, first)
	}
	if got := counter(t, n, "s"); got != "1" {
		t.Fatalf("counter after a retried increment = %s, want 1", got)
	}
	// Another proposer's request with the same number is its own.
	if r := n.apply(EncodeRequest("node-b/1", 1, 1, n.encode(incr("s", "n")))); r.Values[0] != 2 {
		t.Fatalf("other proposer's request: %+v", r)
	}
	// A rejection is remembered as well: the retry gets the same error.
	bad := EncodeRequest("node-a/1", 2, 1, n.encode(incr("missing", "n")))
	if r := n.apply(bad); !errors.Is(r.Err, session.ErrNotFound) {
		t.Fatalf("increment of a missing session: %v", r.Err)
	}
	if r := n.applyRaw(bad); !errors.Is(r.Err, session.ErrNotFound) {
		t.Fatalf("its retry: %v", r.Err)
	}
}

func TestRequestFloorForgetsAcknowledged(t *testing.T) {
	n := newNode(t)
	n.apply(n.encode(create("s")))
	one := EncodeRequest("p", 1, 1, n.encode(incr("s", "n")))
	n.apply(one)
	// Request 3 says everything below 2 was answered: 1 is forgotten, and
	// a stray copy of it is refused instead of applied.
	n.apply(EncodeRequest("p", 3, 2, n.encode(incr("s", "n"))))
	if r := n.applyRaw(one); !errors.Is(r.Err, errAcknowledged) || !errors.Is(r.Err, session.ErrInvalid) {
		t.Fatalf("stray copy of an acknowledged request: %v", r.Err)
	}
	if got := counter(t, n, "s"); got != "2" {
		t.Fatalf("counter = %s, want 2", got)
	}
	if p := n.f.st.Load().proposers["p"]; len(p.results) != 1 || p.floor != 2 {
		t.Fatalf("table holds %d results with floor %d; want 1 and 2", len(p.results), p.floor)
	}
}

func TestRequestTableSurvivesSnapshotAndExpires(t *testing.T) {
	n := newNode(t)
	n.apply(n.encode(create("s")))
	inc := EncodeRequest("p", 5, 5, n.encode(incr("s", "n")))
	first := n.apply(inc)
	for _, version := range []uint16{snapVersion, snapVersionInline, snapVersionNoRequests} {
		snap, _ := n.f.Snapshot()
		snap.(*snapshot).version = version
		sink := &memSink{}
		if err := snap.Persist(sink); err != nil {
			t.Fatal(err)
		}
		snap.Release()
		g := &node{tb: t, f: New(Config{}), now: n.now, index: n.index}
		if err := g.f.Restore(sink.reader()); err != nil {
			t.Fatalf("restore of version %d: %v", version, err)
		}
		r := g.applyRaw(inc)
		switch version {
		case snapVersion, snapVersionInline:
			// Deduplication holds across a snapshot install.
			if r.Index != first.Index || counter(t, g, "s") != "1" {
				t.Fatalf("retry after restore: %+v, counter %s", r, counter(t, g, "s"))
			}
		default:
			// A version 1 snapshot has no table: it restores, and the
			// request is new to it.
			if counter(t, g, "s") != "2" {
				t.Fatalf("version 1 snapshot: counter %s, want 2", counter(t, g, "s"))
			}
		}
	}
	// A proposer silent for ProposerIdle is forgotten at the next Expire.
	n.now = n.now.Add(ProposerIdle)
	n.apply(EncodeExpire(n.now))
	if len(n.f.st.Load().proposers) != 0 {
		t.Fatal("an idle proposer outlived Expire")
	}
}

func TestDecodeRequestRejects(t *testing.T) {
	inner := EncodeNoop()
	batch, err := EncodeBatch([][]byte{inner, inner})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"empty proposer":       EncodeRequest("", 1, 1, inner),
		"long proposer":        EncodeRequest(string(bytes.Repeat([]byte{'p'}, maxProposerLen+1)), 1, 1, inner),
		"floor above seq":      EncodeRequest("p", 1, 2, inner),
		"request in a request": EncodeRequest("p", 2, 1, EncodeRequest("p", 1, 1, inner)),
		"batch in a request":   EncodeRequest("p", 1, 1, batch),
		"truncated":            EncodeRequest("p", 1, 1, inner)[:6],
	} {
		if _, err := Decode(b); !errors.Is(err, session.ErrInvalid) {
			t.Errorf("%s: Decode = %v, want ErrInvalid", name, err)
		}
	}
	// Requests travel in batches.
	req := EncodeRequest("p", 1, 1, inner)
	if _, err := EncodeBatch([][]byte{req, req}); err != nil {
		t.Fatalf("batch of requests: %v", err)
	}
	c, err := Decode(req)
	if err != nil || c.Kind != KindRequest || c.Proposer != "p" || c.Seq != 1 || c.Inner.Kind != KindNoop {
		t.Fatalf("Decode = %+v, %v", c, err)
	}
	if got := mustEncode(&c); !bytes.Equal(got, req) {
		t.Fatalf("re-encoding differs: %x vs %x", got, req)
	}
}
