package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"strings"
)

// Values is what a session holds: keys and their encoded values (see
// [Codec]). It is immutable and compact: every key and value sits in one
// allocation, sorted by key, so a stored session costs one small header
// beyond its bytes, where a map costs hundreds. Lookups are a binary
// search. The zero Values is empty and ready to use.
//
// The in-memory form is also the encoding that snapshots and node-to-node
// messages carry ([Values.AppendBinary], [ParseValues]), so restoring a
// session copies one buffer instead of rebuilding a structure. That
// encoding never changes meaning once released:
//
//	count uint32 LE | end uint32 LE × count | pair × count
//	pair: uvarint len(key) | key | value
//
// end[i] is the offset, from the start of the encoding, just past pair i.
// Pairs are sorted by key, keys are unique and non-empty, and an empty
// Values encodes as no bytes at all, so equal contents have one encoding.
type Values struct {
	b []byte
}

// ErrBadValues is wrapped by [ParseValues]'s error for input that is not a
// canonical Values encoding.
var ErrBadValues = errors.New("session: malformed values encoding")

// ValuesOf returns Values holding a copy of m's keys and values. Empty
// keys are dropped: no store holds one. It panics if the encoding would
// exceed 4 GiB, far beyond any session a store accepts.
func ValuesOf(m map[string][]byte) Values {
	edits := make([]edit, 0, len(m))
	for k, v := range m {
		if k != "" {
			edits = append(edits, edit{key: k, val: v})
		}
	}
	slices.SortFunc(edits, func(a, b edit) int { return strings.Compare(a.key, b.key) })
	total := 4
	for _, e := range edits {
		total += pairLen(e.key, e.val)
	}
	if total > maxValuesLen {
		panic("session: ValuesOf: the encoding would exceed 4 GiB")
	}
	return merge(Values{}, edits, len(edits), total)
}

// ParseValues checks that b is a canonical Values encoding and returns
// Values holding a copy of it (one allocation). Errors wrap [ErrBadValues].
func ParseValues(b []byte) (Values, error) {
	if err := checkValues(b); err != nil {
		return Values{}, fmt.Errorf("%w: %v", ErrBadValues, err)
	}
	if len(b) == 0 {
		return Values{}, nil
	}
	return Values{b: append(make([]byte, 0, len(b)), b...)}, nil
}

func checkValues(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if len(b) < 4 {
		return errors.New("short header")
	}
	n := uint64(binary.LittleEndian.Uint32(b))
	// Each pair takes at least its end offset, a length byte and a key byte.
	if n == 0 || n > uint64(len(b)-4)/6 {
		return fmt.Errorf("count %d does not fit %d bytes", n, len(b))
	}
	start := 4 + 4*int(n)
	var prev []byte
	for i := range int(n) {
		end := int(binary.LittleEndian.Uint32(b[4+4*i:]))
		if end < start || end > len(b) {
			return fmt.Errorf("pair %d ends at %d, outside %d..%d", i, end, start, len(b))
		}
		klen, w := binary.Uvarint(b[start:end])
		// A shortest-form uvarint never ends in a zero byte (but for 0,
		// which is refused anyway): the long forms Uvarint also takes
		// would make two encodings of the same pairs.
		if w <= 0 || klen == 0 || klen > uint64(end-start-w) || b[start+w-1] == 0 {
			return fmt.Errorf("pair %d has a bad key length", i)
		}
		key := b[start+w : start+w+int(klen)]
		if i > 0 && string(prev) >= string(key) {
			return fmt.Errorf("pair %d is out of order or repeated", i)
		}
		prev, start = key, end
	}
	if start != len(b) {
		return fmt.Errorf("%d bytes after the last pair", len(b)-start)
	}
	return nil
}

// Len returns the number of keys.
func (v Values) Len() int {
	if len(v.b) == 0 {
		return 0
	}
	return int(binary.LittleEndian.Uint32(v.b))
}

// pair returns the key and value of pair i. The value's capacity ends with
// it, so a caller's append cannot overwrite the next pair.
func (v Values) pair(i int) (key, val []byte) {
	start := 4 + 4*v.Len()
	if i > 0 {
		start = int(binary.LittleEndian.Uint32(v.b[4*i:]))
	}
	end := int(binary.LittleEndian.Uint32(v.b[4+4*i:]))
	klen, w := binary.Uvarint(v.b[start:end])
	k := start + w + int(klen)
	return v.b[start+w : k : k], v.b[k:end:end]
}

