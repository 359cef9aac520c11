package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftsession/raftsession/session"
)

type fixture struct {
	store *session.MemoryStore
	cfg   *session.Config
}

func newFixture(t *testing.T, lim session.Limits) *fixture {
	t.Helper()
	st := session.NewMemoryStore(session.MemoryOptions{Limits: lim})
	t.Cleanup(func() { st.Close() })
	return &fixture{store: st, cfg: &session.Config{Store: st, Limits: lim}}
}

// request is one request's session as both sides see it: the handler's
// Session and the middleware's Handle.
type request struct {
	*session.Handle
	*session.Session
}

func openRequest(cfg *session.Config, id string, rec *session.Record, index uint64) request {
	h := session.Open(cfg, id, rec, index)
	return request{h, h.Session()}
}

// open loads id as the middleware would.
func (f *fixture) open(t *testing.T, id string, index uint64) request {
	t.Helper()
	rec, err := f.store.Load(t.Context(), id, session.LoadOptions{MinIndex: index})
	if err != nil {
		t.Fatalf("load %s: %v", id, err)
	}
	return openRequest(f.cfg, id, rec, index)
}

// create stores a session holding kv pairs and returns its ID.
func (f *fixture) create(t *testing.T, kv ...string) (string, uint64) {
	t.Helper()
	s := openRequest(f.cfg, "", nil, 0)
	for i := 0; i+1 < len(kv); i += 2 {
		must(t, s.Set(kv[i], kv[i+1]))
	}
	must(t, s.Save(t.Context()))
	return s.ID(), s.Index()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestTypedGettersRoundTrip(t *testing.T) {
	f := newFixture(t, session.Limits{})
	when := time.Date(2030, 5, 6, 7, 8, 9, 10, time.UTC)
	s := openRequest(f.cfg, "", nil, 0)
	must(t, s.Set("s", "张三 <&>"))
	must(t, s.Set("i", 42))
	must(t, s.Set("b", true))
	must(t, s.Set("bytes", []byte{0, 1, 2}))
	must(t, s.Set("t", when))
	must(t, s.Set("f", 1.5))
	must(t, s.Set("obj", map[string]int{"x": 1}))
	must(t, s.Save(t.Context()))

	// Read back through a fresh load, as the next request would.
	r := f.open(t, s.ID(), s.Index())
	if got := r.GetString("s"); got != "张三 <&>" {
		t.Errorf("GetString %q", got)
	}
	if got := r.GetInt("i"); got != 42 {
		t.Errorf("GetInt %d", got)
	}
	if got := r.GetInt64("i"); got != 42 {
		t.Errorf("GetInt64 %d", got)
	}
	if !r.GetBool("b") {
		t.Error("GetBool false")
	}
	if got := r.GetBytes("bytes"); string(got) != "\x00\x01\x02" {
		t.Errorf("GetBytes %v", got)
	}
	if got := r.GetTime("t"); !got.Equal(when) {
		t.Errorf("GetTime %v", got)
	}
	if got := r.GetFloat("f"); got != 1.5 {
		t.Errorf("GetFloat %v", got)
	}
	var obj map[string]int
	if err := r.Decode("obj", &obj); err != nil || obj["x"] != 1 {
		t.Errorf("Decode %v %v", obj, err)
	}
	if got, ok := r.Get("i").(float64); !ok || got != 42 {
		t.Errorf("Get %v", r.Get("i"))
	}
	// Wrong type or missing: zero values, and ErrNoKey from Decode.
	if r.GetInt("s") != 0 || r.GetString("i") != "" || r.GetString("missing") != "" || r.Get("missing") != nil {
		t.Error("zero values expected for wrong types and missing keys")
	}
	if err := r.Decode("missing", &obj); !errors.Is(err, session.ErrNoKey) {
		t.Errorf("Decode missing: %v", err)
	}
	if got := r.Keys(); !slices.Equal(got, []string{"b", "bytes", "f", "i", "obj", "s", "t"}) {
		t.Errorf("Keys %v", got)
	}
}

// The JSON codec's fast paths write exactly what encoding/json writes, so
// values compare equal in CompareAndSwap whichever path encoded them.
func TestJSONCodecMatchesEncodingJSON(t *testing.T) {
	for _, v := range []any{"", "plain", "a<b", `q"uote`, "back\\slash", "\n", "é", int(-7), int64(1 << 60), true, false} {
		got, err := session.JSONCodec{}.Encode(v)
		want, _ := json.Marshal(v)
		if err != nil || string(got) != string(want) {
			t.Errorf("Encode(%#v) = %s, want %s", v, got, want)
		}
	}
}

func TestLimits(t *testing.T) {
	f := newFixture(t, session.Limits{MaxBytes: 100, MaxKeys: 3, MaxValueBytes: 40, MaxKeyBytes: 10})
	s := openRequest(f.cfg, "", nil, 0)
	tests := []struct {
		name string
		key  string
		val  string
	}{
		{"value too large", "v", strings.Repeat("x", 50)},
		{"key too large", strings.Repeat("k", 11), "x"},
	}
	for _, tc := range tests {
		if err := s.Set(tc.key, tc.val); !errors.Is(err, session.ErrTooLarge) {
			t.Errorf("%s: %v, want ErrTooLarge", tc.name, err)
		}
	}
	must(t, s.Set("a", strings.Repeat("x", 30)))
	must(t, s.Set("b", strings.Repeat("x", 30)))
	if err := s.Set("c", strings.Repeat("x", 35)); !errors.Is(err, session.ErrTooLarge) {
		t.Errorf("total size: %v, want ErrTooLarge", err)
	}
	must(t, s.Set("c", "x"))
	if err := s.Set("d", "x"); !errors.Is(err, session.ErrTooLarge) {
		t.Errorf("key count: %v, want ErrTooLarge", err)
	}
	if err := s.Set("", "x"); !errors.Is(err, session.ErrInvalid) {
		t.Errorf("empty key: %v, want ErrInvalid", err)
	}
	must(t, s.Save(t.Context()))
}

// A Config without Limits checks the store's; a field it sets is
// stricter and wins, the others stay the store's.
func TestConfigLimitsDefaultToTheStore(t *testing.T) {
	st := session.NewMemoryStore(session.MemoryOptions{Limits: session.Limits{MaxKeys: 2, MaxValueBytes: 8}})
	t.Cleanup(func() { st.Close() })
	tests := []struct {
		name    string
		limits  session.Limits
		keys    int    // keys set before
		value   string // its JSON encoding adds two bytes
		wantErr error
	}{
		{"store's value limit", session.Limits{}, 0, "1234567", session.ErrTooLarge},
		{"fits the store's", session.Limits{}, 0, "123456", nil},
		{"stricter value limit", session.Limits{MaxValueBytes: 4}, 0, "123", session.ErrTooLarge},
		{"store's key count", session.Limits{MaxValueBytes: 4}, 2, "1", session.ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := session.Open(&session.Config{Store: st, Limits: tc.limits}, "", nil, 0).Session()
			for i := range tc.keys {
				must(t, s.Set(strconv.Itoa(i), 1))
			}
			if err := s.Set("k", tc.value); !errors.Is(err, tc.wantErr) {
				t.Errorf("Set of %d bytes after %d keys: got %v, want %v", len(tc.value), tc.keys, err, tc.wantErr)
			}
		})
	}
}

