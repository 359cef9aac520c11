package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/raftsession/raftsession/session"
)

// wireVersion is the first byte of every command. A replica that meets a
// version it does not know rejects the entry with session.ErrInvalid
// instead of guessing, so a mixed-version cluster fails loudly, not
// divergently.
const wireVersion = 1

// Kind is the type of a [Command]; its value is the second byte on the wire
// and never changes meaning once released.
type Kind uint8

// Command kinds. New kinds get new numbers; old numbers are never reused.
const (
	// KindCreate creates a record; rejected with ErrExists if a live one
	// has the key.
	KindCreate Kind = iota + 1
	// KindUpdate applies a delta to a live record, optionally moving it to
	// a new key first (regenerate); rejected with ErrNotFound if missing or
	// expired, ErrExists if the rename target is live.
	KindUpdate
	// KindTouch extends the idle deadline of a live record.
	KindTouch
	// KindDestroy removes a record; idempotent.
	KindDestroy
	// KindDestroyOwner removes every record of an owner, optionally but one.
	KindDestroyOwner
	// KindExpire removes every record whose deadline is not after Time.
	KindExpire
	// KindAddSigningKey adds a cookie-signing key as the new primary.
	KindAddSigningKey
	// KindRetireSigningKey removes a non-primary signing key.
	KindRetireSigningKey
	// KindNoop changes nothing but the applied index. raft never hands its
	// own LogNoop and LogBarrier entries to the FSM, so a new leader that
	// wants every replica's AppliedIndex to reach its commit index proposes
	// one of these.
	KindNoop
	// KindBatch carries several complete commands in one log entry (see
	// [EncodeBatch]); each is applied in order, independently, as if it
	// had its own entry at the batch's index and time.
	KindBatch
	// KindResealSigningKey replaces the stored secret of a signing key,
	// keeping its place and age in the keyring: the cluster re-encrypts
	// the keyring under a new cluster key with it.
	KindResealSigningKey
	// KindRequest carries one command with its proposer's request ID (see
	// [EncodeRequest]); the state machine applies it at most once.
	KindRequest
	kindEnd
)

var kindNames = [...]string{
	KindCreate: "create", KindUpdate: "update", KindTouch: "touch", KindDestroy: "destroy",
	KindDestroyOwner: "destroy-owner", KindExpire: "expire", KindAddSigningKey: "add-signing-key",
	KindRetireSigningKey: "retire-signing-key", KindNoop: "noop", KindBatch: "batch",
	KindResealSigningKey: "reseal-signing-key", KindRequest: "request",
}

