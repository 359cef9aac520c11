package fsm

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftsession/raftsession/session"
)

// Config configures an [FSM].
type Config struct {
	// Limits bound what one session may hold. Zero fields take the
	// defaults of session.DefaultLimits. Every replica must use the same
	// limits, or replicas may disagree about which changes are too large.
	Limits session.Limits

	// MaxSessions caps how many sessions the state holds, and MaxBytes
	// the sum of their keys and values (session.Record.Size). A command
	// that would raise the count above MaxSessions, or the byte total
	// above MaxBytes, is rejected with session.ErrQuota; commands that
	// keep or lower them (reads, touches, renames, updates that do not
	// grow, destroys) always pass, so existing sessions keep working
	// when the store is full. Records that have expired but that no
	// Expire command has removed yet do not count: before refusing, the
	// quota check removes them as an Expire at the entry's time would.
	// Every replica must use the same values, or replicas may disagree
	// about which commands were rejected. Zero (the default) means no cap.
	MaxSessions int
	MaxBytes    int64
}

// FSM is the replicated session state. It implements raft.FSM and
// raft.BatchingFSM.
//
// Concurrency: Apply, ApplyBatch, Snapshot and Restore must not run
// concurrently with each other (raft calls them all from its FSM
// goroutine). Persist of a snapshot runs concurrently with them. The read
// methods (Get, ListOwner, Len, SigningKeys, AppliedIndex, WaitApplied) are
// safe from any goroutine at any time and never wait for more than one
// map write.
type FSM struct {
	limits      session.Limits
	maxSessions int64
	maxBytes    int64
	st          atomic.Pointer[state]

	// Every Get loads st, and every Apply stores applied; keeping them on
	// different cache lines stops each Apply from evicting st from every
	// reader's cache.
	_       [64]byte
	applied atomic.Uint64
	// logBytes counts the bytes of log entries applied and not yet in a
	// persisted snapshot (see LogBytesSinceSnapshot).
	logBytes atomic.Int64
	// nwait counts waiters so that Apply skips waitMu when nobody waits,
	// which is nearly always.
	nwait   atomic.Int64
	waitMu  sync.Mutex
	waiters waitHeap

	// keyMu guards keySig, closed and replaced whenever the keyring may
	// have changed (see KeyringChanged).
	keyMu  sync.Mutex
	keySig chan struct{}
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New returns an empty FSM.
func New(cfg Config) *FSM {
	f := &FSM{limits: cfg.Limits.WithDefaults(), maxSessions: int64(max(cfg.MaxSessions, 0)), maxBytes: max(cfg.MaxBytes, 0),
		keySig: make(chan struct{})}
	f.st.Store(newState())
	return f
}

// SigningKey is one cookie-signing secret of the replicated keyring.
type SigningKey struct {
	ID     string
	Secret []byte
	// Added is the leader's time when the key was added.
	Added time.Time
}

// Apply applies one log entry and returns a *Result for a command entry
// (with Err set for a rejected or malformed command) and nil for any other
// entry type. It never panics on bad input.
func (f *FSM) Apply(l *raft.Log) interface{} {
	r := f.apply(f.st.Load(), l)
	f.logBytes.Add(int64(len(l.Data)))
	f.setApplied(l.Index)
	if r == nil {
		// A nil *Result in an interface would not compare equal to nil.
		return nil
	}
	return r
}

// ApplyBatch applies entries in order. Entries that are not commands
// (configuration changes, and any type raft may add) change no state but
// still count as applied.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	if len(logs) == 0 {
		return out
	}
	st := f.st.Load()
	var size int
	for i, l := range logs {
		if r := f.apply(st, l); r != nil {
			out[i] = r
		}
		size += len(l.Data)
	}
	f.logBytes.Add(int64(size))
	f.setApplied(logs[len(logs)-1].Index)
	return out
}

func (f *FSM) apply(st *state, l *raft.Log) *Result {
	if l.Type != raft.LogCommand {
		return nil
	}
	res := &Result{Index: l.Index}
	cmd, err := Decode(l.Data)
	if err != nil {
		res.Err = err
		return res
	}
	// The monotonic reading only exists on the leader and the location is
	// not replicated; dropping both makes every replica compare and store
	// exactly the same instants.
	now := l.AppendedAt.Round(0).UTC()
	f.applyCommand(st, &cmd, now, res)
	return res
}