func TestPopIsFlash(t *testing.T) {
	f := newFixture(t, session.Limits{})
	id, idx := f.create(t, "flash", "saved!")
	s := f.open(t, id, idx)
	if got := s.PopString("flash"); got != "saved!" {
		t.Fatalf("PopString %q", got)
	}
	if s.Exists("flash") || s.PopString("flash") != "" {
		t.Error("flash still there after Pop")
	}
	must(t, s.Save(t.Context()))
	if f.open(t, id, s.Index()).Exists("flash") {
		t.Error("flash still stored")
	}
	if s2 := f.open(t, id, s.Index()); s2.PopString("absent") != "" || s2.Modified() {
		t.Error("popping an absent key modified the session")
	}
}

// Incr and CompareAndSwap commit at once, together with pending sets.
func TestIncrAndCASCommitPending(t *testing.T) {
	f := newFixture(t, session.Limits{})
	id, idx := f.create(t)
	s := f.open(t, id, idx)
	must(t, s.Set("pending", "x"))
	n, err := s.Incr(t.Context(), "n", 5)
	if err != nil || n != 5 {
		t.Fatalf("Incr %d %v", n, err)
	}
	if s.Modified() {
		t.Error("pending set not committed with Incr")
	}
	if got := f.open(t, id, s.Index()); got.GetString("pending") != "x" || got.GetInt64("n") != 5 {
		t.Errorf("stored pending %q n %d", got.GetString("pending"), got.GetInt64("n"))
	}
	ok, err := s.CompareAndSwap(t.Context(), "n", 5, 10)
	if !ok || err != nil || s.GetInt("n") != 10 {
		t.Fatalf("CAS 5→10: %v %v, n %d", ok, err, s.GetInt("n"))
	}
	must(t, s.Set("later", "y"))
	ok, err = s.CompareAndSwap(t.Context(), "n", 5, 11)
	if ok || err != nil {
		t.Fatalf("stale CAS: %v %v, want false nil", ok, err)
	}
	if !s.Modified() {
		t.Error("a failed CAS dropped the pending set")
	}
	if ok, _ := s.CompareAndSwap(t.Context(), "fresh", nil, "v"); !ok {
		t.Error("CAS from absent failed")
	}
	must(t, s.Set("word", "abc"))
	if _, err := s.Incr(t.Context(), "word", 1); !errors.Is(err, session.ErrNotInteger) {
		t.Errorf("Incr of a string: %v", err)
	}
}

