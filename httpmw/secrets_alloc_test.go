//go:build !race

package httpmw

import (
	"net/http"
	"testing"
)

// The race detector makes sync.Pool drop items at random, so allocation
// counts are only meaningful without it.

// TestSetSecretsKeepsReadPathAllocs checks that a swap adds no
// allocation to the read path: the codec is loaded with one atomic read.
func TestSetSecretsKeepsReadPathAllocs(t *testing.T) {
	m, req := storedAlice(t, testOldSecret)
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = FromContext(r.Context()).GetString("user")
	}))
	w := &benchWriter{h: http.Header{}}
	run := func() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	before := testing.AllocsPerRun(200, run)
	// The signing secret stays first, so the request does the same work
	// as before the swap.
	if err := m.SetSecrets([][]byte{testOldSecret, testSecret}); err != nil {
		t.Fatal(err)
	}
	after := testing.AllocsPerRun(200, run)
	if after > before {
		t.Fatalf("read path allocates %v per request after SetSecrets, %v before", after, before)
	}
}
