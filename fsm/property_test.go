package fsm

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"

	"github.com/raftsession/raftsession/session"
)

// model is the reference semantics, written for obviousness rather than
// speed: a plain map of records, linear scans for owners and expiry.
type model struct {
	recs map[session.Key]*session.Record
	// vals holds each record's values as a plain map, kept by refValues
	// rather than session.Delta.Apply, so that the compact session.Values
	// in the FSM's records is checked too.
	vals map[session.Key]map[string][]byte
	keys []SigningKey
	// maxSessions and maxBytes are the quotas; 0 means none.
	maxSessions, maxBytes int
}

func newModel(cfg Config) *model {
	return &model{recs: map[session.Key]*session.Record{}, vals: map[session.Key]map[string][]byte{}, maxSessions: cfg.MaxSessions, maxBytes: int(cfg.MaxBytes)}
}

// totals counts the records held and their bytes, expired ones included.
func (m *model) totals() (n, size int) {
	for _, r := range m.recs {
		size += r.Size()
	}
	return len(m.recs), size
}

// admit is the quota rule: a change may not raise the record count above
// maxSessions nor the byte total above maxBytes. after returns the totals
// the change would leave. When the change does not fit, the records
// expired at now are dropped (as an Expire at now) and it is weighed again.
func (m *model) admit(now time.Time, after func() (n, size int)) error {
	fits := func() bool {
		n0, b0 := m.totals()
		n1, b1 := after()
		return !(m.maxSessions > 0 && n1 > n0 && n1 > m.maxSessions) && !(m.maxBytes > 0 && b1 > b0 && b1 > m.maxBytes)
	}
	if fits() {
		return nil
	}
	for k, r := range m.recs {
		if !r.Deadline().After(now) {
			delete(m.recs, k)
		}
	}
	if fits() {
		return nil
	}
	return session.ErrQuota
}

// without returns the totals minus the records under keys (counted once).
func (m *model) without(keys ...session.Key) (n, size int) {
	n, size = m.totals()
	seen := map[session.Key]bool{}
	for _, k := range keys {
		if r := m.recs[k]; r != nil && !seen[k] {
			seen[k] = true
			n--
			size -= r.Size()
		}
	}
	return n, size
}

func (m *model) apply(data []byte, index uint64, now time.Time) *Result {
	res := &Result{Index: index}
	c, err := Decode(data)
	if err != nil {
		res.Err = err
		return res
	}
	now = now.Round(0).UTC()
	switch c.Kind {
	case KindCreate:
		m.create(&c, index, now, res)
	case KindUpdate, KindTouch:
		m.update(&c, index, now, res)
	case KindDestroy:
		if m.live(c.Key, now) != nil {
			res.Destroyed = 1
		}
		delete(m.recs, c.Key)
	case KindDestroyOwner:
		for k, r := range m.recs {
			if r.Owner == c.Owner && c.Owner != "" && !(c.HasExcept && k == c.Except) {
				if r.Live(now) {
					res.Destroyed++
				}
				delete(m.recs, k)
			}
		}
	case KindExpire:
		for k, r := range m.recs {
			if !r.Deadline().After(c.Time) {
				delete(m.recs, k)
				res.Destroyed++
			}
		}
	case KindAddSigningKey:
		switch {
		case c.KeyID == "" || len(c.Secret) < MinSigningKeyLen:
			res.Err = session.ErrInvalid
		case slices.ContainsFunc(m.keys, func(k SigningKey) bool { return k.ID == c.KeyID }):
			res.Err = session.ErrExists
		default:
			m.keys = append([]SigningKey{{ID: c.KeyID, Secret: c.Secret, Added: now}}, m.keys...)
		}
	case KindResealSigningKey:
		i := slices.IndexFunc(m.keys, func(k SigningKey) bool { return k.ID == c.KeyID })
		switch {
		case len(c.Secret) == 0:
			res.Err = session.ErrInvalid
		case i < 0:
			res.Err = session.ErrNotFound
		default:
			m.keys = slices.Clone(m.keys)
			m.keys[i].Secret = c.Secret
		}
	case KindRetireSigningKey:
		i := slices.IndexFunc(m.keys, func(k SigningKey) bool { return k.ID == c.KeyID })
		switch {
		case i < 0:
			res.Err = session.ErrNotFound
		case i == 0:
			res.Err = session.ErrInvalid
		default:
			m.keys = slices.Delete(m.keys, i, i+1)
		}
	}
	return res
}

