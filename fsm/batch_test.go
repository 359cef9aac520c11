package fsm

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"

	"github.com/raftsession/raftsession/session"
)

func encodeAll(tb testing.TB, changes ...*session.Change) [][]byte {
	tb.Helper()
	out := make([][]byte, len(changes))
	for i, c := range changes {
		b, err := EncodeChange(c)
		if err != nil {
			tb.Fatalf("EncodeChange(%+v): %v", c, err)
		}
		out[i] = b
	}
	return out
}

func mustBatch(tb testing.TB, cmds [][]byte) []byte {
	tb.Helper()
	b, err := EncodeBatch(cmds)
	if err != nil {
		tb.Fatalf("EncodeBatch: %v", err)
	}
	return b
}

func incr(id, key string) *session.Change {
	return &session.Change{ID: id, Delta: session.Delta{Ops: []session.Op{{Kind: session.OpIncr, Key: key, Delta: 1}}}}
}

func TestBatchGivesEachChangeItsOwnResult(t *testing.T) {
	n := newNode(t)
	cas := &session.Change{ID: "a", Delta: session.Delta{Ops: []session.Op{{Kind: session.OpCAS, Key: "n", Old: []byte("9"), Value: []byte("x")}}}}
	r := n.apply(mustBatch(t, encodeAll(t,
		create("a", set("k", "v")),
		create("a"),    // exists: rejected, the others go on
		incr("b", "n"), // missing
		incr("a", "n"), // sees the create above
		cas,            // fails: leaves the counter alone
		incr("a", "n"), // sees the increment above
		&session.Change{ID: "a", RenameTo: "c"},
	)))
	mustOK(t, r)
	want := []struct {
		err    error
		values []int64
	}{{nil, []int64{0}}, {session.ErrExists, nil}, {session.ErrNotFound, nil}, {nil, []int64{1}},
		{session.ErrCASFailed, nil}, {nil, []int64{2}}, {nil, nil}}
	if len(r.Batch) != len(want) {
		t.Fatalf("got %d results, want %d", len(r.Batch), len(want))
	}
	for i, w := range want {
		got := r.Batch[i]
		if !errors.Is(got.Err, w.err) || (got.Err == nil) != (w.err == nil) {
			t.Errorf("change %d: got error %v, want %v", i, got.Err, w.err)
		}
		if !slices.Equal(got.Values, w.values) {
			t.Errorf("change %d: got values %v, want %v", i, got.Values, w.values)
		}
		if got.Index != r.Index {
			t.Errorf("change %d: got index %d, want the entry's %d", i, got.Index, r.Index)
		}
	}
	rec, ok := n.get("c")
	if !ok || string(rec.Values.Get("n")) != "2" || string(rec.Values.Get("k")) != "v" || rec.Version != r.Index {
		t.Fatalf("after the batch: got %+v, %v; want k=v n=2 at version %d", rec, ok, r.Index)
	}
	if _, ok := n.get("a"); ok {
		t.Fatal("the renamed session is still under its old ID")
	}
}

