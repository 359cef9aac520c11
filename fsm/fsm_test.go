package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/raftsession/raftsession/session"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is a fixed leader clock; tests move it explicitly.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)

// node applies commands to an FSM as raft would, numbering entries and
// stamping them with a controllable leader clock.
type node struct {
	tb    testing.TB
	f     *FSM
	index uint64
	now   time.Time
}

func newNode(tb testing.TB) *node {
	return &node{tb: tb, f: New(Config{}), now: t0}
}

func (n *node) entry(data []byte) *raft.Log {
	n.index++
	return &raft.Log{Index: n.index, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: n.now}
}

func (n *node) apply(data []byte) *Result {
	n.tb.Helper()
	r, ok := n.f.Apply(n.entry(data)).(*Result)
	if !ok {
		n.tb.Fatalf("Apply returned %T, want *Result", r)
	}
	if r.Index != n.index {
		n.tb.Fatalf("Result.Index = %d, want %d", r.Index, n.index)
	}
	return r
}

func (n *node) change(c *session.Change) *Result {
	n.tb.Helper()
	b, err := EncodeChange(c)
	if err != nil {
		n.tb.Fatalf("EncodeChange(%+v): %v", c, err)
	}
	return n.apply(b)
}

func (n *node) get(id string) (*session.Record, bool) {
	return n.f.Get(session.KeyOf(id), n.now)
}

func create(id string, ops ...session.Op) *session.Change {
	return &session.Change{ID: id, Create: true, Delta: session.Delta{
		Ops: ops, IdleTimeout: time.Hour, Lifetime: 24 * time.Hour}}
}

// testSecret is s padded to the shortest signing key the FSM accepts.
func testSecret(s string) []byte { return []byte(fmt.Sprintf("%-*s", MinSigningKeyLen, s)) }

func set(k, v string) session.Op { return session.Op{Kind: session.OpSet, Key: k, Value: []byte(v)} }

func mustOK(tb testing.TB, r *Result) {
	tb.Helper()
	if r.Err != nil {
		tb.Fatalf("apply at %d: unexpected error %v", r.Index, r.Err)
	}
}

