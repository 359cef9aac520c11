package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/raftsession/raftsession/session"
)

// errShortBuffer is returned by decoders of node-to-node messages that end
// early; the request or reply carrying it fails with a clear error.
var errShortBuffer = errors.New("cluster: truncated message")

// encoder appends fixed- and variable-length fields.
type encoder struct{ b []byte }

func (e *encoder) u8(v byte)    { e.b = append(e.b, v) }
func (e *encoder) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *encoder) i64(v int64)  { e.u64(uint64(v)) }
func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.i64(math.MinInt64)
		return
	}
	e.i64(t.UnixNano())
}
func (e *encoder) bytes(v []byte) {
	e.b = binary.AppendUvarint(e.b, uint64(len(v)))
	e.b = append(e.b, v...)
}
func (e *encoder) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

// decoder reads what encoder wrote; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errShortBuffer
	}
	d.b = nil
}
func (d *decoder) u8() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}
func (d *decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}
func (d *decoder) i64() int64 { return int64(d.u64()) }
func (d *decoder) time() time.Time {
	n := d.i64()
	if n == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
func (d *decoder) bytes() []byte {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.fail()
		return nil
	}
	v := d.b[k : k+int(n) : k+int(n)]
	d.b = d.b[k+int(n):]
	return v
}
func (d *decoder) str() string { return string(d.bytes()) }

func encodeInfos(e *encoder, infos []session.Info) {
	e.u64(uint64(len(infos)))
	for _, in := range infos {
		e.b = append(e.b, in.Key[:]...)
		e.str(in.Owner)
		e.time(in.Created)
		e.time(in.LastSeen)
		e.time(in.IdleDeadline)
		e.time(in.AbsoluteDeadline)
	}
}

func decodeInfos(d *decoder) ([]session.Info, error) {
	n := d.u64()
	if d.err != nil || n > uint64(len(d.b)/32) {
		return nil, fmt.Errorf("decode sessions: %w", errShortBuffer)
	}
	infos := make([]session.Info, 0, n)
	for range n {
		var in session.Info
		if len(d.b) < len(in.Key) {
			return nil, fmt.Errorf("decode sessions: %w", errShortBuffer)
		}
		copy(in.Key[:], d.b)
		d.b = d.b[len(in.Key):]
		in.Owner, in.Created, in.LastSeen, in.IdleDeadline, in.AbsoluteDeadline = d.str(), d.time(), d.time(), d.time(), d.time()
		infos = append(infos, in)
	}
	if d.err != nil {
		return nil, fmt.Errorf("decode sessions: %w", d.err)
	}
	return infos, nil
}

func binaryAppendU64(b []byte, v uint64) []byte {
	e := encoder{b: b}
	e.u64(v)
	return e.b
}