func (k Kind) String() string {
	if k > 0 && k < kindEnd {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Command is a decoded log entry. Which fields are meaningful depends on
// Kind; the others are zero.
type Command struct {
	Kind Kind
	// Key is the record a Create, Update, Touch or Destroy acts on.
	Key session.Key
	// Rename moves an Update's record to RenameTo before Delta applies.
	Rename   bool
	RenameTo session.Key
	// Delta is the content change of a Create or Update.
	Delta session.Delta
	// Owner is whose sessions a DestroyOwner removes; HasExcept keeps the
	// record under Except.
	Owner     string
	HasExcept bool
	Except    session.Key
	// Time is an Expire's cut-off.
	Time time.Time
	// KeyID and Secret describe a signing key (Secret only when adding).
	KeyID  string
	Secret []byte
	// Batch holds a KindBatch's commands, in order; none is a batch.
	Batch []Command
	// Proposer, Seq and Floor are a KindRequest's request ID and its
	// proposer's acknowledgement floor; Inner is the command it carries
	// (neither a batch nor a request).
	Proposer   string
	Seq, Floor uint64
	Inner      *Command
}

// Flag bits of Create and Update. Unknown bits are rejected so that a
// future flag cannot be silently ignored by an old replica.
const (
	flagClear = 1 << iota
	flagSetOwner
	flagRename
	flagsKnown = flagClear | flagSetOwner | flagRename
)

// The smallest encoding of one op (kind, empty key, empty value) bounds how
// many ops a buffer can hold, so a forged count cannot make Decode allocate
// more than the buffer justifies.
const minOpBytes = 2

// EncodeChange validates c and encodes it as a command: Create, Destroy,
// Touch (an Update with an empty delta and no rename) or Update. IDs are
// hashed with session.KeyOf; the encoding never contains a raw ID. Size
// limits are checked when the command is applied, not here.
func EncodeChange(c *session.Change) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cmd := Command{Key: session.KeyOf(c.ID)}
	switch {
	case c.Destroy:
		cmd.Kind = KindDestroy
	case c.Create:
		cmd.Kind = KindCreate
		cmd.Delta = c.Delta
	case c.RenameTo == "" && c.Delta.Empty():
		cmd.Kind = KindTouch
	default:
		cmd.Kind = KindUpdate
		cmd.Delta = c.Delta
		if c.RenameTo != "" {
			cmd.Rename = true
			cmd.RenameTo = session.KeyOf(c.RenameTo)
		}
	}
	return cmd.appendTo(make([]byte, 0, cmd.encodedSizeHint())), nil
}

// EncodeDestroyOwner encodes the removal of every session of owner except
// the one with the raw ID exceptID ("" keeps none).
func EncodeDestroyOwner(owner string, exceptID string) []byte {
	cmd := Command{Kind: KindDestroyOwner, Owner: owner}
	if exceptID != "" {
		cmd.HasExcept = true
		cmd.Except = session.KeyOf(exceptID)
	}
	return cmd.appendTo(nil)
}

// EncodeExpire encodes the removal of every record whose deadline (the
// earlier of its idle and absolute deadlines) is not after now.
func EncodeExpire(now time.Time) []byte {
	return (&Command{Kind: KindExpire, Time: now}).appendTo(nil)
}

// EncodeAddSigningKey encodes adding a cookie-signing key that becomes the
// primary (first) key of the replicated keyring. Applying it fails with
// ErrInvalid for an empty id or a secret shorter than [MinSigningKeyLen]
// bytes, and ErrExists for a known id.
func EncodeAddSigningKey(id string, secret []byte) []byte {
	return (&Command{Kind: KindAddSigningKey, KeyID: id, Secret: secret}).appendTo(nil)
}

// EncodeResealSigningKey encodes replacing the stored secret of signing
// key id (the same secret, encrypted anew). Applying it fails with
// session.ErrNotFound when no key has the id.
func EncodeResealSigningKey(id string, secret []byte) []byte {
	return (&Command{Kind: KindResealSigningKey, KeyID: id, Secret: secret}).appendTo(nil)
}

// EncodeRetireSigningKey encodes removing a signing key. Applying it fails
// with ErrNotFound for an unknown id and ErrInvalid for the primary key,
// which must be replaced (by adding a new one) before it can be retired.
func EncodeRetireSigningKey(id string) []byte {
	return (&Command{Kind: KindRetireSigningKey, KeyID: id}).appendTo(nil)
}

// EncodeNoop encodes a command that only advances the applied index (see
// [KindNoop]).
func EncodeNoop() []byte { return (&Command{Kind: KindNoop}).appendTo(nil) }

func (c *Command) encodedSizeHint() int {
	n := 2 + 2*len(c.Key) + 1 + 2*binary.MaxVarintLen64 + binary.MaxVarintLen32 + len(c.Delta.Owner)
	for i := range c.Delta.Ops {
		op := &c.Delta.Ops[i]
		n += 1 + 3*binary.MaxVarintLen32 + len(op.Key) + len(op.Value) + len(op.Old)
	}
	return n
}

// appendTo appends the wire form of c. Layout (all integers varint or
// uvarint, strings and byte slices uvarint-length-prefixed, keys 32 raw
// bytes):
//
//	version kind body
//	create/update: key flags [renameTo] idleNanos lifetimeNanos [owner] nops op*
//	op:            opKind key  set: value | delete: - | incr: delta | cas: hasOld [old] value
//	touch/destroy: key
//	destroy-owner: owner hasExcept [except]
//	expire:        unixSeconds nanos
//	add-key/reseal-key: id secret
//	retire-key:    id
//	noop:          -
//	batch:         n (length-prefixed command)*n
//	request:       proposer seq floor (length-prefixed command)
func (c *Command) appendTo(b []byte) []byte {
	b = append(b, wireVersion, byte(c.Kind))
	switch c.Kind {
	case KindCreate, KindUpdate:
		b = append(b, c.Key[:]...)
		var flags byte
		if c.Delta.Clear {
			flags |= flagClear
		}
		if c.Delta.SetOwner {
			flags |= flagSetOwner
		}
		if c.Rename {
			flags |= flagRename
		}
		b = append(b, flags)
		if c.Rename {
			b = append(b, c.RenameTo[:]...)
		}
		b = binary.AppendVarint(b, int64(c.Delta.IdleTimeout))
		b = binary.AppendVarint(b, int64(c.Delta.Lifetime))
		if c.Delta.SetOwner {
			b = appendString(b, c.Delta.Owner)
		}
		b = binary.AppendUvarint(b, uint64(len(c.Delta.Ops)))
		for i := range c.Delta.Ops {
			op := &c.Delta.Ops[i]
			b = append(b, byte(op.Kind))
			b = appendString(b, op.Key)
			switch op.Kind {
			case session.OpSet:
				b = appendBytes(b, op.Value)
			case session.OpIncr:
				b = binary.AppendVarint(b, op.Delta)
			case session.OpCAS:
				if op.Old == nil {
					b = append(b, 0)
				} else {
					b = append(b, 1)
					b = appendBytes(b, op.Old)
				}
				b = appendBytes(b, op.Value)
			}
		}
	case KindTouch, KindDestroy:
		b = append(b, c.Key[:]...)
	case KindDestroyOwner:
		b = appendString(b, c.Owner)
		if c.HasExcept {
			b = append(b, 1)
			b = append(b, c.Except[:]...)
		} else {
			b = append(b, 0)
		}
	case KindExpire:
		b = appendTime(b, c.Time)
	case KindAddSigningKey, KindResealSigningKey:
		b = appendString(b, c.KeyID)
		b = appendBytes(b, c.Secret)
	case KindRetireSigningKey:
		b = appendString(b, c.KeyID)
	case KindBatch:
		cmds := make([][]byte, len(c.Batch))
		for i := range c.Batch {
			cmds[i] = c.Batch[i].appendTo(nil)
		}
		b = appendBatch(b, cmds)
	case KindRequest:
		b = appendRequest(b, c.Proposer, c.Seq, c.Floor, c.Inner.appendTo(nil))
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// errTruncated and friends are the causes of a malformed command; Decode
// wraps them together with session.ErrInvalid so proposers see the usual
// sentinel.
var (
	errTruncated = errors.New("truncated")
	errTrailing  = errors.New("trailing bytes")
	errVarint    = errors.New("bad varint")
)

func malformed(what error) error {
	return fmt.Errorf("fsm: malformed command: %w: %w", what, session.ErrInvalid)
}

// Decode parses a command produced by the Encode functions. Anything
// malformed returns an error wrapping session.ErrInvalid; Decode never
// panics, and every allocation is bounded by len(b). The values of ops
// (session.Op.Value and Old) alias b: session.Delta.Apply copies what it
// keeps into the record's one allocation, so a value is copied out of the
// log entry exactly once. Everything else is copied.
func Decode(b []byte) (Command, error) {
	c, err := decode(b, false)
	if err != nil {
		return Command{}, malformed(err)
	}
	return c, nil
}

// decode is Decode returning the bare cause; inBatch refuses a batch, so
// batches never nest.
func decode(b []byte, inBatch bool) (Command, error) {
	d := decoder{b: b}
	var c Command
	if len(b) < 2 {
		return c, errTruncated
	}
	if b[0] != wireVersion {
		return c, fmt.Errorf("unknown version %d", b[0])
	}
	c.Kind = Kind(b[1])
	d.b = b[2:]
	switch c.Kind {
	case KindCreate, KindUpdate:
		d.key(&c.Key)
		flags := d.byte()
		if flags&^flagsKnown != 0 {
			return Command{}, fmt.Errorf("unknown flags %#x", flags)
		}
		if flags&flagRename != 0 {
			if c.Kind == KindCreate {
				return Command{}, errors.New("create with rename")
			}
			c.Rename = true
			d.key(&c.RenameTo)
		}
		c.Delta.Clear = flags&flagClear != 0
		c.Delta.IdleTimeout = time.Duration(d.varint())
		c.Delta.Lifetime = time.Duration(d.varint())
		if flags&flagSetOwner != 0 {
			c.Delta.SetOwner = true
			c.Delta.Owner = d.string()
		}
		c.Delta.Ops = d.ops()
	case KindTouch, KindDestroy:
		d.key(&c.Key)
	case KindDestroyOwner:
		c.Owner = d.string()
		switch d.byte() {
		case 0:
		case 1:
			c.HasExcept = true
			d.key(&c.Except)
		default:
			d.fail(errors.New("bad except flag"))
		}
	case KindExpire:
		c.Time = d.time()
	case KindAddSigningKey, KindResealSigningKey:
		c.KeyID = d.string()
		c.Secret = d.bytes()
	case KindRetireSigningKey:
		c.KeyID = d.string()
	case KindNoop:
	case KindBatch:
		c.Batch = d.batch(inBatch)
	case KindRequest:
		d.request(&c)
	default:
		return Command{}, fmt.Errorf("unknown kind %d", b[1])
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errTrailing
	}
	if d.err != nil {
		return Command{}, d.err
	}
	return c, nil
}

// decoder reads from b and records the first error; later reads return
// zero values, which keeps Decode free of per-field error checks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail(errTruncated)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) key(k *session.Key) {
	if len(d.b) < len(k) {
		d.fail(errTruncated)
		return
	}
	copy(k[:], d.b)
	d.b = d.b[len(k):]
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	d.advanceVarint(n)
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	d.advanceVarint(n)
	return v
}

// advanceVarint consumes a varint of n bytes as binary.(U)varint reported
// it: 0 means the input ended, negative means it overflowed 64 bits.
func (d *decoder) advanceVarint(n int) {
	switch {
	case n == 0:
		d.fail(errTruncated)
	case n < 0:
		d.fail(errVarint)
	default:
		d.b = d.b[n:]
	}
}

// raw returns the next length-prefixed field, aliasing d.b. The length is
// checked against what is left before anything is allocated.
func (d *decoder) raw() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(errTruncated)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.raw()) }