func TestCommands(t *testing.T) {
	type step struct {
		change        *session.Change
		raw           []byte // used instead of change when set
		advance       time.Duration
		wantErr       error
		wantVals      []int64
		wantDestroyed int
	}
	owned := func(id, owner string) *session.Change {
		c := create(id)
		c.SetOwner, c.Owner = true, owner
		return c
	}
	tests := []struct {
		name  string
		steps []step
		live  []string // IDs that must be readable afterwards
		gone  []string // IDs that must not be
	}{
		{name: "create", steps: []step{{change: create("a", set("k", "v"))}}, live: []string{"a"}},
		{name: "create existing", steps: []step{{change: create("a")}, {change: create("a"), wantErr: session.ErrExists}}, live: []string{"a"}},
		{name: "create over expired", steps: []step{{change: create("a")}, {advance: 2 * time.Hour, change: create("a")}}, live: []string{"a"}},
		{name: "update missing", steps: []step{{change: &session.Change{ID: "a", Delta: session.Delta{Ops: []session.Op{set("k", "v")}}}, wantErr: session.ErrNotFound}}, gone: []string{"a"}},
		{name: "update expired not yet removed", steps: []step{
			{change: create("a")},
			{advance: time.Hour, change: &session.Change{ID: "a", Delta: session.Delta{Ops: []session.Op{set("k", "v")}}}, wantErr: session.ErrNotFound},
		}, gone: []string{"a"}},
		{name: "update just before idle deadline", steps: []step{
			{change: create("a")},
			{advance: time.Hour - time.Nanosecond, change: &session.Change{ID: "a", Delta: session.Delta{Ops: []session.Op{set("k", "v")}}}},
		}, live: []string{"a"}},
		{name: "incr and cas results", steps: []step{
			{change: create("a", session.Op{Kind: session.OpIncr, Key: "n", Delta: 5})},
			{change: &session.Change{ID: "a", Delta: session.Delta{Ops: []session.Op{
				{Kind: session.OpIncr, Key: "n", Delta: -2},
				{Kind: session.OpCAS, Key: "c", Value: []byte("x")},
			}}}, wantVals: []int64{3, 0}},
		}, live: []string{"a"}},
		{name: "failed cas rejects all", steps: []step{
			{change: create("a", set("c", "1"))},
			{change: &session.Change{ID: "a", Delta: session.Delta{Ops: []session.Op{
				set("k", "v"), {Kind: session.OpCAS, Key: "c", Old: []byte("2"), Value: []byte("3")},
			}}}, wantErr: session.ErrCASFailed},
		}, live: []string{"a"}},
		{name: "not integer", steps: []step{
			{change: create("a", set("n", "x"))},
			{change: &session.Change{ID: "a", Delta: session.Delta{Ops: []session.Op{{Kind: session.OpIncr, Key: "n", Delta: 1}}}}, wantErr: session.ErrNotInteger},
		}, live: []string{"a"}},
		{name: "too large", steps: []step{
			{change: create("a", set("k", string(make([]byte, 65<<10)))), wantErr: session.ErrTooLarge},
		}, gone: []string{"a"}},
		{name: "touch", steps: []step{{change: create("a")}, {change: &session.Change{ID: "a"}}}, live: []string{"a"}},
		{name: "touch missing", steps: []step{{change: &session.Change{ID: "a"}, wantErr: session.ErrNotFound}}},
		{name: "destroy", steps: []step{{change: create("a")}, {change: &session.Change{ID: "a", Destroy: true}, wantDestroyed: 1}}, gone: []string{"a"}},
		{name: "destroy is idempotent", steps: []step{{change: &session.Change{ID: "a", Destroy: true}}}, gone: []string{"a"}},
		{name: "destroy expired counts nothing", steps: []step{
			{change: create("a")}, {advance: 2 * time.Hour, change: &session.Change{ID: "a", Destroy: true}},
		}, gone: []string{"a"}},
		{name: "rename", steps: []step{
			{change: create("a", set("k", "v"))},
			{change: &session.Change{ID: "a", RenameTo: "b"}},
		}, live: []string{"b"}, gone: []string{"a"}},
		{name: "rename missing source", steps: []step{{change: &session.Change{ID: "a", RenameTo: "b"}, wantErr: session.ErrNotFound}}, gone: []string{"a", "b"}},
		{name: "rename onto live target", steps: []step{
			{change: create("a")}, {change: create("b")},
			{change: &session.Change{ID: "a", RenameTo: "b"}, wantErr: session.ErrExists},
		}, live: []string{"a", "b"}},
		{name: "destroy owner except one", steps: []step{
			{change: owned("a", "u")}, {change: owned("b", "u")}, {change: owned("c", "u")}, {change: owned("d", "v")},
			{raw: EncodeDestroyOwner("u", "b"), wantDestroyed: 2},
		}, live: []string{"b", "d"}, gone: []string{"a", "c"}},
		{name: "destroy owner none", steps: []step{{raw: EncodeDestroyOwner("nobody", "")}}},
		{name: "expire", steps: []step{
			{change: create("a")},
			{advance: 30 * time.Minute, change: create("b")},
			{raw: EncodeExpire(t0.Add(time.Hour)), wantDestroyed: 1},
		}, live: []string{"b"}, gone: []string{"a"}},
		{name: "malformed", steps: []step{{raw: []byte{1, 200}, wantErr: session.ErrInvalid}}},
		{name: "invalid create", steps: []step{{raw: mustEncode(&Command{Kind: KindCreate, Key: session.KeyOf("a")}), wantErr: session.ErrInvalid}}, gone: []string{"a"}},
		{name: "noop", steps: []step{{raw: EncodeNoop()}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			for i, s := range tc.steps {
				n.now = n.now.Add(s.advance)
				var r *Result
				if s.raw != nil {
					r = n.apply(s.raw)
				} else {
					r = n.change(s.change)
				}
				switch {
				case s.wantErr == nil && r.Err != nil:
					t.Fatalf("step %d: got error %v, want none", i, r.Err)
				case s.wantErr != nil && !errors.Is(r.Err, s.wantErr):
					t.Fatalf("step %d: got error %v, want %v", i, r.Err, s.wantErr)
				}
				if s.wantVals != nil && !slices.Equal(r.Values, s.wantVals) {
					t.Fatalf("step %d: got values %v, want %v", i, r.Values, s.wantVals)
				}
				if r.Destroyed != s.wantDestroyed {
					t.Fatalf("step %d: got destroyed %d, want %d", i, r.Destroyed, s.wantDestroyed)
				}
			}
			for _, id := range tc.live {
				if _, ok := n.get(id); !ok {
					t.Errorf("%q: not found, want live", id)
				}
			}
			for _, id := range tc.gone {
				if r, ok := n.get(id); ok {
					t.Errorf("%q: got %+v, want not found", id, r)
				}
			}
			checkIndexes(t, n.f)
		})
	}
}