func (m *model) live(k session.Key, now time.Time) *session.Record {
	if r := m.recs[k]; r != nil && r.Live(now) {
		return r
	}
	return nil
}

func (m *model) create(c *Command, index uint64, now time.Time, res *Result) {
	if m.live(c.Key, now) != nil {
		res.Err = session.ErrExists
		return
	}
	r, vals, err := c.Delta.Apply(nil, now, index, Config{}.Limits)
	if err != nil {
		res.Err = err
		return
	}
	if err := m.admit(now, func() (int, int) {
		n, size := m.without(c.Key)
		return n + 1, size + r.Size()
	}); err != nil {
		res.Err = err
		return
	}
	m.recs[c.Key], res.Values = r, vals
	m.vals[c.Key] = refValues(nil, &c.Delta)
}

// refValues applies a delta that session.Delta.Apply accepted to prev with
// plain map semantics.
func refValues(prev map[string][]byte, d *session.Delta) map[string][]byte {
	out := map[string][]byte{}
	if !d.Clear {
		maps.Copy(out, prev)
	}
	for _, op := range d.Ops {
		switch op.Kind {
		case session.OpSet, session.OpCAS:
			out[op.Key] = bytes.Clone(op.Value)
		case session.OpDelete:
			delete(out, op.Key)
		case session.OpIncr:
			n, _ := strconv.ParseInt(string(out[op.Key]), 10, 64)
			out[op.Key] = []byte(strconv.FormatInt(n+op.Delta, 10))
		}
	}
	return out
}

func (m *model) update(c *Command, index uint64, now time.Time, res *Result) {
	prev := m.live(c.Key, now)
	if prev == nil {
		res.Err = session.ErrNotFound
		return
	}
	if c.Rename && m.live(c.RenameTo, now) != nil {
		res.Err = session.ErrExists
		return
	}
	r, vals, err := c.Delta.Apply(prev, now, index, Config{}.Limits)
	if err != nil {
		res.Err = err
		return
	}
	dst := c.Key
	if c.Rename {
		dst = c.RenameTo
	}
	if err := m.admit(now, func() (int, int) {
		n, size := m.without(c.Key, dst)
		return n + 1, size + r.Size()
	}); err != nil {
		res.Err = err
		return
	}
	res.Values = vals
	ref := refValues(m.vals[c.Key], &c.Delta)
	delete(m.recs, c.Key)
	m.recs[dst], m.vals[dst] = r, ref
}

func (m *model) listOwner(owner string, now time.Time) []session.Info {
	var out []session.Info
	for k, r := range m.recs {
		if owner != "" && r.Owner == owner && r.Live(now) {
			out = append(out, session.InfoOf(k, r))
		}
	}
	slices.SortFunc(out, func(a, b session.Info) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return bytes.Compare(a.Key[:], b.Key[:])
	})
	return out
}

var (
	propIDs    = []string{"s0", "s1", "s2", "s3", "s4", "s5"}
	propOwners = []string{"", "u1", "u2"}
	// Names that are prefixes of each other, to catch a lookup that
	// compares too little of a key.
	propNames = []string{"a", "ab", "abc", "b", "n"}
)

// genOps draws a few ops over a small key space so that increments, CAS
// and deletes collide often.
func genOps(t *rapid.T) []session.Op {
	n := rapid.IntRange(0, 3).Draw(t, "nops")
	ops := make([]session.Op, n)
	for i := range ops {
		op := session.Op{Kind: session.OpKind(rapid.IntRange(1, 4).Draw(t, "kind")),
			Key: rapid.SampledFrom(propNames).Draw(t, "name")}
		switch op.Kind {
		case session.OpSet:
			op.Value = []byte(rapid.SampledFrom([]string{"", "1", "x", "42"}).Draw(t, "value"))
		case session.OpIncr:
			op.Delta = rapid.Int64Range(-3, 3).Draw(t, "delta")
		case session.OpCAS:
			if rapid.Bool().Draw(t, "hasOld") {
				op.Old = []byte(rapid.SampledFrom([]string{"", "1", "x"}).Draw(t, "old"))
			}
			op.Value = []byte("c")
		}
		ops[i] = op
	}
	return ops
}

