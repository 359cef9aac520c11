package session

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Record is one stored session as a store holds it. A Record is immutable
// once a store has returned it: stores share it, and its Values, between
// versions and between readers, so callers must not modify it.
type Record struct {
	// Values holds the keys and their encoded values (see [Codec]).
	Values Values
	// Owner is who the session belongs to (for example "user:42"), or ""
	// when it belongs to nobody yet. Stores index sessions by owner.
	Owner string
	// Created is when the session was first committed.
	Created time.Time
	// LastSeen is the time of the last committed change or touch.
	LastSeen time.Time
	// IdleTimeout is how long the session lives without a change or touch.
	IdleTimeout time.Duration
	// IdleDeadline is LastSeen+IdleTimeout, capped at AbsoluteDeadline.
	IdleDeadline time.Time
	// AbsoluteDeadline is when the session ends however active it is.
	AbsoluteDeadline time.Time
	// Version is the store index of the record's last change.
	Version uint64
}

// Live reports whether the record has not expired at now.
func (r *Record) Live(now time.Time) bool {
	return now.Before(r.IdleDeadline) && now.Before(r.AbsoluteDeadline)
}

// Deadline is the earlier of the idle and absolute deadlines: the time at
// which the record expires unless touched.
func (r *Record) Deadline() time.Time {
	if r.AbsoluteDeadline.Before(r.IdleDeadline) {
		return r.AbsoluteDeadline
	}
	return r.IdleDeadline
}

// Size is the number of bytes the record's values count against
// [Limits.MaxBytes]: the sum of key and value lengths.
func (r *Record) Size() int { return r.Values.Size() }

// Info describes one session without its values, for "list my sessions".
type Info struct {
	Key              Key
	Owner            string
	Created          time.Time
	LastSeen         time.Time
	IdleDeadline     time.Time
	AbsoluteDeadline time.Time
}

// InfoOf returns the Info of the record stored under k.
func InfoOf(k Key, r *Record) Info {
	return Info{Key: k, Owner: r.Owner, Created: r.Created, LastSeen: r.LastSeen,
		IdleDeadline: r.IdleDeadline, AbsoluteDeadline: r.AbsoluteDeadline}
}

// OpKind says what an [Op] does to one key.
type OpKind uint8

// The per-key operations of a [Delta].
const (
	// OpSet stores Value under Key.
	OpSet OpKind = iota + 1
	// OpDelete removes Key (no error when absent).
	OpDelete
	// OpIncr adds Delta to the decimal integer stored under Key (absent
	// counts as 0) and stores the result as decimal text, which is also its
	// JSON encoding. The new value is reported in [Result.Values].
	OpIncr
	// OpCAS stores Value under Key only if the current value equals Old;
	// Old == nil means "only if Key is absent". A failed comparison rejects
	// the whole change with [ErrCASFailed].
	OpCAS
)

func (k OpKind) String() string {
	switch k {
	case OpSet:
		return "set"
	case OpDelete:
		return "delete"
	case OpIncr:
		return "incr"
	case OpCAS:
		return "cas"
	}
	return "op(" + strconv.Itoa(int(k)) + ")"
}

// Op is one operation on one key, evaluated by the store in order.
type Op struct {
	Kind  OpKind
	Key   string
	Value []byte // OpSet, OpCAS: the new value
	Old   []byte // OpCAS: the expected value; nil means absent
	Delta int64  // OpIncr
}

// Delta is what a change does to a record's contents. It is applied
// atomically: all of it or, on any error, none of it. Applying any Delta
// to an existing record touches it (LastSeen and IdleDeadline move forward).
type Delta struct {
	// Clear removes every value before Ops run.
	Clear bool
	// Ops run in order after Clear.
	Ops []Op
	// SetOwner replaces the owner with Owner ("" removes it).
	SetOwner bool
	Owner    string
	// IdleTimeout, when positive, replaces the record's idle timeout. It is
	// required when creating.
	IdleTimeout time.Duration
	// Lifetime, when positive, sets the absolute deadline to now+Lifetime
	// (for example when a user logs in with "remember me"). It is required
	// when creating.
	Lifetime time.Duration
}

