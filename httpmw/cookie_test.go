package httpmw

import (
	"strings"
	"testing"
)

// fuzzCodec is the codec the fuzz corpus was signed with: cookie "sid",
// secret testSecret.
func fuzzCodec() *cookieCodec { return newCookieCodec("sid", [][]byte{testSecret}) }

func TestCookieRoundTrip(t *testing.T) {
	c := fuzzCodec()
	for _, index := range []uint64{0, 1, 42, 1<<64 - 1} {
		id := strings.Repeat("a", 43)
		v := c.encode(id, index)
		gotID, gotIndex, signer, ok := c.decode(v)
		if !ok || gotID != id || gotIndex != index || signer != 0 {
			t.Errorf("decode(encode(%q, %d)) = %q, %d, %d, %v", id, index, gotID, gotIndex, signer, ok)
		}
	}
}

// The format is HMAC-SHA256(secret, "<name>=<id>.<index>"), base64url:
// this value was computed independently (Python's hmac module).
func TestCookieKnownAnswer(t *testing.T) {
	const v = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo.17.oPr3GCtvqloRC5KDhrS9HDLLJkmq3GmaFXbuir0aNuc"
	id, index, _, ok := fuzzCodec().decode(v)
	if !ok || id != "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo" || index != 17 {
		t.Errorf("known cookie: %q %d %v", id, index, ok)
	}
}

func TestCookieRejects(t *testing.T) {
	c := fuzzCodec()
	good := c.encode(strings.Repeat("A", 43), 7)
	mac := good[strings.LastIndexByte(good, '.')+1:]
	other := newCookieCodec("other", [][]byte{testSecret}).encode(strings.Repeat("A", 43), 7)
	flipLast := []byte(good)
	// The last MAC character carries 2 unused bits; a strict decoder must
	// not accept a value that differs only there.
	flipLast[len(flipLast)-1] ^= 1
	tests := map[string]string{
		"empty":                  "",
		"no dots":                strings.Repeat("A", 60),
		"truncated mac":          good[:len(good)-1],
		"oversized":              strings.Repeat("A", maxCookieLen) + good,
		"other cookie name":      other,
		"unknown secret":         newCookieCodec("sid", [][]byte{testOldSecret}).encode(strings.Repeat("A", 43), 7),
		"changed index":          strings.Replace(good, ".7.", ".8.", 1),
		"leading zero index":     strings.Replace(good, ".7.", ".07.", 1),
		"short id":               "abc.7." + mac,
		"id with bad char":       strings.Repeat("A", 42) + "!.7." + mac,
		"unused bits of the mac": string(flipLast),
		"index overflow":         strings.Repeat("A", 43) + ".18446744073709551616." + mac,
	}
	for name, v := range tests {
		if _, _, _, ok := c.decode(v); ok {
			t.Errorf("%s: %q accepted", name, v)
		}
	}
}

// The cookie decoder reads attacker-controlled bytes: it must never panic,
// and anything it accepts must be exactly what the encoder produces.
func FuzzDecodeCookie(f *testing.F) {
	c := fuzzCodec()
	f.Add(c.encode(strings.Repeat("A", 43), 0))
	f.Fuzz(func(t *testing.T, v string) {
		id, index, signer, ok := c.decode(v)
		if !ok {
			return
		}
		if signer != 0 || !validID(id) {
			t.Fatalf("decode(%q) = %q, %d, signer %d", v, id, index, signer)
		}
		if again := c.encode(id, index); again != v {
			t.Fatalf("decode(%q) accepted a non-canonical form of %q", v, again)
		}
	})
}

func BenchmarkDecodeCookie(b *testing.B) {
	c := fuzzCodec()
	v := c.encode(strings.Repeat("A", 43), 123456)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, ok := c.decode(v); !ok {
			b.Fatal("rejected")
		}
	}
}