type step struct {
	advance time.Duration
	data    []byte
	// expire makes the entry an Expire at the leader clock plus expireAt,
	// which only materialize knows.
	expire   bool
	expireAt time.Duration
}

// genStep draws one log entry. Times move in minutes against timeouts of
// a few minutes, so expiry happens often.
func genStep(t *rapid.T) step {
	s := step{advance: time.Duration(rapid.IntRange(0, 3).Draw(t, "advance")) * time.Minute}
	id := rapid.SampledFrom(propIDs).Draw(t, "id")
	delta := func() session.Delta {
		d := session.Delta{Ops: genOps(t), Clear: rapid.IntRange(0, 9).Draw(t, "clear") == 0}
		if rapid.IntRange(0, 3).Draw(t, "setOwner") == 0 {
			d.SetOwner, d.Owner = true, rapid.SampledFrom(propOwners).Draw(t, "owner")
		}
		if rapid.IntRange(0, 3).Draw(t, "timeouts") == 0 {
			d.IdleTimeout = time.Duration(rapid.IntRange(1, 6).Draw(t, "idle")) * time.Minute
			d.Lifetime = time.Duration(rapid.IntRange(1, 12).Draw(t, "lifetime")) * time.Minute
		}
		return d
	}
	var err error
	switch rapid.IntRange(0, 10).Draw(t, "command") {
	case 0, 1, 2:
		c := &session.Change{ID: id, Create: true, Delta: delta()}
		c.IdleTimeout = time.Duration(rapid.IntRange(1, 6).Draw(t, "idle")) * time.Minute
		c.Lifetime = time.Duration(rapid.IntRange(1, 12).Draw(t, "lifetime")) * time.Minute
		s.data, err = EncodeChange(c)
	case 3, 4:
		s.data, err = EncodeChange(&session.Change{ID: id, Delta: delta()})
	case 5:
		s.data, err = EncodeChange(&session.Change{ID: id, RenameTo: rapid.SampledFrom(propIDs).Filter(func(s string) bool { return s != id }).Draw(t, "to"), Delta: delta()})
	case 6:
		s.data, err = EncodeChange(&session.Change{ID: id})
	case 7:
		s.data, err = EncodeChange(&session.Change{ID: id, Destroy: true})
	case 8:
		except := ""
		if rapid.Bool().Draw(t, "except") {
			except = id
		}
		s.data = EncodeDestroyOwner(rapid.SampledFrom(propOwners).Draw(t, "owner"), except)
	case 9:
		// Expire cut-offs both behind and ahead of the leader clock; the
		// node adds the clock before applying.
		s.expire = true
		s.expireAt = time.Duration(rapid.IntRange(-10, 10).Draw(t, "expireAt")) * time.Minute
	case 10:
		switch rapid.IntRange(0, 3).Draw(t, "keyring") {
		case 0:
			secret := []byte(rapid.SampledFrom([]string{"secret", "a-secret-of-exactly-32-bytes-ok!", "a secret that is longer than 32 bytes"}).Draw(t, "secret"))
			s.data = EncodeAddSigningKey(rapid.SampledFrom([]string{"k1", "k2", "k3"}).Draw(t, "kid"), secret)
		case 1:
			s.data = EncodeRetireSigningKey(rapid.SampledFrom([]string{"k1", "k2", "k3"}).Draw(t, "kid"))
		case 2:
			s.data = EncodeResealSigningKey(rapid.SampledFrom([]string{"k1", "k2", "k3"}).Draw(t, "kid"),
				[]byte(rapid.SampledFrom([]string{"sealed-a", "sealed-b"}).Draw(t, "sealed")))
		default:
			s.data = rapid.SliceOfN(rapid.Byte(), 0, 8).Draw(t, "garbage")
		}
	}
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return s
}

// materialize turns generated steps into raft log entries with a leader
// clock that starts at t0.
func materialize(steps []step) []*raft.Log {
	now := t0
	logs := make([]*raft.Log, len(steps))
	for i, s := range steps {
		now = now.Add(s.advance)
		data := s.data
		if s.expire {
			data = EncodeExpire(now.Add(s.expireAt))
		}
		logs[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: now}
	}
	return logs
}

