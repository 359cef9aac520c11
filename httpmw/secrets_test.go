package httpmw

import (
	"sync"
	"testing"
)

// TestSetSecretsRotation follows one cookie through a run-time rotation:
// with the old secret still listed it keeps verifying and is re-signed
// with the new one; once the old secret is dropped it no longer verifies.
func TestSetSecretsRotation(t *testing.T) {
	e := mustEnv(t, Options{Secrets: [][]byte{testOldSecret}}, false)
	old := e.login()

	if err := e.m.SetSecrets([][]byte{testSecret, testOldSecret}); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/get?k=user", old)
	if r.body != "alice" {
		t.Fatalf("after rotation: got %q, want %q", r.body, "alice")
	}
	c := r.cookie(t)
	if c == nil {
		t.Fatal("cookie signed with the old secret was not re-signed")
	}
	if _, _, signer, ok := e.m.cookie.Load().decode(c.Value); !ok || signer != 0 {
		t.Fatalf("re-signed cookie: signer %d ok %v, want 0 true", signer, ok)
	}
	resigned := c.Value

	if err := e.m.SetSecrets([][]byte{testSecret}); err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/get?k=user", old); r.body != "" || r.header.Get("X-New") != "1" {
		t.Fatalf("cookie of a retired secret: got %q new=%q, want a new empty session", r.body, r.header.Get("X-New"))
	}
	if r := e.do("GET", "/get?k=user", resigned); r.body != "alice" {
		t.Fatalf("re-signed cookie: got %q, want %q", r.body, "alice")
	}
}

func TestSetSecretsValidates(t *testing.T) {
	e := mustEnv(t, Options{}, false)
	cookie := e.login()
	for _, tc := range []struct {
		name    string
		secrets [][]byte
	}{
		{"empty", nil},
		{"short", [][]byte{[]byte("too short")}},
		{"one of two short", [][]byte{testSecret, []byte("x")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.m.SetSecrets(tc.secrets); err == nil {
				t.Fatal("SetSecrets accepted invalid secrets")
			}
			// A rejected call leaves the secrets as they were.
			if r := e.do("GET", "/get?k=user", cookie); r.body != "alice" {
				t.Fatalf("got %q, want %q", r.body, "alice")
			}
		})
	}
}

// TestSetSecretsCopies checks that the Manager does not keep the caller's
// slices: changing them afterwards must not change the key.
func TestSetSecretsCopies(t *testing.T) {
	e := mustEnv(t, Options{}, false)
	key := append([]byte(nil), testOldSecret...)
	if err := e.m.SetSecrets([][]byte{key}); err != nil {
		t.Fatal(err)
	}
	cookie := e.login()
	key[0] ^= 0xff
	if r := e.do("GET", "/get?k=user", cookie); r.body != "alice" {
		t.Fatalf("got %q, want %q", r.body, "alice")
	}
}

// TestSetSecretsConcurrent swaps secrets while requests run (for -race).
func TestSetSecretsConcurrent(t *testing.T) {
	e := mustEnv(t, Options{}, false)
	cookie := e.login()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			keys := [][]byte{testSecret, testOldSecret}
			if i%2 == 1 {
				keys[0], keys[1] = keys[1], keys[0]
			}
			if err := e.m.SetSecrets(keys); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 50 {
		if r := e.do("GET", "/get?k=user", cookie); r.body != "alice" {
			t.Errorf("got %q, want %q", r.body, "alice")
			break
		}
	}
	close(stop)
	wg.Wait()
}