// Empty reports whether the delta changes nothing but the touch time.
func (d *Delta) Empty() bool {
	return !d.Clear && len(d.Ops) == 0 && !d.SetOwner && d.IdleTimeout <= 0 && d.Lifetime <= 0
}

// Change is one atomic commit to one session.
//
// Exactly one of these shapes:
//   - Create: a new record under ID with Delta applied to empty values;
//     rejected with [ErrExists] if ID is taken.
//   - Destroy: remove ID; idempotent; Delta and RenameTo must be empty.
//   - Update (neither flag): apply Delta to the live record under ID;
//     rejected with [ErrNotFound] if it is missing or expired, so a
//     destroyed session is never resurrected. With RenameTo set, the record
//     first moves to RenameTo (rejected with [ErrExists] if taken) and the
//     old ID stops working in the same step. An Update with an empty Delta
//     is a touch.
type Change struct {
	ID       string
	Create   bool
	Destroy  bool
	RenameTo string
	Delta
}

// Validate reports a malformed change with an error wrapping [ErrInvalid].
// Size limits are checked when the change is applied, not here.
func (c *Change) Validate() error {
	switch {
	case c.ID == "":
		return fmt.Errorf("%w: empty ID", ErrInvalid)
	case c.Create && c.Destroy:
		return fmt.Errorf("%w: create and destroy together", ErrInvalid)
	case c.Destroy && (c.RenameTo != "" || !c.Delta.Empty()):
		return fmt.Errorf("%w: destroy carries other changes", ErrInvalid)
	case c.Create && c.RenameTo != "":
		return fmt.Errorf("%w: create and rename together", ErrInvalid)
	case c.RenameTo == c.ID:
		return fmt.Errorf("%w: rename to the same ID", ErrInvalid)
	case c.Create && (c.IdleTimeout <= 0 || c.Lifetime <= 0):
		return fmt.Errorf("%w: create needs a positive idle timeout and lifetime", ErrInvalid)
	}
	return c.Delta.validate()
}

func (d *Delta) validate() error {
	if d.IdleTimeout < 0 || d.Lifetime < 0 {
		return fmt.Errorf("%w: negative timeout", ErrInvalid)
	}
	for i, op := range d.Ops {
		if op.Key == "" {
			return fmt.Errorf("%w: op %d has an empty key", ErrInvalid, i)
		}
		if op.Kind < OpSet || op.Kind > OpCAS {
			return fmt.Errorf("%w: op %d has unknown kind %d", ErrInvalid, i, op.Kind)
		}
	}
	return nil
}

// Result is what a successful commit reports.
type Result struct {
	// Index is the store index at which the change became visible. A
	// client that presents it later reads state at least this new.
	// Concurrent commits may share an index (see [Store.Commit]).
	Index uint64
	// Values holds, for each op of the change in order, the new integer
	// value for OpIncr and 0 for other kinds.
	Values []int64
}

// Limits bound what one session may hold. Zero fields take the defaults
// from [DefaultLimits].
type Limits struct {
	// MaxBytes bounds the sum of key and value lengths. Default 64 KiB.
	MaxBytes int
	// MaxKeys bounds the number of keys. Default 1024.
	MaxKeys int
	// MaxValueBytes bounds one value. Default 64 KiB.
	MaxValueBytes int
	// MaxKeyBytes bounds one key and the owner. Default 256.
	MaxKeyBytes int
}

// DefaultLimits returns the limits used when a field is zero.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 64 << 10, MaxKeys: 1024, MaxValueBytes: 64 << 10, MaxKeyBytes: 256}
}

// WithDefaults returns l with zero fields replaced by defaults.
func (l Limits) WithDefaults() Limits {
	return l.or(DefaultLimits())
}

