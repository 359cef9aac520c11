package session

import "errors"

// Sentinel errors returned by stores and by [Session]. Callers match them
// with [errors.Is]; stores wrap them with more context.
var (
	// ErrNotFound means no live session has the ID: it never existed, was
	// destroyed, or expired. Stores never distinguish these cases.
	ErrNotFound = errors.New("session: not found")
	// ErrExists means a Create or Rename target ID is already taken.
	ErrExists = errors.New("session: already exists")
	// ErrTooLarge means the change would exceed a size or count limit.
	ErrTooLarge = errors.New("session: too large")
	// ErrQuota means the store is full: creating the session would exceed
	// a store-wide cap on sessions or bytes. Existing sessions keep
	// working; retry later.
	ErrQuota = errors.New("session: store quota exceeded")
	// ErrCASFailed means a compare-and-set precondition did not hold; the
	// whole change was rejected.
	ErrCASFailed = errors.New("session: compare-and-set failed")
	// ErrNotInteger means Incr met a value that is not a decimal integer, or
	// the result overflowed int64.
	ErrNotInteger = errors.New("session: value is not an integer")
	// ErrNoLeader means a replicated store has no leader to commit through.
	// The outcome of the change is unknown; retrying may succeed.
	ErrNoLeader = errors.New("session: no leader")
	// ErrTimeout means the store could not complete the operation in time
	// (for a commit: the outcome is unknown; for a read: the replica could not
	// catch up with the requested index).
	ErrTimeout = errors.New("session: timeout")
	// ErrClosed means the store has been closed.
	ErrClosed = errors.New("session: store closed")
	// ErrInvalid means the change or argument is malformed (for example an
	// empty ID, or Create together with Destroy).
	ErrInvalid = errors.New("session: invalid change")
	// ErrDestroyed is returned by [Session] methods called after Destroy.
	ErrDestroyed = errors.New("session: destroyed")
)

// Unavailable reports whether err means the store could not be reached or
// could not decide in time (ErrNoLeader, ErrTimeout, ErrClosed): the right
// answer to a client is "try again", not "your request was wrong".
func Unavailable(err error) bool {
	return errors.Is(err, ErrNoLeader) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrClosed)
}