func mustEncode(c *Command) []byte { return c.appendTo(nil) }

func TestRecordFields(t *testing.T) {
	n := newNode(t)
	c := create("a", set("k", "v"))
	c.SetOwner, c.Owner = true, "user:1"
	mustOK(t, n.change(c))
	created := n.now
	n.now = n.now.Add(time.Minute)
	mustOK(t, n.change(&session.Change{ID: "a", RenameTo: "b", Delta: session.Delta{Ops: []session.Op{set("x", "y")}}}))
	r, ok := n.get("b")
	if !ok {
		t.Fatal("renamed record not found")
	}
	if r.Version != n.index {
		t.Errorf("Version = %d, want %d", r.Version, n.index)
	}
	if !r.Created.Equal(created) || !r.LastSeen.Equal(n.now) {
		t.Errorf("Created, LastSeen = %v, %v; want %v, %v", r.Created, r.LastSeen, created, n.now)
	}
	if string(r.Values.Get("k")) != "v" || string(r.Values.Get("x")) != "y" || r.Owner != "user:1" {
		t.Errorf("record = %+v", r)
	}
	if got := n.f.ListOwner("user:1", n.now); len(got) != 1 || got[0].Key != session.KeyOf("b") {
		t.Errorf("ListOwner = %+v, want the renamed session", got)
	}
	if n.f.Len() != 1 {
		t.Errorf("Len = %d, want 1", n.f.Len())
	}
}

func TestGetNeverReturnsExpired(t *testing.T) {
	n := newNode(t)
	mustOK(t, n.change(create("a")))
	k := session.KeyOf("a")
	if _, ok := n.f.Get(k, t0.Add(time.Hour-1)); !ok {
		t.Fatal("record missing before its deadline")
	}
	if _, ok := n.f.Get(k, t0.Add(time.Hour)); ok {
		t.Fatal("record returned at its deadline")
	}
	if got := n.f.ListOwner("", t0); got != nil {
		t.Fatalf("ListOwner(\"\") = %v, want nil", got)
	}
}

func TestListOwnerOrder(t *testing.T) {
	n := newNode(t)
	for _, id := range []string{"c", "a", "b"} {
		c := create(id)
		c.SetOwner, c.Owner = true, "u"
		mustOK(t, n.change(c))
		n.now = n.now.Add(time.Second)
	}
	// Moving a session to another owner removes it from the first list.
	mustOK(t, n.change(&session.Change{ID: "a", Delta: session.Delta{SetOwner: true, Owner: "w"}}))
	got := n.f.ListOwner("u", n.now)
	want := []session.Key{session.KeyOf("c"), session.KeyOf("b")}
	if len(got) != len(want) {
		t.Fatalf("got %d sessions, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Key != want[i] {
			t.Errorf("session %d: got %v, want %v", i, got[i].Key, want[i])
		}
	}
	if got := n.f.ListOwner("u", t0.Add(2*time.Hour)); len(got) != 0 {
		t.Errorf("ListOwner after expiry = %v, want none", got)
	}
	checkIndexes(t, n.f)
}