func TestEncodeBatchRejects(t *testing.T) {
	good := encodeAll(t, create("a"))[0]
	for _, tc := range []struct {
		name string
		cmds [][]byte
	}{
		{"empty", nil},
		{"malformed command", [][]byte{good, {wireVersion, byte(KindCreate)}}},
		{"unknown kind", [][]byte{{wireVersion, 200}}},
		{"nested batch", [][]byte{good, mustBatch(t, [][]byte{good})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := EncodeBatch(tc.cmds); !errors.Is(err, session.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestDecodeBatchRejects(t *testing.T) {
	good := encodeAll(t, create("a"))[0]
	head := func(n uint64) []byte { return binary.AppendUvarint([]byte{wireVersion, byte(KindBatch)}, n) }
	withCmds := func(n uint64, cmds ...[]byte) []byte {
		b := head(n)
		for _, c := range cmds {
			b = appendBytes(b, c)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"no count", head(0)[:2]},
		{"zero commands", head(0)},
		{"count beyond the data", withCmds(1000, good)},
		{"fewer commands than counted", withCmds(2, good)},
		{"truncated command", withCmds(1, good[:len(good)-1])},
		{"command length beyond the data", append(head(1), 0x7f, wireVersion, byte(KindNoop))},
		{"garbage command", withCmds(1, []byte{9, 9, 9})},
		{"nested batch", withCmds(1, withCmds(1, good))},
		{"trailing bytes", append(withCmds(1, good), 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.b); !errors.Is(err, session.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			// A malformed batch is rejected whole: nothing applies.
			n := newNode(t)
			if r := n.apply(tc.b); !errors.Is(r.Err, session.ErrInvalid) || r.Batch != nil || n.f.Len() != 0 {
				t.Fatalf("apply: got %+v with %d records, want ErrInvalid and nothing applied", r, n.f.Len())
			}
		})
	}
}

// batchedLog regroups a generated log: runs of well-formed commands become
// batch entries (occasionally of one command), anything else stays a
// single entry. Each batch entry takes the time of its last command, and
// entries are renumbered. It returns the new log and, per entry, the
// commands a batch entry carries (nil for a single entry).
func batchedLog(t *rapid.T, logs []*raft.Log) ([]*raft.Log, [][][]byte) {
	var out []*raft.Log
	var members [][][]byte
	for rest := logs; len(rest) > 0; {
		n := rapid.IntRange(1, min(len(rest), 6)).Draw(t, "group")
		group := rest[:n]
		rest = rest[n:]
		var cmds [][]byte
		for _, l := range group {
			if _, err := Decode(l.Data); err != nil {
				break
			}
			cmds = append(cmds, l.Data)
		}
		last := group[len(group)-1]
		e := &raft.Log{Index: uint64(len(out) + 1), Term: 1, Type: raft.LogCommand, AppendedAt: last.AppendedAt}
		if len(cmds) < len(group) || (n == 1 && rapid.Bool().Draw(t, "single")) {
			// Not all batchable, or a plain single: keep the entries as
			// they are, renumbered.
			for _, l := range group {
				c := *l
				c.Index = uint64(len(out) + 1)
				out, members = append(out, &c), append(members, nil)
			}
			continue
		}
		data, err := EncodeBatch(cmds)
		if err != nil {
			t.Fatalf("EncodeBatch: %v", err)
		}
		e.Data = data
		out, members = append(out, e), append(members, cmds)
	}
	return out, members
}

// TestPropertyBatchEqualsSingles applies a log with batch entries to one
// FSM, and to another FSM each batched command as its own entry at the
// batch's index and time; both must agree with the model on every
// command's result and reach bit-identical state.
func TestPropertyBatchEqualsSingles(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		logs, members := batchedLog(t, genLog(t))
		cfg := genConfig(t)
		batched, singles, m := New(cfg), New(cfg), newModel(cfg)
		for i, l := range logs {
			got := batched.Apply(l).(*Result)
			if members[i] == nil {
				want := m.apply(l.Data, l.Index, l.AppendedAt)
				if err := sameOutcome(got, want); err != nil {
					t.Fatalf("entry %d: %v", l.Index, err)
				}
				singles.Apply(l)
				continue
			}
			if got.Err != nil || len(got.Batch) != len(members[i]) {
				t.Fatalf("entry %d: batch of %d gave %+v", l.Index, len(members[i]), got)
			}
			for j, cmd := range members[i] {
				single := singles.Apply(&raft.Log{Index: l.Index, Term: 1, Type: raft.LogCommand, Data: cmd, AppendedAt: l.AppendedAt}).(*Result)
				want := m.apply(cmd, l.Index, l.AppendedAt)
				if err := sameOutcome(&got.Batch[j], want); err != nil {
					t.Fatalf("entry %d command %d, batched: %v", l.Index, j, err)
				}
				if err := sameOutcome(single, want); err != nil {
					t.Fatalf("entry %d command %d, single: %v", l.Index, j, err)
				}
			}
			compareReads(t, batched, m, l.AppendedAt)
		}
		requireEqualState(t, batched, singles)
		checkIndexes(t, batched)
	})
}