// Concurrent handles on one session (as concurrent requests hold) never
// lose increments, and sets of different keys both survive.
func TestConcurrentHandles(t *testing.T) {
	f := newFixture(t, session.Limits{})
	id, idx := f.create(t)
	var wg sync.WaitGroup
	handles := make([]request, 32)
	for i := range handles {
		handles[i] = f.open(t, id, idx)
	}
	for i, s := range handles {
		wg.Go(func() {
			if _, err := s.Incr(context.Background(), "n", 1); err != nil {
				t.Error(err)
			}
			if err := s.Set("k"+strings.Repeat("x", i), "v"); err != nil {
				t.Error(err)
			}
			if err := s.Save(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s := f.open(t, id, 0)
	if s.GetInt("n") != 32 || len(s.Keys()) != 33 {
		t.Errorf("n %d keys %d, want 32 and 33", s.GetInt("n"), len(s.Keys()))
	}
}

// One handle used by several goroutines of one request (run with -race).
func TestHandleSafeForGoroutines(t *testing.T) {
	f := newFixture(t, session.Limits{})
	id, idx := f.create(t)
	s := f.open(t, id, idx)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			k := string(rune('a' + i))
			_ = s.Set(k, i)
			_ = s.GetInt(k)
			_ = s.Keys()
			_, _ = s.Incr(context.Background(), "n", 1)
		})
	}
	wg.Wait()
	must(t, s.Save(t.Context()))
	if got := f.open(t, id, s.Index()); got.GetInt("n") != 8 || len(got.Keys()) != 9 {
		t.Errorf("n %d keys %v", got.GetInt("n"), got.Keys())
	}
}

func TestRegenerateKeepsDataAndKillsOldID(t *testing.T) {
	f := newFixture(t, session.Limits{})
	id, idx := f.create(t, "cart", "3")
	s := f.open(t, id, idx)
	must(t, s.Regenerate())
	must(t, s.Set("user", "alice"))
	must(t, s.SetOwner("user:alice"))
	newID := s.ID()
	if newID == id {
		t.Fatal("ID unchanged")
	}
	must(t, s.Save(t.Context()))
	if _, err := f.store.Load(t.Context(), id, session.LoadOptions{}); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("old ID loads: %v", err)
	}
	got := f.open(t, newID, s.Index())
	if got.GetString("cart") != "3" || got.GetString("user") != "alice" || got.Owner() != "user:alice" {
		t.Errorf("after regenerate: keys %v owner %q", got.Keys(), got.Owner())
	}
}

