package session

import (
	"bytes"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
)

// checkAgainst fails unless v holds exactly m.
func checkAgainst(t *testing.T, v Values, m map[string][]byte) {
	t.Helper()
	if v.Len() != len(m) {
		t.Fatalf("Len: got %d, want %d (%v)", v.Len(), len(m), v)
	}
	size := 0
	for k, want := range m {
		size += len(k) + len(want)
		got, ok := v.Lookup(k)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("Lookup(%q): got %q, %v, want %q", k, got, ok, want)
		}
	}
	if v.Size() != size {
		t.Fatalf("Size: got %d, want %d", v.Size(), size)
	}
	keys := slices.Sorted(maps.Keys(m))
	var seen []string
	for k, val := range v.All() {
		seen = append(seen, k)
		if !bytes.Equal(val, m[k]) {
			t.Fatalf("All: %q has %q, want %q", k, val, m[k])
		}
	}
	if !slices.Equal(seen, keys) {
		t.Fatalf("All: keys %q, want %q", seen, keys)
	}
	enc, _ := v.AppendBinary(nil)
	back, err := ParseValues(enc)
	if err != nil || !back.Equal(v) {
		t.Fatalf("ParseValues(AppendBinary): %v, %v", back, err)
	}
}

func TestValuesLookupSharedPrefixes(t *testing.T) {
	// Keys that are prefixes of each other and differ only in their last
	// byte: the binary search must compare whole keys, lengths included.
	m := map[string][]byte{
		"a": []byte("1"), "ab": []byte("2"), "abc": []byte("3"), "abd": {}, "b": []byte("5"),
		"\x00persist": []byte("1"), "a\x00": []byte("7"), "ä": []byte("8"),
	}
	v := ValuesOf(m)
	checkAgainst(t, v, m)
	for _, absent := range []string{"", "aa", "abcd", "ac", "c", "\x00", "a\x00\x00"} {
		if got, ok := v.Lookup(absent); ok {
			t.Errorf("Lookup(%q): got %q, want absent", absent, got)
		}
	}
	// A value's capacity ends with it: appending must not reach the next pair.
	got := v.Get("ab")
	_ = append(got, 'X')
	if string(v.Get("abc")) != "3" {
		t.Fatalf("append to a value changed its neighbour: %v", v)
	}
}

func TestValuesEmpty(t *testing.T) {
	var zero Values
	checkAgainst(t, zero, map[string][]byte{})
	if !ValuesOf(nil).Equal(zero) {
		t.Fatal("ValuesOf(nil) is not the zero Values")
	}
	if enc, _ := zero.AppendBinary(nil); len(enc) != 0 {
		t.Fatalf("empty encoding: got %x, want none", enc)
	}
}

// TestDeltaApplyMatchesMap runs random deltas through Delta.Apply and
// through a plain map model, and compares the results.
func TestDeltaApplyMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 13))
	lim := Limits{MaxKeys: 64, MaxBytes: 1 << 20}
	now := time.Unix(1_700_000_000, 0)
	keys := []string{"a", "ab", "abc", "b", "ba", "c", "n", "zz", "\x00p"}
	for round := range 300 {
		model := map[string][]byte{}
		var rec *Record
		for step := range 20 {
			d := Delta{Clear: rng.IntN(10) == 0, IdleTimeout: time.Hour, Lifetime: time.Hour}
			want := maps.Clone(model)
			if d.Clear {
				clear(want)
			}
			// Enough ops now and then to pass the overlay's linear scan.
			nops := rng.IntN(4)
			if rng.IntN(8) == 0 {
				nops = 3 * overlayScan
			}
			for range nops {
				k := keys[rng.IntN(len(keys))]
				if rng.IntN(4) == 0 {
					k += strconv.Itoa(rng.IntN(40))
				}
				switch rng.IntN(3) {
				case 0:
					v := []byte(strconv.Itoa(rng.IntN(1000)))
					d.Ops = append(d.Ops, Op{Kind: OpSet, Key: k, Value: v})
					want[k] = v
				case 1:
					d.Ops = append(d.Ops, Op{Kind: OpDelete, Key: k})
					delete(want, k)
				case 2:
					d.Ops = append(d.Ops, Op{Kind: OpIncr, Key: "n", Delta: 1})
					n, _ := strconv.Atoi(string(want["n"]))
					want["n"] = []byte(strconv.Itoa(n + 1))
				}
			}
			next, _, err := d.Apply(rec, now, uint64(step+1), lim)
			if errors.Is(err, ErrTooLarge) {
				continue
			}
			if err != nil {
				t.Fatalf("round %d step %d: %v", round, step, err)
			}
			if rec != nil {
				checkAgainst(t, rec.Values, model) // prev untouched
			}
			checkAgainst(t, next.Values, want)
			rec, model = next, want
		}
	}
}

func TestDeltaApplyCopiesValues(t *testing.T) {
	buf := []byte("value")
	d := Delta{Ops: []Op{{Kind: OpSet, Key: "k", Value: buf}}, IdleTimeout: time.Hour, Lifetime: time.Hour}
	rec, _, err := d.Apply(nil, time.Unix(0, 0), 1, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXX")
	if got := string(rec.Values.Get("k")); got != "value" {
		t.Fatalf("record follows the op's buffer: got %q, want %q", got, "value")
	}
}

func TestParseValuesRejects(t *testing.T) {
	good, _ := ValuesOf(map[string][]byte{"a": []byte("1"), "b": []byte("2")}).AppendBinary(nil)
	swap := bytes.Clone(good)
	swap[len(swap)-4], swap[len(swap)-2] = 'b', 'a' // keys out of order
	dup := bytes.Clone(good)
	dup[len(dup)-2] = 'a' // same key twice
	for name, b := range map[string][]byte{
		"short header":    {1, 0},
		"zero count":      {0, 0, 0, 0},
		"count too large": {0xff, 0xff, 0, 0, 9, 0, 0, 0, 1, 'a'},
		"end past buffer": {1, 0, 0, 0, 99, 0, 0, 0, 1, 'a'},
		"empty key":       {1, 0, 0, 0, 10, 0, 0, 0, 0, 'v'},
		// The key length 1 written in two bytes: the key and value parse,
		// but the bytes are not the ones ValuesOf writes, and Equal
		// compares bytes.
		"long-form key length": {1, 0, 0, 0, 12, 0, 0, 0, 0x81, 0, 'a', 'v'},
		"trailing bytes":       append(bytes.Clone(good), 0),
		"out of order":         swap,
		"repeated key":         dup,
	} {
		if _, err := ParseValues(b); !errors.Is(err, ErrBadValues) {
			t.Errorf("%s: got %v, want ErrBadValues", name, err)
		}
	}
}

func FuzzParseValues(f *testing.F) {
	enc, _ := ValuesOf(map[string][]byte{"a": []byte("1"), "ab": {}, "user": []byte(`"alice"`)}).AppendBinary(nil)
	f.Add(enc)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseValues(b)
		if err != nil {
			return
		}
		m := maps.Collect(v.All())
		checkAgainst(t, v, m)
		if !ValuesOf(m).Equal(v) {
			t.Fatalf("not canonical: %x", b)
		}
	})
}
