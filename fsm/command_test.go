package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

func TestEncodeChangeShapes(t *testing.T) {
	tests := []struct {
		name   string
		change session.Change
		want   Command
	}{
		{"create", *create("id", set("k", "v")), Command{Kind: KindCreate, Key: session.KeyOf("id"),
			Delta: session.Delta{Ops: []session.Op{set("k", "v")}, IdleTimeout: time.Hour, Lifetime: 24 * time.Hour}}},
		{"touch", session.Change{ID: "id"}, Command{Kind: KindTouch, Key: session.KeyOf("id")}},
		{"destroy", session.Change{ID: "id", Destroy: true}, Command{Kind: KindDestroy, Key: session.KeyOf("id")}},
		{"rename only", session.Change{ID: "id", RenameTo: "new"}, Command{Kind: KindUpdate, Key: session.KeyOf("id"),
			Rename: true, RenameTo: session.KeyOf("new")}},
		{"update", session.Change{ID: "id", Delta: session.Delta{Clear: true, SetOwner: true, Owner: "u", Ops: []session.Op{
			{Kind: session.OpDelete, Key: "d"},
			{Kind: session.OpIncr, Key: "n", Delta: -7},
			{Kind: session.OpCAS, Key: "c", Old: nil, Value: []byte{}},
			{Kind: session.OpCAS, Key: "c", Old: []byte{}, Value: []byte("x")},
		}}}, Command{Kind: KindUpdate, Key: session.KeyOf("id"), Delta: session.Delta{Clear: true, SetOwner: true, Owner: "u", Ops: []session.Op{
			{Kind: session.OpDelete, Key: "d"},
			{Kind: session.OpIncr, Key: "n", Delta: -7},
			{Kind: session.OpCAS, Key: "c", Old: nil, Value: []byte{}},
			{Kind: session.OpCAS, Key: "c", Old: []byte{}, Value: []byte("x")},
		}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeChange(&tc.change)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v,\nwant %+v", got, tc.want)
			}
			for _, id := range []string{tc.change.ID, tc.change.RenameTo} {
				if id != "" && bytes.Contains(b, []byte(id)) {
					t.Errorf("encoding contains the raw ID %q", id)
				}
			}
		})
	}
}

func TestEncodeChangeValidates(t *testing.T) {
	for _, c := range []session.Change{
		{},
		{ID: "a", Create: true, Destroy: true},
		{ID: "a", Create: true},
		{ID: "a", RenameTo: "a"},
		{ID: "a", Delta: session.Delta{Ops: []session.Op{{Kind: 9, Key: "k"}}}},
	} {
		if _, err := EncodeChange(&c); !errors.Is(err, session.ErrInvalid) {
			t.Errorf("EncodeChange(%+v) = %v, want ErrInvalid", c, err)
		}
	}
}

