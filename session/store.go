package session

import (
	"context"
	"time"
)

// Level is how fresh a read must be. The zero value is [ReadYourWrites].
type Level uint8

const (
	// ReadYourWrites returns state no older than [LoadOptions.MinIndex],
	// the index of the client's own last write: the client never sees its
	// own writes undone, and its reads are monotonic across replicas.
	ReadYourWrites Level = iota
	// Local returns the local replica's state as it is.
	Local
	// Linearizable returns state at least as new as every write committed
	// before the read started, anywhere in the cluster.
	Linearizable
)

func (l Level) String() string {
	switch l {
	case ReadYourWrites:
		return "ryw"
	case Local:
		return "local"
	case Linearizable:
		return "linearizable"
	}
	return "level(?)"
}

// ParseLevel parses "local", "ryw" or "linearizable".
func ParseLevel(s string) (Level, bool) {
	switch s {
	case "local":
		return Local, true
	case "ryw", "read-your-writes":
		return ReadYourWrites, true
	case "linearizable":
		return Linearizable, true
	}
	return 0, false
}

// LoadOptions say how fresh a read must be.
type LoadOptions struct {
	// Level is the consistency level; the zero value is ReadYourWrites.
	Level Level
	// MinIndex is the index of the client's last acknowledged write
	// (ReadYourWrites only). A store must not answer from state older than
	// this; it waits, asks a fresher replica, or fails with ErrTimeout or
	// ErrNoLeader.
	MinIndex uint64
	// Wait bounds how long a replica waits to catch up with MinIndex before
	// it falls back to a fresher replica. Zero means the store's default.
	Wait time.Duration
}

// Store holds sessions. Implementations are safe for concurrent use.
//
// IDs reach a store only after the caller has verified them (for example
// the cookie MAC in httpmw): tampered or forged tokens never get here, and
// an ID the store never issued is simply not found. Stores index records by
// [KeyOf] the ID and never keep the ID itself.
type Store interface {
	// Load returns the live record of id. A session that never existed,
	// was destroyed or has expired returns an error wrapping ErrNotFound;
	// a store that cannot give state as fresh as opt asks returns one
	// wrapping ErrTimeout or ErrNoLeader.
	Load(ctx context.Context, id string, opt LoadOptions) (*Record, error)
	// Commit applies c atomically and returns the index at which it became
	// visible. A commit made after another one returned gets a higher
	// index; commits that run concurrently may share one (a replicated
	// store may apply them together in one log entry, in some order). Rejections (see [Change]) wrap ErrNotFound, ErrExists,
	// ErrTooLarge, ErrCASFailed, ErrNotInteger or ErrInvalid and change
	// nothing. ErrNoLeader and ErrTimeout mean the outcome is unknown.
	Commit(ctx context.Context, c *Change) (Result, error)
}

// OwnerStore is implemented by stores that index sessions by owner, which
// is what "list my sessions" and "log out everywhere" need.
type OwnerStore interface {
	Store
	// ListOwner returns the live sessions of owner, oldest first.
	ListOwner(ctx context.Context, owner string, opt LoadOptions) ([]Info, error)
	// DestroyOwner destroys every session of owner except the one with ID
	// except ("" keeps none) and returns how many it destroyed and the
	// index at which that became visible.
	DestroyOwner(ctx context.Context, owner, except string) (destroyed int, index uint64, err error)
}

// CountStore is implemented by stores that can count their live sessions.
type CountStore interface {
	Count(ctx context.Context) (int, error)
}

// LimitStore is implemented by stores that enforce per-session [Limits] on
// every commit and can say which: [MemoryStore] (its
// [MemoryOptions.Limits]) and the cluster store (its Config.Limits). The
// store's limits are the one declaration: a [Config] and httpmw take them
// as their defaults (see [LimitsOf]), so the limits a handler's
// [Session.Set] checks are the ones the store enforces.
type LimitStore interface {
	// Limits returns the limits the store enforces.
	Limits() Limits
}

// LimitsOf returns the limits store enforces: its [LimitStore.Limits], zero
// fields filled from [DefaultLimits], or DefaultLimits for a store that
// does not say.
func LimitsOf(store Store) Limits {
	if ls, ok := store.(LimitStore); ok {
		return ls.Limits().WithDefaults()
	}
	return DefaultLimits()
}
