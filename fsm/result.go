package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/raftsession/raftsession/session"
)

// Result is what applying one command log entry returns (raft's
// ApplyFuture.Response()).
type Result struct {
	// Index is the log index the entry was applied at; a successful
	// change's record has this Version.
	Index uint64
	// Err is nil or wraps one of the session sentinels ErrNotFound,
	// ErrExists, ErrTooLarge, ErrQuota, ErrCASFailed, ErrNotInteger or
	// ErrInvalid. A rejected command changed nothing, except that a quota
	// check may first have removed expired records (see
	// Config.MaxSessions), which no reader sees anyway.
	Err error
	// Values are the per-op results of an Update or Create, as in
	// session.Result.Values.
	Values []int64
	// Destroyed counts the live sessions a Destroy, DestroyOwner or Expire
	// removed. Expire counts every record it removed (all were expired).
	Destroyed int
	// Batch holds one Result per command of a KindBatch entry, in order,
	// each with its own Err; the batch's own Err is set only when the
	// entry is malformed, and then Batch is nil. MarshalBinary does not
	// carry Batch: the leader hands each proposer its own Result.
	Batch []Result
}

// errorCodes give rejections a stable one-byte form on the wire, so the
// proposer that receives a forwarded Result matches it with errors.Is.
// Codes are never reused.
var errorCodes = []error{
	1: session.ErrNotFound,
	2: session.ErrExists,
	3: session.ErrTooLarge,
	4: session.ErrCASFailed,
	5: session.ErrNotInteger,
	6: session.ErrInvalid,
	7: session.ErrQuota,
}

// codeOther marks an error that wraps none of the known sentinels; its
// message still travels.
const codeOther = 255

const resultVersion = 1

// maxResultMessage bounds the error text carried in a Result so a huge
// wrapped message cannot bloat every forwarded reply.
const maxResultMessage = 1024

func errorCode(err error) byte {
	for code, s := range errorCodes {
		if s != nil && errors.Is(err, s) {
			return byte(code)
		}
	}
	return codeOther
}

// remoteError is a rejection decoded from the wire: its text is the
// original message, and it unwraps to the sentinel its code names.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// MarshalBinary encodes r as: version, uvarint index, error code (0 = no
// error) followed by the length-prefixed message when non-zero, uvarint
// destroyed, uvarint count and varint values.
func (r *Result) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 16+len(r.Values)*binary.MaxVarintLen64)
	b = append(b, resultVersion)
	b = binary.AppendUvarint(b, r.Index)
	if r.Err == nil {
		b = append(b, 0)
	} else {
		msg := r.Err.Error()
		if len(msg) > maxResultMessage {
			msg = msg[:maxResultMessage]
		}
		b = append(b, errorCode(r.Err))
		b = appendString(b, msg)
	}
	if r.Destroyed < 0 {
		return nil, fmt.Errorf("fsm: result: negative destroyed count %d", r.Destroyed)
	}
	b = binary.AppendUvarint(b, uint64(r.Destroyed))
	b = binary.AppendUvarint(b, uint64(len(r.Values)))
	for _, v := range r.Values {
		b = binary.AppendVarint(b, v)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary produced. An error code this
// version does not know decodes to an error with the original message that
// wraps no sentinel, so a newer leader's answer is still reported.
func (r *Result) UnmarshalBinary(b []byte) error {
	if len(b) < 1 {
		return errors.New("fsm: result: empty")
	}
	if b[0] != resultVersion {
		return fmt.Errorf("fsm: result: unknown version %d", b[0])
	}
	d := decoder{b: b[1:]}
	var out Result
	out.Index = d.uvarint()
	if code := d.byte(); code != 0 && d.err == nil {
		e := &remoteError{msg: d.string()}
		if int(code) < len(errorCodes) {
			e.sentinel = errorCodes[code]
		}
		out.Err = e
	}
	destroyed := d.uvarint()
	if destroyed > uint64(maxInt) {
		d.fail(errors.New("destroyed count overflows int"))
	}
	out.Destroyed = int(destroyed)
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail(errTruncated)
	}
	if d.err == nil && n > 0 {
		out.Values = make([]int64, n)
		for i := range out.Values {
			out.Values[i] = d.varint()
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errTrailing
	}
	if d.err != nil {
		return fmt.Errorf("fsm: result: %w", d.err)
	}
	*r = out
	return nil
}

const maxInt = int(^uint(0) >> 1)
