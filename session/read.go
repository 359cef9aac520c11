package session

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ID returns the session ID: the secret the cookie carries. For a new
// session it is generated on first use. After [Session.Regenerate] it is
// the new ID, which becomes valid when the change is committed.
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.renameTo != "" {
		return s.renameTo
	}
	if s.status == StatusNew && s.id == "" {
		s.id = s.cfg.newID()
	}
	return s.id
}

// IsNew reports whether the session has not been stored yet: the request
// came without a valid session cookie, or its session had expired.
func (s *Session) IsNew() bool {
	s.lock()
	defer s.mu.Unlock()
	return s.status == StatusNew
}

// raw returns the encoded value of key.
func (s *Session) raw(key string) ([]byte, bool) {
	if s.status == StatusDestroyed || s.status == StatusGone {
		return nil, false
	}
	return s.lookup(key)
}

func (s *Session) decode(key string, dst any) bool {
	s.lock()
	b, ok := s.raw(key)
	s.mu.Unlock()
	return ok && s.cfg.codec().Decode(b, dst) == nil
}

// Get returns the value of key decoded into an interface value (with the
// default JSON codec: string, float64, bool, nil, []any or map[string]any),
// or nil when there is none. Prefer the typed getters or [Session.Decode].
func (s *Session) Get(key string) any {
	var v any
	s.decode(key, &v)
	return v
}

// rawValue returns the encoded value of key for a getter, and whether the
// codec is the default one (so the getter may decode it directly, without
// the allocation an interface call costs).
func (s *Session) rawValue(key string) (b []byte, ok, isJSON bool) {
	s.lock()
	b, ok = s.raw(key)
	s.mu.Unlock()
	switch s.cfg.Codec.(type) {
	case nil, JSONCodec:
		isJSON = true
	}
	return b, ok, isJSON
}

// GetString returns the string value of key, or "" when there is none or
// it is not a string.
func (s *Session) GetString(key string) string {
	b, ok, isJSON := s.rawValue(key)
	if !ok {
		return ""
	}
	if n := len(b); isJSON && n >= 2 && b[0] == '"' && b[n-1] == '"' && plainJSONBytes(b[1:n-1]) {
		return string(b[1 : n-1])
	}
	var v string
	_ = s.cfg.codec().Decode(b, &v)
	return v
}

// GetInt returns the integer value of key, or 0 when there is none or it
// is not an integer.
func (s *Session) GetInt(key string) int {
	return int(s.getInt(key, strconv.IntSize))
}

// GetInt64 returns the integer value of key (for example a counter kept
// with [Session.Incr]), or 0 when there is none or it is not an integer.
func (s *Session) GetInt64(key string) int64 {
	return s.getInt(key, 64)
}

func (s *Session) getInt(key string, bits int) int64 {
	b, ok, _ := s.rawValue(key)
	if !ok {
		return 0
	}
	// Incr stores decimal text whatever the codec.
	if n, err := strconv.ParseInt(string(b), 10, bits); err == nil {
		return n
	}
	var v int64
	if s.cfg.codec().Decode(b, &v) != nil || bits < 64 && int64(int(v)) != v {
		return 0
	}
	return v
}

// GetFloat returns the number value of key, or 0 when there is none or it
// is not a number.
func (s *Session) GetFloat(key string) float64 {
	var v float64
	s.decode(key, &v)
	return v
}

// GetBool returns the boolean value of key, or false when there is none or
// it is not a boolean.
func (s *Session) GetBool(key string) bool {
	var v bool
	s.decode(key, &v)
	return v
}

// GetBytes returns the []byte value of key, or nil when there is none or
// it is not a byte slice.
func (s *Session) GetBytes(key string) []byte {
	var v []byte
	s.decode(key, &v)
	return v
}

// GetTime returns the time.Time value of key, or the zero time when there
// is none or it is not a time.
func (s *Session) GetTime(key string) time.Time {
	var v time.Time
	s.decode(key, &v)
	return v
}

// Decode decodes the value of key into dst, a non-nil pointer. It returns
// an error wrapping [ErrNoKey] when there is no value, or the codec's error
// when the value does not fit dst.
func (s *Session) Decode(key string, dst any) error {
	s.lock()
	b, ok := s.raw(key)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoKey, key)
	}
	return s.cfg.codec().Decode(b, dst)
}

// Exists reports whether the session has a value under key.
func (s *Session) Exists(key string) bool {
	s.lock()
	defer s.mu.Unlock()
	_, ok := s.raw(key)
	return ok
}

// Keys returns the keys of the session's values, sorted.
func (s *Session) Keys() []string {
	s.lock()
	defer s.mu.Unlock()
	if s.status == StatusDestroyed || s.status == StatusGone {
		return []string{}
	}
	all := s.base.All()
	if s.owned {
		all = maps.All(s.vals)
	}
	keys := make([]string, 0, s.keyCount())
	for k := range all {
		if !strings.HasPrefix(k, reservedPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// Owner returns who the session belongs to ("" for nobody), including a
// change by [Session.SetOwner] not committed yet.
func (s *Session) Owner() string {
	s.lock()
	defer s.mu.Unlock()
	return s.owner
}