// applyCommand applies one decoded command at the entry time now and
// records the outcome in res.
func (f *FSM) applyCommand(st *state, cmd *Command, now time.Time, res *Result) {
	switch cmd.Kind {
	case KindCreate:
		f.create(st, cmd, now, res)
	case KindUpdate, KindTouch:
		f.update(st, cmd, now, res)
	case KindDestroy:
		if prev := st.lookup(&cmd.Key); prev.rec != nil {
			st.remove(&cmd.Key, prev, true)
			if prev.rec.Live(now) {
				res.Destroyed = 1
			}
		}
	case KindDestroyOwner:
		for _, k := range st.ownerKeys(cmd.Owner) {
			if cmd.HasExcept && k == cmd.Except {
				continue
			}
			prev := st.lookup(&k)
			st.remove(&k, prev, true)
			if prev.rec.Live(now) {
				res.Destroyed++
			}
		}
	case KindExpire:
		res.Destroyed = st.reclaim(cmd.Time)
		st.expireProposers(cmd.Time)
	case KindAddSigningKey:
		if res.Err = st.addSigningKey(cmd.KeyID, cmd.Secret, now); res.Err == nil {
			f.signalKeyring()
		}
	case KindRetireSigningKey:
		if res.Err = st.retireSigningKey(cmd.KeyID); res.Err == nil {
			f.signalKeyring()
		}
	case KindResealSigningKey:
		if res.Err = st.resealSigningKey(cmd.KeyID, cmd.Secret); res.Err == nil {
			f.signalKeyring()
		}
	case KindNoop:
	case KindBatch:
		f.applyBatch(st, cmd, now, res)
	case KindRequest:
		f.applyRequest(st, cmd, now, res)
	}
}

func (f *FSM) create(st *state, cmd *Command, now time.Time, res *Result) {
	// An expired record that Expire has not removed yet is gone as far as
	// every reader is concerned, so it does not block a Create.
	prev := st.lookup(&cmd.Key)
	if prev.rec != nil && prev.rec.Live(now) {
		res.Err = fmt.Errorf("fsm: create %v: %w", cmd.Key, session.ErrExists)
		return
	}
	rec, vals, err := cmd.Delta.Apply(nil, now, res.Index, f.limits)
	if err != nil {
		res.Err = err
		return
	}
	growth := func() (int64, int64) {
		p := st.lookup(&cmd.Key)
		return 1 - held(p), int64(rec.Size() - sizeOf(p.rec))
	}
	if err := f.admit(st, now, growth); err != nil {
		res.Err = fmt.Errorf("fsm: create %v: %w", cmd.Key, err)
		return
	}
	// admit may have removed an expired prev: look it up again.
	st.put(&cmd.Key, st.lookup(&cmd.Key), rec)
	res.Values = vals
}

func (f *FSM) update(st *state, cmd *Command, now time.Time, res *Result) {
	// The deadline is checked at the entry's own time, not left to Expire,
	// so that a late request never revives a session that ran out.
	prev := st.lookup(&cmd.Key)
	if prev.rec == nil || !prev.rec.Live(now) {
		res.Err = fmt.Errorf("fsm: %v %v: %w", cmd.Kind, cmd.Key, session.ErrNotFound)
		return
	}
	if cmd.Rename {
		if target := st.lookup(&cmd.RenameTo); target.rec != nil && target.rec.Live(now) {
			res.Err = fmt.Errorf("fsm: rename to %v: %w", cmd.RenameTo, session.ErrExists)
			return
		}
	}
	rec, vals, err := cmd.Delta.Apply(prev.rec, now, res.Index, f.limits)
	if err != nil {
		res.Err = err
		return
	}
	growth := func() (int64, int64) {
		// A rename over an expired record drops that record.
		var target entry
		if cmd.Rename {
			target = st.lookup(&cmd.RenameTo)
		}
		return -held(target), int64(rec.Size() - prev.rec.Size() - sizeOf(target.rec))
	}
	if err := f.admit(st, now, growth); err != nil {
		res.Err = fmt.Errorf("fsm: %v %v: %w", cmd.Kind, cmd.Key, err)
		return
	}
	// admit may have removed an expired target or re-filed prev's expiry
	// item: look both up again.
	prev = st.lookup(&cmd.Key)
	if cmd.Rename {
		st.remove(&cmd.Key, prev, true)
		st.put(&cmd.RenameTo, st.lookup(&cmd.RenameTo), rec)
	} else {
		st.put(&cmd.Key, prev, rec)
	}
	res.Values = vals
}

// admit checks a change against MaxSessions and MaxBytes. growth returns
// how many records and bytes the change adds to the state as it is at
// the moment of the call. A change that raises neither total above its
// cap passes; otherwise the expired records are removed (see
// Config.MaxSessions) and the change is weighed once more. The error
// wraps session.ErrQuota.
func (f *FSM) admit(st *state, now time.Time, growth func() (records, bytes int64)) error {
	if f.maxSessions == 0 && f.maxBytes == 0 {
		return nil
	}
	err := f.overQuota(st, growth)
	if err != nil && st.reclaim(now) > 0 {
		err = f.overQuota(st, growth)
	}
	return err
}

func (f *FSM) overQuota(st *state, growth func() (int64, int64)) error {
	dn, db := growth()
	if n := st.count.Load() + dn; f.maxSessions > 0 && dn > 0 && n > f.maxSessions {
		return fmt.Errorf("%w: %d sessions, limit %d", session.ErrQuota, n, f.maxSessions)
	}
	if b := st.bytes.Load() + db; f.maxBytes > 0 && db > 0 && b > f.maxBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", session.ErrQuota, b, f.maxBytes)
	}
	return nil
}

