package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/raftsession/raftsession/session"
)

// The record encoding, shared by snapshots and by the node-to-node
// messages that carry a record (integers varint/uvarint, the owner
// uvarint-length-prefixed, times as varint Unix seconds + uvarint
// nanoseconds in UTC):
//
//	owner created lastSeen idleTimeout idleDeadline absoluteDeadline
//	version values
//
// values is uvarint-length-prefixed session.Values encoding, which is the
// record's in-memory form: decoding copies it in one piece.

// ErrCorruptRecord is wrapped by [DecodeRecord]'s error for input that is
// not a record encoding.
var ErrCorruptRecord = errors.New("fsm: corrupt record")

// AppendRecord appends the encoding of r to b and returns the result.
func AppendRecord(b []byte, r *session.Record) []byte {
	b = appendRecordHeader(b, r)
	b = binary.AppendUvarint(b, uint64(r.Values.EncodedLen()))
	b, _ = r.Values.AppendBinary(b)
	return b
}

// appendRecordHeader appends what every record encoding, old snapshot
// versions included, writes before the values: owner, times, version.
func appendRecordHeader(b []byte, r *session.Record) []byte {
	b = appendString(b, r.Owner)
	b = appendTime(b, r.Created)
	b = appendTime(b, r.LastSeen)
	b = binary.AppendVarint(b, int64(r.IdleTimeout))
	b = appendTime(b, r.IdleDeadline)
	b = appendTime(b, r.AbsoluteDeadline)
	return binary.AppendUvarint(b, r.Version)
}

// DecodeRecord decodes the record that all of b encodes (see
// [AppendRecord]). The record does not alias b: its values are copied in
// one allocation. It never panics, allocates no more than len(b) plus a
// record, and wraps [ErrCorruptRecord] on malformed input.
func DecodeRecord(b []byte) (*session.Record, error) {
	d := decoder{b: b}
	r := &session.Record{Owner: d.string()}
	r.Created = d.time()
	r.LastSeen = d.time()
	r.IdleTimeout = time.Duration(d.varint())
	r.IdleDeadline = d.time()
	r.AbsoluteDeadline = d.time()
	r.Version = d.uvarint()
	vals := d.raw()
	if d.err == nil && len(d.b) != 0 {
		d.err = errTrailing
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptRecord, d.err)
	}
	var err error
	if r.Values, err = session.ParseValues(vals); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptRecord, err)
	}
	return r, nil
}

func appendTime(b []byte, t time.Time) []byte {
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// time reads what appendTime wrote.
func (d *decoder) time() time.Time {
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.fail(errors.New("bad nanoseconds"))
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}