// or returns l with its zero (or negative) fields taken from d.
func (l Limits) or(d Limits) Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxKeys <= 0 {
		l.MaxKeys = d.MaxKeys
	}
	if l.MaxValueBytes <= 0 {
		l.MaxValueBytes = d.MaxValueBytes
	}
	if l.MaxKeyBytes <= 0 {
		l.MaxKeyBytes = d.MaxKeyBytes
	}
	return l
}

// Apply returns the record that results from applying d to prev (nil to
// create) at time now, with the given version, and the per-op results (see
// [Result.Values]). prev is never modified: a delta that changes values
// builds new [Values], copying each value once (ops' values are not
// retained), and one that does not shares prev's. Apply is deterministic: the same inputs give the same
// record on every replica. Errors wrap [ErrTooLarge], [ErrCASFailed],
// [ErrNotInteger] or [ErrInvalid]; on error nothing is applied.
func (d *Delta) Apply(prev *Record, now time.Time, version uint64, lim Limits) (*Record, []int64, error) {
	lim = lim.WithDefaults()
	if err := d.validate(); err != nil {
		return nil, nil, err
	}
	var next Record
	if prev == nil {
		if d.IdleTimeout <= 0 || d.Lifetime <= 0 {
			return nil, nil, fmt.Errorf("%w: create needs a positive idle timeout and lifetime", ErrInvalid)
		}
		next = Record{Created: now}
	} else {
		next = *prev
	}
	next.LastSeen = now
	next.Version = version
	if d.IdleTimeout > 0 {
		next.IdleTimeout = d.IdleTimeout
	}
	if d.Lifetime > 0 {
		next.AbsoluteDeadline = now.Add(d.Lifetime)
	}
	next.IdleDeadline = now.Add(next.IdleTimeout)
	if next.IdleDeadline.After(next.AbsoluteDeadline) {
		next.IdleDeadline = next.AbsoluteDeadline
	}
	if d.SetOwner {
		if len(d.Owner) > lim.MaxKeyBytes {
			return nil, nil, fmt.Errorf("%w: owner is %d bytes, limit %d", ErrTooLarge, len(d.Owner), lim.MaxKeyBytes)
		}
		next.Owner = d.Owner
	}

	var results []int64
	if d.Clear || len(d.Ops) > 0 {
		ov := overlay{}
		if !d.Clear && prev != nil {
			ov.base = prev.Values
			ov.n, ov.size = prev.Values.Len(), prev.Values.Size()
			ov.total = max(len(prev.Values.b)-4, 0)
		}
		var err error
		if results, err = d.applyOps(&ov, lim); err != nil {
			return nil, nil, err
		}
		if ov.n > lim.MaxKeys {
			return nil, nil, fmt.Errorf("%w: %d keys, limit %d", ErrTooLarge, ov.n, lim.MaxKeys)
		}
		if ov.size > lim.MaxBytes {
			return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, ov.size, lim.MaxBytes)
		}
		if ov.total > maxValuesLen-4 {
			return nil, nil, fmt.Errorf("%w: values encode to %d bytes, limit 4 GiB", ErrTooLarge, ov.total)
		}
		next.Values = ov.values()
	}
	return &next, results, nil
}

// applyOps applies d's ops to vals in order and returns each op's result:
// the new value of an increment, 0 for other kinds.
func (d *Delta) applyOps(vals *overlay, lim Limits) ([]int64, error) {
	results := make([]int64, len(d.Ops))
	for i := range d.Ops {
		n, err := d.Ops[i].apply(vals, lim)
		if err != nil {
			return nil, err
		}
		results[i] = n
	}
	return results, nil
}