func TestRegenerateEmpty(t *testing.T) {
	f := newFixture(t, session.Limits{})
	id, idx := f.create(t, "cart", "3")
	s := f.open(t, id, idx)
	must(t, s.SetOwner("user:alice"))
	must(t, s.SetPersist(true))
	must(t, s.Save(t.Context()))
	must(t, s.RegenerateEmpty())
	must(t, s.Save(t.Context()))
	got := f.open(t, s.ID(), s.Index())
	if s.ID() == id || len(got.Keys()) != 0 || got.Owner() != "" || got.Persistent() {
		t.Errorf("id changed %v, keys %v, owner %q, persistent %v", s.ID() != id, got.Keys(), got.Owner(), got.Persistent())
	}
}

func TestDestroy(t *testing.T) {
	f := newFixture(t, session.Limits{})
	id, idx := f.create(t, "a", "1")
	s := f.open(t, id, idx)
	must(t, s.Destroy(t.Context()))
	if s.Status() != session.StatusDestroyed {
		t.Errorf("status %v", s.Status())
	}
	if err := s.Set("a", 2); !errors.Is(err, session.ErrDestroyed) {
		t.Errorf("Set after Destroy: %v", err)
	}
	if _, err := f.store.Load(t.Context(), id, session.LoadOptions{}); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("destroyed session loads: %v", err)
	}
	must(t, s.RegenerateEmpty()) // a fresh session after logout
	if s.Status() != session.StatusNew || s.Set("a", 1) != nil {
		t.Errorf("after RegenerateEmpty: %v", s.Status())
	}
}

// A handle whose session another request destroyed cannot resurrect it.
func TestGoneAfterConcurrentDestroy(t *testing.T) {
	f := newFixture(t, session.Limits{})
	id, idx := f.create(t, "a", "1")
	slow := f.open(t, id, idx)
	must(t, f.open(t, id, idx).Destroy(t.Context()))
	must(t, slow.Set("b", "2"))
	committed, err := slow.CommitForResponse(t.Context(), false, false)
	if committed || err != nil || slow.Status() != session.StatusGone {
		t.Fatalf("CommitForResponse: %v %v status %v, want false nil gone", committed, err, slow.Status())
	}
	if n, _ := f.store.Count(t.Context()); n != 0 {
		t.Errorf("%d sessions stored, want 0", n)
	}
	if err := slow.Save(t.Context()); !errors.Is(err, session.ErrDestroyed) {
		t.Errorf("Save after gone: %v", err)
	}
}

// Reload shows other requests' commits and keeps this request's pending
// changes on top.
func TestReloadRebasesPending(t *testing.T) {
	f := newFixture(t, session.Limits{})
	id, idx := f.create(t, "a", "1")
	s := f.open(t, id, idx)
	must(t, s.Set("mine", "x"))
	other := f.open(t, id, idx)
	must(t, other.Set("theirs", "y"))
	must(t, other.Save(t.Context()))
	must(t, s.Reload(t.Context()))
	if got := s.Keys(); !slices.Equal(got, []string{"a", "mine", "theirs"}) {
		t.Errorf("after reload %v", got)
	}
	if !s.Modified() {
		t.Error("reload dropped the pending change")
	}
}