// genConfig draws quotas small enough for the generated logs to hit them
// often (six IDs, values of a few bytes), or none.
func genConfig(t *rapid.T) Config {
	var c Config
	if rapid.Bool().Draw(t, "quota") {
		c.MaxSessions = rapid.IntRange(0, 5).Draw(t, "maxSessions")
		c.MaxBytes = int64(rapid.IntRange(0, 24).Draw(t, "maxBytes"))
	}
	return c
}

func genLog(t *rapid.T) []*raft.Log {
	return materialize(rapid.SliceOfN(rapid.Custom(genStep), 1, 80).Draw(t, "steps"))
}

func sameOutcome(got, want *Result) error {
	if (got.Err == nil) != (want.Err == nil) || got.Err != nil && errorCode(got.Err) != errorCode(want.Err) {
		return fmt.Errorf("error %v, model %v", got.Err, want.Err)
	}
	if !slices.Equal(got.Values, want.Values) || got.Destroyed != want.Destroyed || got.Index != want.Index {
		return fmt.Errorf("result %+v, model %+v", got, want)
	}
	return nil
}

func TestPropertyAgreesWithModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := genConfig(t)
		f, m := New(cfg), newModel(cfg)
		for _, l := range genLog(t) {
			got := f.Apply(l).(*Result)
			want := m.apply(l.Data, l.Index, l.AppendedAt)
			if err := sameOutcome(got, want); err != nil {
				t.Fatalf("entry %d: %v", l.Index, err)
			}
			if c, err := Decode(l.Data); err == nil && c.Kind == KindExpire {
				f.st.Load().expiry.Ascend(func(it expItem) bool {
					if r := f.st.Load().get(&it.key); !r.Deadline().After(c.Time) {
						t.Fatalf("entry %d: Expire(%v) left %v with deadline %v", l.Index, c.Time, it.key, r.Deadline())
					}
					return false
				})
			}
			compareReads(t, f, m, l.AppendedAt)
		}
		checkIndexes(t, f)
	})
}

// compareValues checks a record's values against the model's plain map,
// through every read session.Values offers.
func compareValues(t *rapid.T, id string, got session.Values, want map[string][]byte) {
	if got.Len() != len(want) {
		t.Fatalf("%s: %d values %v; model %q", id, got.Len(), got, want)
	}
	for _, k := range propNames {
		v, ok := got.Lookup(k)
		w, wok := want[k]
		if ok != wok || !bytes.Equal(v, w) {
			t.Fatalf("%s: Lookup(%q) = %q, %v; model %q, %v", id, k, v, ok, w, wok)
		}
	}
	if all := maps.Collect(got.All()); !maps.EqualFunc(all, want, bytes.Equal) {
		t.Fatalf("%s: All = %q; model %q", id, all, want)
	}
}

// compareReads checks every read the FSM offers against the model at
// several times around the leader clock.
func compareReads(t *rapid.T, f *FSM, m *model, now time.Time) {
	for _, at := range []time.Duration{0, time.Minute, 5 * time.Minute} {
		when := now.Add(at)
		for _, id := range propIDs {
			k := session.KeyOf(id)
			got, ok := f.Get(k, when)
			want := m.recs[k]
			if want != nil && !want.Live(when) {
				want = nil
			}
			if ok != (want != nil) || ok && !reflect.DeepEqual(got, want) {
				t.Fatalf("Get(%s, +%v) = %+v, %v; model %+v", id, at, got, ok, want)
			}
			if ok {
				compareValues(t, id, got.Values, m.vals[k])
			}
		}
		for _, o := range propOwners {
			if got, want := f.ListOwner(o, when), m.listOwner(o, when); len(got)+len(want) > 0 && !reflect.DeepEqual(got, want) {
				t.Fatalf("ListOwner(%q, +%v) = %+v, model %+v", o, at, got, want)
			}
		}
	}
	if n, size := m.totals(); f.Len() != n || f.Bytes() != int64(size) {
		t.Fatalf("Len, Bytes = %d, %d; model %d, %d", f.Len(), f.Bytes(), n, size)
	}
	var gotKeys []string
	for _, k := range f.SigningKeys() {
		gotKeys = append(gotKeys, k.ID)
	}
	var wantKeys []string
	for _, k := range m.keys {
		wantKeys = append(wantKeys, k.ID)
	}
	if !slices.Equal(gotKeys, wantKeys) {
		t.Fatalf("SigningKeys = %v, model %v", gotKeys, wantKeys)
	}
}

func TestPropertyBatchingIsDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		logs, cfg := genLog(t), genConfig(t)
		a, b := New(cfg), New(cfg)
		for _, l := range logs {
			a.Apply(l)
		}
		for rest := logs; len(rest) > 0; {
			n := rapid.IntRange(1, len(rest)).Draw(t, "batch")
			out := b.ApplyBatch(rest[:n])
			for i, o := range out {
				if r, ok := o.(*Result); !ok || r.Index != rest[i].Index {
					t.Fatalf("batch response %d = %#v", i, o)
				}
			}
			rest = rest[n:]
		}
		requireEqualState(t, a, b)
	})
}

func TestPropertySnapshotRestoreContinue(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		logs, cfg := genLog(t), genConfig(t)
		cut := rapid.IntRange(0, len(logs)).Draw(t, "cut")
		// Persist runs after further applies to check that the snapshot
		// is isolated from them.
		lag := rapid.IntRange(0, len(logs)-cut).Draw(t, "lag")
		straight, f := New(cfg), New(cfg)
		for _, l := range logs {
			straight.Apply(l)
		}
		for _, l := range logs[:cut] {
			f.Apply(l)
		}
		snap, err := f.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logs[cut : cut+lag] {
			f.Apply(l)
		}
		sink := &memSink{}
		if err := snap.Persist(sink); err != nil {
			t.Fatal(err)
		}
		snap.Release()
		g := New(cfg)
		if err := g.Restore(sink.reader()); err != nil {
			t.Fatalf("restore: %v", err)
		}
		if want := uint64(cut); g.AppliedIndex() != want {
			t.Fatalf("restored AppliedIndex = %d, want %d", g.AppliedIndex(), want)
		}
		for _, l := range logs[cut:] {
			g.Apply(l)
		}
		for _, l := range logs[cut+lag:] {
			f.Apply(l)
		}
		requireEqualState(t, straight, g)
		requireEqualState(t, straight, f)
		checkIndexes(t, g)
	})
}

type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// requireEqualState compares everything replicated: records (bit for
// bit), keyrings, and the indexes as seen through reads.
func requireEqualState(t fataler, a, b *FSM) {
	t.Helper()
	ra, rb := records(a), records(b)
	if len(ra) != len(rb) {
		t.Fatalf("%d records vs %d", len(ra), len(rb))
	}
	owners := map[string]bool{}
	for k, r := range ra {
		if !reflect.DeepEqual(r, rb[k]) {
			t.Fatalf("record %v differs:\n%+v\n%+v", k, r, rb[k])
		}
		owners[r.Owner] = true
	}
	for o := range owners {
		if la, lb := a.ListOwner(o, t0), b.ListOwner(o, t0); !reflect.DeepEqual(la, lb) {
			t.Fatalf("ListOwner(%q) differs:\n%+v\n%+v", o, la, lb)
		}
	}
	if ka, kb := a.SigningKeys(), b.SigningKeys(); !(len(ka) == 0 && len(kb) == 0) && !reflect.DeepEqual(ka, kb) {
		t.Fatalf("keyrings differ:\n%+v\n%+v", ka, kb)
	}
	if ea, eb := a.st.Load().expiry.Len(), b.st.Load().expiry.Len(); ea != eb {
		t.Fatalf("expiry index sizes %d vs %d", ea, eb)
	}
}

func records(f *FSM) map[session.Key]*session.Record {
	out := map[session.Key]*session.Record{}
	st := f.st.Load()
	for i := range st.shards {
		for k, e := range st.shards[i].m {
			out[k] = e.rec
		}
	}
	return out
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func (s *memSink) reader() *readCloser {
	return &readCloser{Reader: bytes.NewReader(s.Bytes())}
}

type readCloser struct {
	*bytes.Reader
	closed bool
}

func (r *readCloser) Close() error { r.closed = true; return nil }