// apply applies op to vals, checking its key and the resulting value
// against lim, and returns the new value of an increment.
func (op *Op) apply(vals *overlay, lim Limits) (int64, error) {
	if len(op.Key) > lim.MaxKeyBytes {
		return 0, fmt.Errorf("%w: key is %d bytes, limit %d", ErrTooLarge, len(op.Key), lim.MaxKeyBytes)
	}
	var n int64
	var v []byte
	switch op.Kind {
	case OpSet:
		v = op.Value
	case OpDelete:
		vals.del(op.Key)
		return 0, nil
	case OpIncr:
		cur, _ := vals.get(op.Key)
		var err error
		if n, err = incr(cur, op.Delta); err != nil {
			return 0, fmt.Errorf("incr %q: %w", op.Key, err)
		}
		v = strconv.AppendInt(nil, n, 10)
	case OpCAS:
		cur, ok := vals.get(op.Key)
		if op.Old == nil && ok || op.Old != nil && (!ok || !bytes.Equal(cur, op.Old)) {
			return 0, fmt.Errorf("cas %q: %w", op.Key, ErrCASFailed)
		}
		v = op.Value
	}
	if len(v) > lim.MaxValueBytes {
		return 0, fmt.Errorf("%w: value of %q is %d bytes, limit %d", ErrTooLarge, op.Key, len(v), lim.MaxValueBytes)
	}
	vals.set(op.Key, v)
	return n, nil
}

// overlay is a delta's edits on top of the values it starts from, with
// the key count, Size and encoded length of the result kept in step, so
// that limits are checked before the new Values is built and the build
// allocates exactly once. Values are not copied until then: they alias
// the op (and, in a replica, the log entry), so each is copied once.
type overlay struct {
	base  Values
	edits []edit
	// index finds a key's edit once there are too many to scan.
	index map[string]int
	n     int // keys in the result
	size  int // Size of the result
	total int // encoded length of the result's pairs (no count)
}

// overlayScan is how many edits are searched linearly before an index
// pays for itself; deltas rarely touch more keys than this.
const overlayScan = 16

func (o *overlay) find(key string) int {
	if o.index != nil {
		if i, ok := o.index[key]; ok {
			return i
		}
		return -1
	}
	for i := range o.edits {
		if o.edits[i].key == key {
			return i
		}
	}
	return -1
}

func (o *overlay) get(key string) ([]byte, bool) {
	if i := o.find(key); i >= 0 {
		return o.edits[i].val, !o.edits[i].del
	}
	return o.base.Lookup(key)
}

// put records e, adjusting the totals by what key held before.
func (o *overlay) put(e edit) {
	if old, ok := o.get(e.key); ok {
		o.n--
		o.size -= len(e.key) + len(old)
		o.total -= pairLen(e.key, old)
	}
	if !e.del {
		o.n++
		o.size += len(e.key) + len(e.val)
		o.total += pairLen(e.key, e.val)
	}
	if i := o.find(e.key); i >= 0 {
		o.edits[i] = e
		return
	}
	o.edits = append(o.edits, e)
	switch {
	case o.index != nil:
		o.index[e.key] = len(o.edits) - 1
	case len(o.edits) > overlayScan:
		o.index = make(map[string]int, 2*len(o.edits))
		for i := range o.edits {
			o.index[o.edits[i].key] = i
		}
	}
}

func (o *overlay) set(key string, v []byte) { o.put(edit{key: key, val: v}) }
func (o *overlay) del(key string)           { o.put(edit{key: key, del: true}) }

// values builds the resulting Values.
func (o *overlay) values() Values {
	if len(o.edits) == 0 {
		return o.base
	}
	slices.SortFunc(o.edits, func(a, b edit) int { return strings.Compare(a.key, b.key) })
	total := o.total
	if o.n > 0 {
		total += 4 // the count; an empty encoding has none
	}
	return merge(o.base, o.edits, o.n, total)
}

func incr(cur []byte, delta int64) (int64, error) {
	var n int64
	if cur != nil {
		v, err := strconv.ParseInt(string(cur), 10, 64)
		if err != nil {
			return 0, ErrNotInteger
		}
		n = v
	}
	if delta > 0 && n > math.MaxInt64-delta || delta < 0 && n < math.MinInt64-delta {
		return 0, ErrNotInteger
	}
	return n + delta, nil
}