func TestTimeoutsAndPersist(t *testing.T) {
	f := newFixture(t, session.Limits{})
	s := openRequest(f.cfg, "", nil, 0)
	if s.Persistent() {
		t.Error("persistent by default")
	}
	must(t, s.RememberMe(30*24*time.Hour))
	must(t, s.Save(t.Context()))
	rec, err := f.store.Load(t.Context(), s.ID(), session.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.IdleTimeout != 30*24*time.Hour || rec.AbsoluteDeadline.Sub(rec.Created) != 30*24*time.Hour {
		t.Errorf("idle %v lifetime %v", rec.IdleTimeout, rec.AbsoluteDeadline.Sub(rec.Created))
	}
	got := openRequest(f.cfg, s.ID(), rec, s.Index())
	if !got.Persistent() || len(got.Keys()) != 0 {
		t.Errorf("persistent %v, keys %v (the flag must stay hidden)", got.Persistent(), got.Keys())
	}
	must(t, got.Clear())
	if !got.Persistent() {
		t.Error("Clear dropped the cookie choice")
	}
	if err := got.Set("\x00persist", "0"); !errors.Is(err, session.ErrInvalid) {
		t.Errorf("reserved key: %v", err)
	}
}

func TestOwnerListAndDestroy(t *testing.T) {
	f := newFixture(t, session.Limits{})
	var handles []request
	for range 3 {
		s := openRequest(f.cfg, "", nil, 0)
		must(t, s.SetOwner("user:1"))
		must(t, s.Save(t.Context()))
		handles = append(handles, s)
	}
	other := openRequest(f.cfg, "", nil, 0)
	must(t, other.SetOwner("user:2"))
	must(t, other.Save(t.Context()))

	cur := handles[1]
	list, err := cur.ListOwned(t.Context())
	if err != nil || len(list) != 3 {
		t.Fatalf("ListOwned: %d %v", len(list), err)
	}
	currents := 0
	for _, o := range list {
		if o.Current {
			currents++
			if o.Key != session.KeyOf(cur.ID()) {
				t.Error("wrong session marked current")
			}
		}
	}
	if currents != 1 {
		t.Errorf("%d sessions marked current", currents)
	}
	n, err := cur.DestroyOwned(t.Context(), true)
	if err != nil || n != 2 {
		t.Fatalf("DestroyOwned(keep): %d %v", n, err)
	}
	if cur.Status() != session.StatusStored {
		t.Error("kept session destroyed")
	}
	if list, _ := cur.ListOwned(t.Context()); len(list) != 1 || !list[0].Current {
		t.Errorf("after log out others: %v", list)
	}
	if n, err := cur.DestroyOwned(t.Context(), false); err != nil || n != 1 || cur.Status() != session.StatusDestroyed {
		t.Errorf("DestroyOwned(all): %d %v %v", n, err, cur.Status())
	}
	if c, _ := f.store.Count(t.Context()); c != 1 {
		t.Errorf("%d sessions left, want user:2's only", c)
	}
	if _, err := openRequest(f.cfg, "", nil, 0).DestroyOwned(t.Context(), false); !errors.Is(err, session.ErrInvalid) {
		t.Errorf("DestroyOwned without owner: %v", err)
	}
}

// A new session that the handler never changed is not stored unless asked.
func TestCommitForResponseRules(t *testing.T) {
	f := newFixture(t, session.Limits{})
	s := openRequest(f.cfg, "", nil, 0)
	if ok, err := s.CommitForResponse(t.Context(), false, false); ok || err != nil {
		t.Errorf("unchanged new session committed: %v %v", ok, err)
	}
	if ok, err := s.CommitForResponse(t.Context(), false, true); !ok || err != nil || s.Status() != session.StatusStored {
		t.Errorf("SaveUninitialized: %v %v %v", ok, err, s.Status())
	}
	if ok, _ := s.CommitForResponse(t.Context(), false, false); ok {
		t.Error("unchanged stored session committed")
	}
	before := s.Index()
	if ok, _ := s.CommitForResponse(t.Context(), true, false); !ok || s.Index() <= before {
		t.Error("touch did not commit")
	}
}
