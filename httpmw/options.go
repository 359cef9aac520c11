package httpmw

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/raftsession/raftsession/session"
)

// Switch is a three-way setting whose zero value means "the default".
type Switch uint8

const (
	// Auto takes the documented default of the field.
	Auto Switch = iota
	// On forces the setting on.
	On
	// Off forces the setting off.
	Off
)

// MinSecretLen is the shortest secret [New] accepts (256 bits).
const MinSecretLen = 32

// Options configure a [Manager]. Zero fields take the default their comment
// states; [New] fills them in and validates the rest.
type Options struct {
	// Secrets key the cookie MAC (HMAC-SHA256). The first signs new
	// cookies; every one verifies, so a secret can be rotated by putting
	// the new one first and dropping the old one after the longest session
	// lifetime. Each must be at least MinSecretLen bytes of random data.
	// [Manager.SetSecrets] replaces them at run time.
	//
	// Default: none, and the Manager takes the store's secrets when the
	// store is a [SecretSource] (a cluster's replicated keyring, rotated
	// with cluster.Node.RotateSigningKey), or else signs with a random
	// secret made for this process, which suits a session.MemoryStore
	// (its sessions end with the process anyway). Set Secrets for a store
	// shared by several processes that is not a SecretSource.
	Secrets [][]byte

	// CookieName is the cookie's name. Default "sid".
	CookieName string
	// Path is the cookie's Path. Default "/".
	Path string
	// Domain is the cookie's Domain. Default "" (host-only cookie, the
	// safest choice).
	Domain string
	// HttpOnly hides the cookie from scripts. Default (Auto) On.
	HttpOnly Switch
	// Secure restricts the cookie to HTTPS. Default (Auto): set when the
	// request came over TLS, or when TrustProxy is true and the
	// X-Forwarded-Proto header says "https".
	Secure Switch
	// TrustProxy lets X-Forwarded-Proto decide Secure under Auto. Enable it
	// only behind a proxy that sets the header. Default false.
	TrustProxy bool
	// SameSite is the cookie's SameSite attribute. Default (zero)
	// http.SameSiteLaxMode; http.SameSiteDefaultMode omits the attribute.
	SameSite http.SameSite
	// Partitioned sets the CHIPS Partitioned attribute (needs Secure).
	// Default false.
	Partitioned bool
	// Persist gives sessions a persistent cookie, kept until the session's
	// deadline across browser restarts, instead of a browser-session
	// cookie. A handler can choose per session with
	// [session.Session.SetPersist] or [session.Session.RememberMe].
	// Default false (browser-session cookie, as express-session without
	// maxAge).
	Persist bool

	// IdleTimeout ends a session that sees no commit or touch for this
	// long. Default 30 minutes.
	IdleTimeout time.Duration
	// Lifetime ends a session this long after it was created however
	// active it is (absolute timeout). Default 12 hours.
	Lifetime time.Duration
	// TouchAfter rate-limits the store writes that extend the idle
	// deadline of sessions a request only reads: such a request touches
	// the session only when its last commit or touch is older than this.
	// Default 1 minute; negative touches on every request.
	TouchAfter time.Duration
	// Rolling sends the cookie on every response of a stored session, as
	// express-session's rolling does. It costs no store write: the
	// cookie's expiry follows the server-side deadline, which moves with
	// each touch. Default false.
	Rolling bool
	// Resave writes every loaded session back on every request, even
	// unchanged (as a touch: a delta never overwrites other requests'
	// values). Default false; you rarely want it.
	Resave bool
	// SaveUninitialized stores a new session, and sends its cookie, even
	// when the handler put nothing in it. Default false: only sessions the
	// handler changed are stored (useful for login or cookie-consent
	// rules).
	SaveUninitialized bool

	// IDGenerator returns new session IDs. It must return at least 22
	// characters (128 bits of entropy) from the base64url alphabet
	// (A-Z a-z 0-9 - _), at most 128. Default [session.NewID] (32 random
	// bytes).
	IDGenerator func() string
	// ErrorHandler answers a request whose session could not be loaded or
	// committed; the error is already logged. Default [WriteError]: the
	// status of [StatusCode] (503 Service Unavailable with Retry-After: 1
	// when the store is unavailable), the body the status text only.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

	// Consistency is how fresh a session a request reads. Default
	// session.ReadYourWrites: never older than this client's own last
	// write, which the cookie carries.
	Consistency session.Level
	// ConsistencyWait bounds how long a replica waits to catch up before
	// it asks a fresher one, for the loads of this middleware and its
	// sessions' Reload and ListOwned. Default zero: the store's own wait
	// (a cluster's Config.ReadWait, 250ms unless set there). A non-zero
	// value overrides the store's for this middleware only.
	ConsistencyWait time.Duration

	// Limits bound one session; [session.Session.Set] checks them, so a
	// handler learns at once that a value does not fit. Default: the
	// store's limits ([session.LimitsOf]: a cluster's Config.Limits, a
	// MemoryStore's MemoryOptions.Limits, else [session.DefaultLimits]: 64
	// KiB per session and per value, 1024 keys). Zero fields keep the
	// store's value. A set field overrides it and may only be stricter:
	// [New] fails when a field exceeds what a [session.LimitStore]
	// enforces, since the store would refuse at commit what Set allowed.
	Limits session.Limits
	// Codec encodes values. Default [session.JSONCodec].
	Codec session.Codec
	// Logger receives load and commit failures. Default slog.Default().
	Logger *slog.Logger
	// Clock is the time source for touch rate limiting and cookie expiry.
	// Default time.Now.
	Clock func() time.Time
}