func TestSigningKeys(t *testing.T) {
	n := newNode(t)
	steps := []struct {
		cmd     []byte
		wantErr error
		want    []string
	}{
		{EncodeRetireSigningKey("k1"), session.ErrNotFound, nil},
		{EncodeAddSigningKey("k1", testSecret("s1")), nil, []string{"k1"}},
		{EncodeAddSigningKey("k1", testSecret("s1")), session.ErrExists, []string{"k1"}},
		{EncodeAddSigningKey("", testSecret("s")), session.ErrInvalid, []string{"k1"}},
		{EncodeAddSigningKey("k2", nil), session.ErrInvalid, []string{"k1"}},
		// A short key would let a guesser sign cookies: refused.
		{EncodeAddSigningKey("k2", []byte("s2")), session.ErrInvalid, []string{"k1"}},
		{EncodeAddSigningKey("k2", testSecret("s2")[:MinSigningKeyLen-1]), session.ErrInvalid, []string{"k1"}},
		{EncodeAddSigningKey("k2", testSecret("s2")), nil, []string{"k2", "k1"}},
		{EncodeRetireSigningKey("k2"), session.ErrInvalid, []string{"k2", "k1"}},
		{EncodeRetireSigningKey("k1"), nil, []string{"k2"}},
	}
	for i, s := range steps {
		changed := n.f.KeyringChanged()
		r := n.apply(s.cmd)
		if !errors.Is(r.Err, s.wantErr) || (s.wantErr == nil) != (r.Err == nil) {
			t.Fatalf("step %d: got error %v, want %v", i, r.Err, s.wantErr)
		}
		select {
		case <-changed:
			if s.wantErr != nil {
				t.Errorf("step %d: a rejected command signalled a keyring change", i)
			}
		default:
			if s.wantErr == nil {
				t.Errorf("step %d: the keyring changed without a signal", i)
			}
		}
		var ids []string
		for _, k := range n.f.SigningKeys() {
			ids = append(ids, k.ID)
		}
		if !slices.Equal(ids, s.want) {
			t.Fatalf("step %d: keys %v, want %v", i, ids, s.want)
		}
	}
	keys := n.f.SigningKeys()
	if string(keys[0].Secret) != string(testSecret("s2")) || !keys[0].Added.Equal(t0) {
		t.Errorf("primary = %+v", keys[0])
	}
	keys[0].Secret[0] = 'X'
	if string(n.f.SigningKeys()[0].Secret) != string(testSecret("s2")) {
		t.Error("SigningKeys shares its secrets with the state")
	}
}

func TestApplyBatchSkipsNonCommands(t *testing.T) {
	n := newNode(t)
	enc, _ := EncodeChange(create("a"))
	logs := []*raft.Log{
		{Index: 1, Type: raft.LogConfiguration, Data: []byte("not a command")},
		n.entry(nil), // placeholder, replaced below to keep indexes in order
		{Index: 3, Type: raft.LogNoop},
		{Index: 4, Type: raft.LogBarrier},
	}
	logs[1] = &raft.Log{Index: 2, Type: raft.LogCommand, Data: enc, AppendedAt: t0}
	out := n.f.ApplyBatch(logs)
	if len(out) != len(logs) {
		t.Fatalf("got %d responses, want %d", len(out), len(logs))
	}
	for i, o := range out {
		if i == 1 {
			if r, ok := o.(*Result); !ok || r.Err != nil || r.Index != 2 {
				t.Fatalf("response 1 = %#v, want success at 2", o)
			}
			continue
		}
		if o != nil {
			t.Errorf("response %d = %#v, want nil", i, o)
		}
	}
	if got := n.f.AppliedIndex(); got != 4 {
		t.Errorf("AppliedIndex = %d, want 4", got)
	}
	if out := n.f.ApplyBatch(nil); len(out) != 0 {
		t.Errorf("ApplyBatch(nil) = %v", out)
	}
	if r := n.f.Apply(&raft.Log{Index: 5, Type: raft.LogConfiguration}); r != nil {
		t.Errorf("Apply(configuration) = %#v, want nil", r)
	}
	if got := n.f.AppliedIndex(); got != 5 {
		t.Errorf("AppliedIndex = %d, want 5", got)
	}
}