// MinSigningKeyLen is the shortest cookie-signing secret the state
// machine accepts (256 bits, as httpmw requires): a short key in the
// replicated keyring would let anyone who guesses it sign cookies.
const MinSigningKeyLen = 32

func (st *state) addSigningKey(id string, secret []byte, now time.Time) error {
	if id == "" {
		return fmt.Errorf("fsm: signing key needs an id: %w", session.ErrInvalid)
	}
	if len(secret) < MinSigningKeyLen {
		return fmt.Errorf("fsm: signing key %q is %d bytes, need at least %d: %w", id, len(secret), MinSigningKeyLen, session.ErrInvalid)
	}
	old := *st.keys.Load()
	if slices.ContainsFunc(old, func(k SigningKey) bool { return k.ID == id }) {
		return fmt.Errorf("fsm: signing key %q: %w", id, session.ErrExists)
	}
	// Copy-on-write: readers hold the old slice without a lock.
	keys := make([]SigningKey, 0, len(old)+1)
	keys = append(keys, SigningKey{ID: id, Secret: secret, Added: now})
	keys = append(keys, old...)
	st.keys.Store(&keys)
	return nil
}

func (st *state) resealSigningKey(id string, secret []byte) error {
	if len(secret) == 0 {
		return fmt.Errorf("fsm: signing key needs a secret: %w", session.ErrInvalid)
	}
	old := *st.keys.Load()
	i := slices.IndexFunc(old, func(k SigningKey) bool { return k.ID == id })
	if i < 0 {
		return fmt.Errorf("fsm: signing key %q: %w", id, session.ErrNotFound)
	}
	keys := slices.Clone(old)
	keys[i].Secret = secret
	st.keys.Store(&keys)
	return nil
}

func (st *state) retireSigningKey(id string) error {
	old := *st.keys.Load()
	i := slices.IndexFunc(old, func(k SigningKey) bool { return k.ID == id })
	switch {
	case i < 0:
		return fmt.Errorf("fsm: signing key %q: %w", id, session.ErrNotFound)
	case i == 0:
		return fmt.Errorf("fsm: signing key %q is the primary; add a new one first: %w", id, session.ErrInvalid)
	}
	keys := slices.Delete(slices.Clone(old), i, i+1)
	st.keys.Store(&keys)
	return nil
}

// Get returns the record under k if it is live at now. The record is
// shared and must not be modified.
func (f *FSM) Get(k session.Key, now time.Time) (*session.Record, bool) {
	r := f.st.Load().read(&k)
	if r == nil || !r.Live(now) {
		return nil, false
	}
	return r, true
}

// ListOwner returns the sessions of owner that are live at now, oldest
// first (ties by key). It costs O(n log n) in that owner's n sessions.
func (f *FSM) ListOwner(owner string, now time.Time) []session.Info {
	if owner == "" {
		return nil
	}
	st := f.st.Load()
	keys := st.ownerKeys(owner)
	infos := make([]session.Info, 0, len(keys))
	for i := range keys {
		// The owner index and the records are updated one after the other,
		// so re-check the owner on the record itself.
		if r := st.read(&keys[i]); r != nil && r.Owner == owner && r.Live(now) {
			infos = append(infos, session.InfoOf(keys[i], r))
		}
	}
	slices.SortFunc(infos, func(a, b session.Info) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return slices.Compare(a.Key[:], b.Key[:])
	})
	return infos
}

// Len returns the number of records held, including expired ones that no
// Expire command has removed yet.
func (f *FSM) Len() int { return int(f.st.Load().count.Load()) }

// LogBytesSinceSnapshot returns the bytes of log entries applied since
// the state of the last snapshot that was persisted (or restored): about
// what a restart on the same log would read and apply again after
// restoring the newest snapshot. A snapshot that fails to persist takes
// nothing off.
func (f *FSM) LogBytesSinceSnapshot() int64 { return f.logBytes.Load() }

// snapshotted takes the n bytes of log a persisted snapshot covers off
// logBytes; a Restore in between may have reset it already.
func (f *FSM) snapshotted(n int64) {
	for {
		cur := f.logBytes.Load()
		if f.logBytes.CompareAndSwap(cur, max(cur-n, 0)) {
			return
		}
	}
}

// Bytes returns the sum of the keys and values of the records held (what
// Config.MaxBytes caps), including expired ones not removed yet.
func (f *FSM) Bytes() int64 { return f.st.Load().bytes.Load() }

// SigningKeys returns the replicated cookie-signing keys, primary first.
// The result is a copy the caller may keep.
func (f *FSM) SigningKeys() []SigningKey {
	keys := slices.Clone(*f.st.Load().keys.Load())
	for i := range keys {
		keys[i].Secret = slices.Clone(keys[i].Secret)
	}
	return keys
}