func TestEncodeOtherCommands(t *testing.T) {
	at := time.Date(1969, 7, 20, 20, 17, 40, 123, time.UTC)
	tests := []struct {
		data []byte
		want Command
	}{
		{EncodeDestroyOwner("user:1", ""), Command{Kind: KindDestroyOwner, Owner: "user:1"}},
		{EncodeDestroyOwner("user:1", "keep"), Command{Kind: KindDestroyOwner, Owner: "user:1", HasExcept: true, Except: session.KeyOf("keep")}},
		{EncodeExpire(at), Command{Kind: KindExpire, Time: at}},
		{EncodeAddSigningKey("k", []byte{0, 1}), Command{Kind: KindAddSigningKey, KeyID: "k", Secret: []byte{0, 1}}},
		{EncodeRetireSigningKey("k"), Command{Kind: KindRetireSigningKey, KeyID: "k"}},
		{EncodeNoop(), Command{Kind: KindNoop}},
		{EncodeResealSigningKey("k", []byte("sealed")), Command{Kind: KindResealSigningKey, KeyID: "k", Secret: []byte("sealed")}},
	}
	for _, tc := range tests {
		t.Run(tc.want.Kind.String(), func(t *testing.T) {
			got, err := Decode(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if b := EncodeDestroyOwner("u", "keep"); bytes.Contains(b, []byte("keep")) {
		t.Error("DestroyOwner encoding contains the raw except ID")
	}
}

func TestDecodeRejects(t *testing.T) {
	valid, _ := EncodeChange(create("a", set("k", "v"), session.Op{Kind: session.OpCAS, Key: "c", Old: []byte("o"), Value: []byte("n")}))
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"one byte", []byte{wireVersion}},
		{"unknown version", append([]byte{2}, valid[1:]...)},
		{"unknown kind", []byte{wireVersion, byte(kindEnd)}},
		{"trailing bytes", append(bytes.Clone(valid), 0)},
		{"unknown flag", func() []byte { b := bytes.Clone(valid); b[2+32] |= 0x80; return b }()},
		{"create with rename", func() []byte { b := bytes.Clone(valid); b[2+32] |= flagRename; return b }()},
		{"huge op count", append(mustEncode(&Command{Kind: KindUpdate})[:2+32+1+2], 0xff, 0xff, 0xff, 0xff, 0x0f)},
		{"huge length", []byte{wireVersion, byte(KindRetireSigningKey), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"varint overflow", []byte{wireVersion, byte(KindExpire), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}},
		{"bad nanoseconds", binaryExpire(0, 1e9)},
		{"bad except flag", []byte{wireVersion, byte(KindDestroyOwner), 0, 2}},
		{"unknown op", func() []byte {
			b := mustEncode(&Command{Kind: KindUpdate, Delta: session.Delta{Ops: []session.Op{{Kind: session.OpDelete, Key: "k"}}}})
			b[len(b)-3] = 9
			return b
		}()},
	}
	for i := range len(valid) {
		tests = append(tests, struct {
			name string
			data []byte
		}{fmt.Sprintf("truncated to %d", i), valid[:i]})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Decode(tc.data)
			if !errors.Is(err, session.ErrInvalid) {
				t.Fatalf("Decode = %+v, %v; want ErrInvalid", c, err)
			}
		})
	}
}

func binaryExpire(sec int64, nsec uint64) []byte {
	b := []byte{wireVersion, byte(KindExpire)}
	b = appendVarintForTest(b, sec)
	for nsec >= 0x80 {
		b = append(b, byte(nsec)|0x80)
		nsec >>= 7
	}
	return append(b, byte(nsec))
}

func appendVarintForTest(b []byte, v int64) []byte {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	for u >= 0x80 {
		b = append(b, byte(u)|0x80)
		u >>= 7
	}
	return append(b, byte(u))
}

// TestStateDoesNotAliasLog: Decode leaves op values in the log buffer,
// and the state keeps none of it, because raft may reuse or keep log
// buffers while records outlive them.
func TestStateDoesNotAliasLog(t *testing.T) {
	n := newNode(t)
	b, _ := EncodeChange(create("a", set("k", "value")))
	u, _ := EncodeChange(&session.Change{ID: "a", Delta: session.Delta{SetOwner: true, Owner: "user:1",
		Ops: []session.Op{{Kind: session.OpCAS, Key: "k", Old: []byte("value"), Value: []byte("other")}}}})
	for _, data := range [][]byte{b, u} {
		mustOK(t, n.apply(data))
		clear(data)
	}
	rec, ok := n.get("a")
	if !ok || string(rec.Values.Get("k")) != "other" || rec.Owner != "user:1" {
		t.Fatalf("record changed with its log buffer: %v %+v", ok, rec)
	}
}

func TestResultRoundTrip(t *testing.T) {
	tests := []Result{
		{},
		{Index: 1 << 40, Values: []int64{-1, 0, 1 << 62}, Destroyed: 3},
		{Index: 7, Err: fmt.Errorf("fsm: update x: %w", session.ErrNotFound)},
		{Index: 7, Err: session.ErrExists},
		{Index: 7, Err: fmt.Errorf("wrapped: %w", session.ErrTooLarge)},
		{Index: 7, Err: session.ErrCASFailed},
		{Index: 7, Err: session.ErrNotInteger},
		{Index: 7, Err: fmt.Errorf("fsm: create x: %w: 3 sessions, limit 2", session.ErrQuota)},
		{Index: 7, Err: fmt.Errorf("fsm: malformed: %w", session.ErrInvalid)},
		{Index: 7, Err: errors.New("something else")},
	}
	for _, want := range tests {
		b, err := want.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Result
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary(%x): %v", b, err)
		}
		if got.Index != want.Index || got.Destroyed != want.Destroyed || !reflect.DeepEqual(got.Values, want.Values) {
			t.Errorf("got %+v, want %+v", got, want)
		}
		if (got.Err == nil) != (want.Err == nil) {
			t.Fatalf("got error %v, want %v", got.Err, want.Err)
		}
		if want.Err == nil {
			continue
		}
		if got.Err.Error() != want.Err.Error() {
			t.Errorf("got message %q, want %q", got.Err, want.Err)
		}
		for _, s := range errorCodes {
			if s != nil && errors.Is(got.Err, s) != errors.Is(want.Err, s) {
				t.Errorf("%v: errors.Is(%v) = %v after the round trip", want.Err, s, errors.Is(got.Err, s))
			}
		}
	}
}

func TestResultUnmarshalRejects(t *testing.T) {
	good, _ := (&Result{Index: 5, Err: session.ErrExists, Values: []int64{1, 2}}).MarshalBinary()
	bad := [][]byte{nil, {2}, append(bytes.Clone(good), 0), {resultVersion, 0, 0, 0, 0xff, 0xff, 0x03}}
	for i := 1; i < len(good); i++ {
		bad = append(bad, good[:i])
	}
	for _, b := range bad {
		r := Result{Index: 99}
		if err := r.UnmarshalBinary(b); err == nil {
			t.Errorf("UnmarshalBinary(%x) succeeded: %+v", b, r)
		} else if r.Index != 99 {
			t.Errorf("UnmarshalBinary(%x) changed the result on error", b)
		}
	}
	// A newer leader's unknown code still carries its message.
	var r Result
	if err := r.UnmarshalBinary([]byte{resultVersion, 1, 100, 2, 'h', 'i', 0, 0}); err != nil || r.Err == nil || r.Err.Error() != "hi" {
		t.Fatalf("unknown code: %v, %+v", err, r)
	}
}
