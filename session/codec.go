package session

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Codec turns the values a handler stores with [Session.Set] into the bytes
// a [Record] holds, and back. Encode must be deterministic (the same value
// always gives the same bytes), because [Session.CompareAndSwap] compares
// encoded bytes. A Codec is used concurrently and must be safe for that.
//
// Values written by [Session.Incr] are decimal integers as text, which is
// their JSON encoding; a Codec that is not JSON-compatible should still
// decode them into integer destinations.
type Codec interface {
	Encode(v any) ([]byte, error)
	Decode(data []byte, dst any) error
}

// JSONCodec is the default [Codec]: encoding/json, with allocation-light
// fast paths for strings, integers and booleans that produce exactly the
// bytes encoding/json would. JSON keeps sessions readable by any language
// and version of the application; it cannot round-trip Go-specific types
// (a value read back with [Session.Get] is a string, float64, bool, nil,
// []any or map[string]any, as in express-session).
type JSONCodec struct{}

// Encode returns the JSON encoding of v.
func (JSONCodec) Encode(v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		if plainJSONString(v) {
			b := make([]byte, 0, len(v)+2)
			b = append(b, '"')
			b = append(b, v...)
			return append(b, '"'), nil
		}
	case int:
		return strconv.AppendInt(nil, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(nil, v, 10), nil
	case bool:
		if v {
			return []byte("true"), nil
		}
		return []byte("false"), nil
	}
	return json.Marshal(v)
}

// Decode parses data into dst, which must be a non-nil pointer.
func (JSONCodec) Decode(data []byte, dst any) error {
	switch d := dst.(type) {
	case *string:
		if n := len(data); n >= 2 && data[0] == '"' && data[n-1] == '"' && plainJSONBytes(data[1:n-1]) {
			*d = string(data[1 : n-1])
			return nil
		}
	case *int64:
		if n, err := strconv.ParseInt(string(data), 10, 64); err == nil {
			*d = n
			return nil
		}
	case *int:
		if n, err := strconv.ParseInt(string(data), 10, strconv.IntSize); err == nil {
			*d = int(n)
			return nil
		}
	case *bool:
		switch string(data) {
		case "true":
			*d = true
			return nil
		case "false":
			*d = false
			return nil
		}
	}
	return json.Unmarshal(data, dst)
}

// plainJSONString reports whether encoding/json writes s as itself between
// quotes: printable ASCII without the characters it escapes.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !plainJSONByte(s[i]) {
			return false
		}
	}
	return true
}

// plainJSONBytes reports whether b, the inside of a JSON string, decodes
// to itself: no escapes, no control characters, valid UTF-8.
func plainJSONBytes(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return utf8.Valid(b)
}

func plainJSONByte(c byte) bool {
	return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
}
