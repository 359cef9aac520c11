package gorillastore

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/raftsession/raftsession/session"
)

// Stored keys: "s:" and the key for string keys, "g:" and the key's gob
// encoding for keys of other types. Values are gob-encoded interface
// values; an empty value is nil.
const (
	stringKeyPrefix = "s:"
	gobKeyPrefix    = "g:"
)

// snapshot is a session as stored: the encoded value under each stored
// key, and the index of the write it was read at or made by.
type snapshot struct {
	index uint64
	raw   map[string][]byte
	keys  map[string]any // stored key → the Values key it stands for
}

func (sn *snapshot) indexOrZero() uint64 {
	if sn == nil {
		return 0
	}
	return sn.index
}

// values decodes a fresh Values map, sharing nothing with the snapshot, so
// that a handler changing a value in place is seen as a change by diff.
func (sn *snapshot) values() map[any]any {
	out := make(map[any]any, len(sn.raw))
	for k, b := range sn.raw {
		v, err := decodeValue(b)
		if err == nil {
			out[sn.keys[k]] = v
		}
	}
	return out
}

func decodeRecord(rec *session.Record) (*snapshot, error) {
	sn := &snapshot{raw: map[string][]byte{}, keys: map[string]any{}}
	for k, b := range rec.Values.All() {
		var key any
		switch {
		case strings.HasPrefix(k, stringKeyPrefix):
			key = k[len(stringKeyPrefix):]
		case strings.HasPrefix(k, gobKeyPrefix):
			var err error
			if key, err = decodeValue([]byte(k[len(gobKeyPrefix):])); err != nil {
				return nil, fmt.Errorf("key %q: %w", k, err)
			}
		default:
			continue // not written by this package (the native API's keys)
		}
		sn.raw[k], sn.keys[k] = b, key
	}
	return sn, nil
}

// diff returns the snapshot vals will be once stored and the delta that
// stores it over prev (nil for a new session): a set for every key whose
// value is new or differs from prev's, a delete for every key gone.
func diff(prev *snapshot, vals map[any]any) (*snapshot, session.Delta, error) {
	next := &snapshot{raw: make(map[string][]byte, len(vals)), keys: make(map[string]any, len(vals))}
	var d session.Delta
	for key, v := range vals {
		k, err := encodeKey(key)
		if err != nil {
			return nil, d, err
		}
		next.keys[k] = key
		if old, ok := prev.rawOf(k); ok {
			if was, err := decodeValue(old); err == nil && reflect.DeepEqual(was, v) {
				next.raw[k] = old
				continue
			}
		}
		b, err := encodeValue(v)
		if err != nil {
			return nil, d, fmt.Errorf("value of %v: %w", key, err)
		}
		next.raw[k] = b
		d.Ops = append(d.Ops, session.Op{Kind: session.OpSet, Key: k, Value: b})
	}
	if prev != nil {
		for k := range prev.raw {
			if _, ok := next.raw[k]; !ok {
				d.Ops = append(d.Ops, session.Op{Kind: session.OpDelete, Key: k})
			}
		}
	}
	return next, d, nil
}

func (sn *snapshot) rawOf(k string) ([]byte, bool) {
	if sn == nil {
		return nil, false
	}
	b, ok := sn.raw[k]
	return b, ok
}

func encodeKey(key any) (string, error) {
	if s, ok := key.(string); ok {
		return stringKeyPrefix + s, nil
	}
	if key == nil {
		return "", errors.New("nil key")
	}
	b, err := encodeValue(key)
	if err != nil {
		return "", fmt.Errorf("key %v: %w", key, err)
	}
	return gobKeyPrefix + string(b), nil
}

func encodeValue(v any) ([]byte, error) {
	if v == nil {
		return []byte{}, nil
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeValue(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, nil
	}
	var v any
	err := gob.NewDecoder(bytes.NewReader(b)).Decode(&v)
	return v, err
}