// bytes copies, for fields the state keeps as they are (a signing key's
// secret), so that they never pin a whole log buffer.
func (d *decoder) bytes() []byte {
	v := d.raw()
	if d.err != nil {
		return nil
	}
	if len(v) == 0 {
		return []byte{}
	}
	return append([]byte(nil), v...)
}

// value returns an op's value, aliasing d.b (see Decode). An empty field
// decodes as a non-nil empty slice; OpCAS's "absent" is its own flag,
// never a nil value.
func (d *decoder) value() []byte { return d.raw() }

// ops decodes a count and that many ops; nil for none.
func (d *decoder) ops() []session.Op {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minOpBytes) {
		d.err = errTruncated
	}
	if d.err != nil || n == 0 {
		return nil
	}
	ops := make([]session.Op, n)
	for i := range ops {
		d.op(&ops[i])
		if d.err != nil {
			return nil
		}
	}
	return ops
}

func (d *decoder) op(op *session.Op) {
	op.Kind = session.OpKind(d.byte())
	op.Key = d.string()
	switch op.Kind {
	case session.OpSet:
		op.Value = d.value()
	case session.OpDelete:
	case session.OpIncr:
		op.Delta = d.varint()
	case session.OpCAS:
		switch d.byte() {
		case 0:
		case 1:
			op.Old = d.value()
		default:
			d.fail(errors.New("bad cas flag"))
		}
		op.Value = d.value()
	default:
		d.fail(fmt.Errorf("unknown op kind %d", op.Kind))
	}
}
