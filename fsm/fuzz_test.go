package fsm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/session"
)

// seedCommands are valid commands of every kind; the corpus files in
// testdata/fuzz hold the same bytes (see TestWriteFuzzCorpus).
func seedCommands() [][]byte {
	var out [][]byte
	for _, c := range []*session.Change{
		create("a", set("k", "v"), session.Op{Kind: session.OpIncr, Key: "n", Delta: -3}),
		{ID: "a", Delta: session.Delta{Clear: true, SetOwner: true, Owner: "user:1", Ops: []session.Op{
			{Kind: session.OpCAS, Key: "c", Old: []byte("o"), Value: []byte("n")},
			{Kind: session.OpCAS, Key: "d", Value: []byte{}},
			{Kind: session.OpDelete, Key: "k"},
		}}},
		{ID: "a", RenameTo: "b", Delta: session.Delta{IdleTimeout: time.Minute, Lifetime: time.Hour}},
		{ID: "a"},
		{ID: "a", Destroy: true},
	} {
		b, err := EncodeChange(c)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	out = append(out,
		EncodeDestroyOwner("user:1", "a"),
		EncodeDestroyOwner("user:1", ""),
		EncodeExpire(t0),
		EncodeAddSigningKey("k1", testSecret("secret")),
		EncodeRetireSigningKey("k1"),
		EncodeNoop(),
	)
	batch, err := EncodeBatch([][]byte{out[0], out[1], out[4], EncodeNoop()})
	if err != nil {
		panic(err)
	}
	return append(out, batch)
}

func seedSnapshots(tb testing.TB) [][]byte {
	return [][]byte{persist(tb, New(Config{})), persist(tb, populated(tb, 4).f)}
}

func FuzzDecode(f *testing.F) {
	for _, b := range seedCommands() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		// Whatever it is, applying it must not panic.
		fsm := New(Config{})
		fsm.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data, AppendedAt: t0})
		if err != nil {
			return
		}
		again, err := Decode(c.appendTo(nil))
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("round trip changed the command:\n%+v\n%+v", c, again)
		}
	})
}

func FuzzRestore(f *testing.F) {
	for _, b := range seedSnapshots(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a := New(Config{})
		if err := a.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			return
		}
		b := New(Config{})
		if err := b.Restore(io.NopCloser(bytes.NewReader(persist(t, a)))); err != nil {
			t.Fatalf("a restored snapshot does not survive a second round: %v", err)
		}
		requireEqualState(t, a, b)
	})
}

func FuzzResultUnmarshal(f *testing.F) {
	for _, r := range []Result{{Index: 3, Values: []int64{1, -1}, Destroyed: 2}, {Index: 4, Err: session.ErrCASFailed}} {
		b, _ := r.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Result
		if err := r.UnmarshalBinary(data); err != nil {
			return
		}
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var again Result
		if err := again.UnmarshalBinary(b); err != nil {
			t.Fatalf("re-marshalled result does not decode: %v", err)
		}
		if again.Index != r.Index || again.Destroyed != r.Destroyed || !reflect.DeepEqual(again.Values, r.Values) ||
			(again.Err == nil) != (r.Err == nil) {
			t.Fatalf("round trip changed the result: %+v vs %+v", r, again)
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz from the seeds when
// FSM_WRITE_CORPUS=1, for example after a wire format change.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("FSM_WRITE_CORPUS") != "1" {
		t.Skip("set FSM_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	write := func(target string, seeds [][]byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, b := range seeds {
			body := "go test fuzz v1\n[]byte(" + strconv.QuoteToASCII(string(b)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("FuzzDecode", seedCommands())
	write("FuzzRestore", seedSnapshots(t))
	var results [][]byte
	for _, r := range []Result{{Index: 3, Values: []int64{1, -1}, Destroyed: 2}, {Index: 4, Err: session.ErrCASFailed}, {Index: 5, Err: session.ErrNotFound}} {
		b, _ := r.MarshalBinary()
		results = append(results, b)
	}
	write("FuzzResultUnmarshal", results)
}
