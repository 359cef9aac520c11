package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// IDBytes is the number of random bytes in a session ID (256 bits, well
// above OWASP's 64-bit entropy minimum).
const IDBytes = 32

// IDLen is the length of an ID produced by [NewID]: base64url without
// padding of [IDBytes] bytes.
const IDLen = 43

// NewID returns a new session ID: 32 bytes from crypto/rand, base64url
// encoded without padding.
func NewID() string {
	var b [IDBytes]byte
	// crypto/rand.Read never returns an error on supported platforms (it
	// crashes the program irrecoverably instead, since Go 1.24).
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Key is the SHA-256 of a session ID. Stores index records by Key, so the
// stored data (a raft log, a snapshot, a memory dump) never holds a usable
// session token.
type Key [sha256.Size]byte

// KeyOf returns the Key of id.
func KeyOf(id string) Key {
	// Hashing from a stack buffer keeps Load free of allocations: Go only
	// stack-allocates []byte(id) up to 32 bytes and IDs are 43.
	if len(id) <= 64 {
		var b [64]byte
		return sha256.Sum256(b[:copy(b[:], id)])
	}
	return sha256.Sum256([]byte(id))
}

// String returns the key as unpadded base64url, short enough for logs and
// for "list my sessions" pages.
func (k Key) String() string { return base64.RawURLEncoding.EncodeToString(k[:]) }
