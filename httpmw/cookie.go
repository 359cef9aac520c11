package httpmw

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// The cookie value is "<id>.<index>.<mac>": the session ID, the decimal
// store index of the client's last acknowledged write (the read-your-writes
// token), and the unpadded base64url HMAC-SHA256 of "<name>=<id>.<index>"
// under one of the secrets. Binding the cookie name stops a value minted
// for one cookie from being replayed under another.
const (
	macLen       = sha256.Size
	macTextLen   = 43 // base64url of 32 bytes, no padding
	maxIndexLen  = 20 // digits of the largest uint64
	maxCookieLen = maxIDLen + 1 + maxIndexLen + 1 + macTextLen
)

// cookieCodec signs and verifies cookie values. It is safe for concurrent
// use and verifies without allocating.
type cookieCodec struct {
	name string
	keys []*macKey // keys[0] signs
}

// macKey pools HMAC states of one secret: building an HMAC costs more than
// computing one over a short cookie.
type macKey struct{ pool sync.Pool }

type macState struct {
	h   hash.Hash
	buf []byte
	sum [macLen]byte
}

func newCookieCodec(name string, secrets [][]byte) *cookieCodec {
	c := &cookieCodec{name: name}
	for _, s := range secrets {
		k := &macKey{}
		k.pool.New = func() any {
			return &macState{h: hmac.New(sha256.New, s), buf: make([]byte, 0, 64+maxCookieLen)}
		}
		c.keys = append(c.keys, k)
	}
	return c
}

// mac sets out to the MAC of "<name>=<payload>".
func (k *macKey) mac(name, payload string, out *[macLen]byte) {
	st := k.pool.Get().(*macState)
	st.buf = append(append(append(st.buf[:0], name...), '='), payload...)
	st.h.Reset()
	st.h.Write(st.buf)
	st.h.Sum(st.sum[:0])
	*out = st.sum
	k.pool.Put(st)
}

// encode returns the signed cookie value for id and index.
func (c *cookieCodec) encode(id string, index uint64) string {
	payload := id + "." + strconv.FormatUint(index, 10)
	var sum [macLen]byte
	c.keys[0].mac(c.name, payload, &sum)
	b := make([]byte, 0, len(payload)+1+macTextLen)
	b = append(b, payload...)
	b = append(b, '.')
	b = base64.RawURLEncoding.AppendEncode(b, sum[:])
	return string(b)
}

// decode verifies a cookie value and returns its ID and index, and which
// secret signed it (0 is the current one). Anything malformed, oversized or
// signed by no known secret returns ok false.
func (c *cookieCodec) decode(v string) (id string, index uint64, signer int, ok bool) {
	if len(v) > maxCookieLen {
		return "", 0, 0, false
	}
	dot := strings.LastIndexByte(v, '.')
	if dot < 0 || len(v)-dot-1 != macTextLen {
		return "", 0, 0, false
	}
	payload := v[:dot]
	var got [macLen]byte
	if !decodeMAC(v[dot+1:], &got) {
		return "", 0, 0, false
	}
	dot = strings.LastIndexByte(payload, '.')
	if dot < 0 {
		return "", 0, 0, false
	}
	id = payload[:dot]
	index, ok = parseIndex(payload[dot+1:])
	if !ok || !validID(id) {
		return "", 0, 0, false
	}
	var want [macLen]byte
	for i, k := range c.keys {
		k.mac(c.name, payload, &want)
		if hmac.Equal(got[:], want[:]) {
			return id, index, i, true
		}
	}
	return "", 0, 0, false
}

// parseIndex parses a canonical decimal uint64: no sign, no leading zero,
// so that every index has exactly one signed form.
func parseIndex(s string) (uint64, bool) {
	if len(s) == 0 || len(s) > maxIndexLen || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return 0, false
		}
		if n > (1<<64-1-uint64(d))/10 {
			return 0, false // overflow
		}
		n = n*10 + uint64(d)
	}
	return n, true
}

// base64url alphabet values; 0xff marks bytes outside it.
var b64val = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// decodeMAC decodes 43 characters of unpadded base64url into out, strictly:
// the unused low bits of the last character must be zero, so that every MAC
// has exactly one text form and a changed character never verifies.
func decodeMAC(s string, out *[macLen]byte) bool {
	if len(s) != macTextLen {
		return false
	}
	o := 0
	for i := 0; i+4 <= 40; i += 4 {
		a, b, c, d := b64val[s[i]], b64val[s[i+1]], b64val[s[i+2]], b64val[s[i+3]]
		if (a|b|c|d)&0xc0 != 0 { // 0xff, outside the alphabet, has these bits
			return false
		}
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		out[o], out[o+1], out[o+2] = byte(v>>16), byte(v>>8), byte(v)
		o += 3
	}
	a, b, c := b64val[s[40]], b64val[s[41]], b64val[s[42]]
	if (a|b|c)&0xc0 != 0 || c&0x3 != 0 {
		return false
	}
	v := uint32(a)<<12 | uint32(b)<<6 | uint32(c)
	out[30], out[31] = byte(v>>10), byte(v>>2)
	return true
}

// readCookie finds the first value of the session cookie in r that
// verifies. present reports whether r carried the cookie at all.
func (c *cookieCodec) readCookie(r *http.Request) (id string, index uint64, signer int, present bool) {
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || name != c.name {
				continue
			}
			present = true
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			if id, index, signer, ok := c.decode(val); ok {
				return id, index, signer, true
			}
		}
	}
	return "", 0, 0, present
}