func TestApplyNeverUsesLocalClock(t *testing.T) {
	// A leader in the far past: if Apply looked at the local clock the
	// record would be stamped "now" instead of at the entry's time.
	n := newNode(t)
	n.now = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	mustOK(t, n.change(create("a")))
	r, ok := n.f.Get(session.KeyOf("a"), n.now)
	if !ok || !r.Created.Equal(n.now) {
		t.Fatalf("Get = %+v, %v; want a record created at %v", r, ok, n.now)
	}
}

func TestMonotonicClockIgnored(t *testing.T) {
	// The leader's AppendedAt carries a monotonic reading, a follower's
	// does not; both must store identical records.
	leader, follower := newNode(t), newNode(t)
	now := time.Now()
	leader.now, follower.now = now, now.Round(0).In(time.FixedZone("X", 3600))
	for _, n := range []*node{leader, follower} {
		mustOK(t, n.change(create("a", set("k", "v"))))
	}
	requireEqualState(t, leader.f, follower.f)
}

func TestShardFillsACacheLine(t *testing.T) {
	if got := unsafe.Sizeof(shard{}); got != 64 {
		t.Errorf("shard is %d bytes, want 64: readers on neighbouring shards would share cache lines", got)
	}
}

// checkIndexes verifies that the expiry and owner indexes describe exactly
// the records held.
func checkIndexes(tb fataler, f *FSM) {
	tb.Helper()
	st := f.st.Load()
	recs := map[session.Key]*session.Record{}
	expAt := map[session.Key]int64{}
	for i := range st.shards {
		for k, e := range st.shards[i].m {
			if shardOf(&k) != i {
				tb.Fatalf("key %v in shard %d, want %d", k, i, shardOf(&k))
			}
			recs[k], expAt[k] = e.rec, e.expAt
		}
	}
	if int(st.count.Load()) != len(recs) {
		tb.Fatalf("count = %d, records = %d", st.count.Load(), len(recs))
	}
	var size int64
	for _, r := range recs {
		size += int64(r.Size())
	}
	if st.bytes.Load() != size {
		tb.Fatalf("bytes = %d, records hold %d", st.bytes.Load(), size)
	}
	if st.expiry.Len() != len(recs) {
		tb.Fatalf("expiry index has %d items, records = %d", st.expiry.Len(), len(recs))
	}
	st.expiry.Ascend(func(it expItem) bool {
		r := recs[it.key]
		if r == nil || it.at != expAt[it.key] || it.at > nanos(r.Deadline()) {
			tb.Fatalf("expiry item %v does not match record %+v (entry at %d)", it, r, expAt[it.key])
		}
		return true
	})
	owned := 0
	for owner, keys := range st.owners {
		for _, k := range keys {
			if r := recs[k]; r == nil || r.Owner != owner {
				tb.Fatalf("owner index %q lists %v, record %+v", owner, k, r)
			}
			owned++
		}
	}
	want := 0
	for _, r := range recs {
		if r.Owner != "" {
			want++
		}
	}
	if owned != want {
		tb.Fatalf("owner index lists %d sessions, %d have an owner", owned, want)
	}
}

func TestResealSigningKeyKeepsPlaceAndAge(t *testing.T) {
	n := newNode(t)
	a, b := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	for _, cmd := range [][]byte{EncodeAddSigningKey("k1", a), EncodeAddSigningKey("k2", a)} {
		if r := n.apply(cmd); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	before := n.f.SigningKeys()
	if r := n.apply(EncodeResealSigningKey("k1", b)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := n.apply(EncodeResealSigningKey("k9", b)); !errors.Is(r.Err, session.ErrNotFound) {
		t.Fatalf("reseal of a missing key: got %v, want ErrNotFound", r.Err)
	}
	after := n.f.SigningKeys()
	if len(after) != 2 || after[1].ID != "k1" || !after[1].Added.Equal(before[1].Added) {
		t.Fatalf("keyring after reseal = %+v, want k1 in second place with its age", after)
	}
	if !bytes.Equal(after[1].Secret, b) || !bytes.Equal(before[1].Secret, a) || !bytes.Equal(after[0].Secret, a) {
		t.Fatal("reseal changed the wrong secret, or the keyring read before it")
	}
}