// Lookup returns the value stored under key and whether there is one. The
// value is shared: never modify it.
func (v Values) Lookup(key string) ([]byte, bool) {
	lo, hi := 0, v.Len()
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		k, val := v.pair(m)
		switch {
		case string(k) == key:
			return val, true
		case string(k) < key:
			lo = m + 1
		default:
			hi = m
		}
	}
	return nil, false
}

// Get returns the value stored under key, or nil when there is none. The
// value is shared: never modify it.
func (v Values) Get(key string) []byte {
	val, _ := v.Lookup(key)
	return val
}

// All yields every key and its value in key order. Each key is a new
// string; the values are shared: never modify them.
func (v Values) All() iter.Seq2[string, []byte] {
	return func(yield func(string, []byte) bool) {
		for i := range v.Len() {
			k, val := v.pair(i)
			if !yield(string(k), val) {
				return
			}
		}
	}
}

// Size returns the sum of the lengths of the keys and values: what
// [Limits.MaxBytes] bounds.
func (v Values) Size() int {
	n := v.Len()
	if n == 0 {
		return 0
	}
	size := len(v.b) - 4 - 4*n
	start := 4 + 4*n
	for i := range n {
		_, w := binary.Uvarint(v.b[start:])
		size -= w
		start = int(binary.LittleEndian.Uint32(v.b[4+4*i:]))
	}
	return size
}

// Equal reports whether v and w hold the same keys and values.
func (v Values) Equal(w Values) bool { return string(v.b) == string(w.b) }

// EncodedLen returns the length of v's encoding (see [Values]).
func (v Values) EncodedLen() int { return len(v.b) }

// AppendBinary appends the encoding of v to b (see [Values]). It never
// fails; the error is there to implement encoding.BinaryAppender.
func (v Values) AppendBinary(b []byte) ([]byte, error) { return append(b, v.b...), nil }

// String lists the keys and values, for tests and debugging.
func (v Values) String() string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i := range v.Len() {
		k, val := v.pair(i)
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%q:%q", k, val)
	}
	sb.WriteByte('}')
	return sb.String()
}

// edit is a key's new value, or its removal, on top of some Values.
type edit struct {
	key string
	val []byte
	del bool
}

// pairLen is how many bytes a pair adds to an encoding, its end offset
// included.
func pairLen(key string, val []byte) int {
	return 4 + uvarintLen(uint64(len(key))) + len(key) + len(val)
}

// maxValuesLen bounds an encoding: its offsets are 32 bits.
const maxValuesLen = math.MaxUint32

// merge returns base with edits applied. edits are sorted by key, each key
// at most once; n and total are the resulting key count and encoded
// length, which the caller has checked against maxValuesLen. The result
// is built in one exact allocation, copying every value once.
func merge(base Values, edits []edit, n, total int) Values {
	if n == 0 {
		return Values{}
	}
	b := make([]byte, 4+4*n, total)
	binary.LittleEndian.PutUint32(b, uint32(n))
	put := func(i int, key []byte, skey string, val []byte) {
		if key != nil {
			b = binary.AppendUvarint(b, uint64(len(key)))
			b = append(b, key...)
		} else {
			b = binary.AppendUvarint(b, uint64(len(skey)))
			b = append(b, skey...)
		}
		b = append(b, val...)
		binary.LittleEndian.PutUint32(b[4+4*i:], uint32(len(b)))
	}
	out, i, j, nb := 0, 0, 0, base.Len()
	for i < nb || j < len(edits) {
		var bk, bv []byte
		if i < nb {
			bk, bv = base.pair(i)
		}
		if j == len(edits) || i < nb && string(bk) < edits[j].key {
			put(out, bk, "", bv)
			out, i = out+1, i+1
			continue
		}
		e := &edits[j]
		if i < nb && string(bk) == e.key {
			i++
		}
		j++
		if !e.del {
			put(out, nil, e.key, e.val)
			out++
		}
	}
	return Values{b: b}
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
