package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/raftsession/raftsession/session"
)

// errNestedBatch rejects a batch inside a batch: one level is all a
// leader needs, and it keeps decoding free of recursion.
var errNestedBatch = errors.New("batch inside a batch")

// minBatchEntryBytes is the smallest encoding of one command in a batch
// (a length prefix, a version and a kind byte), so a forged count cannot
// make Decode allocate more than the buffer justifies.
const minBatchEntryBytes = 3

// EncodeBatch packs commands, each the complete output of one of the
// other Encode functions, into one KindBatch command, so a leader can
// commit several proposers' changes in one log entry. Applying it applies
// every command in order at the entry's index and time, each on its own:
// one command's rejection does not affect the others, and
// [Result.Batch] holds one Result per command. Each command keeps its own
// version byte, so per-command fields (such as a request ID) can be added
// later without changing the batch.
//
// It fails with session.ErrInvalid for an empty list, a malformed
// command or a batch among the commands.
func EncodeBatch(cmds [][]byte) ([]byte, error) {
	if len(cmds) == 0 {
		return nil, fmt.Errorf("fsm: empty batch: %w", session.ErrInvalid)
	}
	size := 2 + binary.MaxVarintLen32
	for i, c := range cmds {
		if _, err := decode(c, true); err != nil {
			return nil, fmt.Errorf("fsm: batch command %d: %w", i, malformed(err))
		}
		size += binary.MaxVarintLen32 + len(c)
	}
	b := make([]byte, 0, size)
	b = append(b, wireVersion, byte(KindBatch))
	return appendBatch(b, cmds), nil
}

// appendBatch appends a KindBatch body: the count, then each encoded
// command length-prefixed.
func appendBatch(b []byte, cmds [][]byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = appendBytes(b, c)
	}
	return b
}

// batch decodes a KindBatch body: a count, then that many
// length-prefixed commands, none of them a batch. nested refuses the batch
// itself: it is inside another one.
func (d *decoder) batch(nested bool) []Command {
	if nested {
		d.fail(errNestedBatch)
		return nil
	}
	n := d.uvarint()
	switch {
	case d.err != nil:
		return nil
	case n == 0:
		d.fail(errors.New("empty batch"))
		return nil
	case n > uint64(len(d.b)/minBatchEntryBytes):
		d.fail(errTruncated)
		return nil
	}
	cmds := make([]Command, n)
	for i := range cmds {
		raw := d.raw()
		if d.err != nil {
			return nil
		}
		c, err := decode(raw, true)
		if err != nil {
			d.fail(fmt.Errorf("batch command %d: %w", i, err))
			return nil
		}
		cmds[i] = c
	}
	return cmds
}

// applyBatch applies a batch's commands in order against the state each
// leaves, all at the entry's index and time, and gives each its own
// Result: exactly what applying them as separate entries would do, except
// that they share one index.
func (f *FSM) applyBatch(st *state, cmd *Command, now time.Time, res *Result) {
	res.Batch = make([]Result, len(cmd.Batch))
	for i := range cmd.Batch {
		r := &res.Batch[i]
		r.Index = res.Index
		f.applyCommand(st, &cmd.Batch[i], now, r)
	}
}