// withDefaults validates o and returns it with defaults filled in, the
// store's where it has them.
func (o Options) withDefaults(store session.Store) (Options, error) {
	if len(o.Secrets) > 0 {
		secrets, err := copySecrets(o.Secrets)
		if err != nil {
			return o, err
		}
		o.Secrets = secrets
	}
	if o.CookieName == "" {
		o.CookieName = "sid"
	}
	if err := (&http.Cookie{Name: o.CookieName, Value: "x"}).Valid(); err != nil {
		return o, fmt.Errorf("httpmw: Options.CookieName %q is not a valid cookie name", o.CookieName)
	}
	if o.Path == "" {
		o.Path = "/"
	}
	if o.SameSite == 0 {
		o.SameSite = http.SameSiteLaxMode
	}
	if o.Secure == Off && (o.SameSite == http.SameSiteNoneMode || o.Partitioned) {
		return o, errors.New("httpmw: SameSite=None and Partitioned cookies need Secure; browsers drop them otherwise")
	}
	if o.IdleTimeout < 0 || o.Lifetime < 0 || o.ConsistencyWait < 0 {
		return o, errors.New("httpmw: negative IdleTimeout, Lifetime or ConsistencyWait")
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = session.DefaultIdleTimeout
	}
	if o.Lifetime == 0 {
		o.Lifetime = session.DefaultLifetime
	}
	if o.TouchAfter == 0 {
		o.TouchAfter = time.Minute
	}
	if o.ErrorHandler == nil {
		o.ErrorHandler = WriteError
	}
	if o.Codec == nil {
		o.Codec = session.JSONCodec{}
	}
	if err := checkLimits(o.Limits, store); err != nil {
		return o, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.IDGenerator == nil {
		o.IDGenerator = session.NewID
	} else if id := o.IDGenerator(); !validID(id) {
		return o, fmt.Errorf("httpmw: Options.IDGenerator returned %q: need 22 to 128 base64url characters", id)
	}
	return o, nil
}

// checkLimits fails when a field of lim exceeds the limit the store
// enforces. Zero fields are left to session.Config, which takes the
// store's.
func checkLimits(lim session.Limits, store session.Store) error {
	if _, ok := store.(session.LimitStore); !ok {
		return nil
	}
	enforced := session.LimitsOf(store)
	for _, f := range []struct {
		name       string
		got, limit int
	}{
		{"MaxBytes", lim.MaxBytes, enforced.MaxBytes},
		{"MaxKeys", lim.MaxKeys, enforced.MaxKeys},
		{"MaxValueBytes", lim.MaxValueBytes, enforced.MaxValueBytes},
		{"MaxKeyBytes", lim.MaxKeyBytes, enforced.MaxKeyBytes},
	} {
		if f.got > f.limit {
			return fmt.Errorf("httpmw: Options.Limits.%s is %d but the store enforces %d: the store would refuse what the middleware allows", f.name, f.got, f.limit)
		}
	}
	return nil
}

// copySecrets validates secrets as [Options.Secrets] requires and returns
// a deep copy, so that a caller reusing its slices cannot change the keys.
func copySecrets(in [][]byte) ([][]byte, error) {
	if len(in) == 0 {
		return nil, errors.New("httpmw: no secret: at least one is required")
	}
	out := make([][]byte, len(in))
	for i, s := range in {
		if len(s) < MinSecretLen {
			return nil, fmt.Errorf("httpmw: Options.Secrets[%d] is %d bytes, need at least %d", i, len(s), MinSecretLen)
		}
		out[i] = append([]byte(nil), s...)
	}
	return out, nil
}

// minIDLen is 128 bits of entropy in base64url characters.
const (
	minIDLen = 22
	maxIDLen = 128
)

func validID(id string) bool {
	if len(id) < minIDLen || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !base64urlChar(id[i]) {
			return false
		}
	}
	return true
}

func base64urlChar(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}
