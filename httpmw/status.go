package httpmw

import (
	"context"
	"errors"
	"net/http"

	"github.com/raftsession/raftsession/session"
)

// StatusCode returns the HTTP status that answers err, an error from a
// [session.Store], a [session.Session] method or a Manager. It is the one
// table the default [Options.ErrorHandler], cmd/node and the framework
// adapters share:
//
//	nil                                         200 OK
//	ErrNoKey                                    404 Not Found
//	ErrNotFound, ErrDestroyed, ErrExists,
//	ErrCASFailed                                409 Conflict (another request changed or ended the session)
//	ErrInvalid, ErrNotInteger                   400 Bad Request
//	ErrTooLarge                                 413 Content Too Large
//	ErrNoLeader, ErrTimeout, ErrClosed,
//	ErrQuota, ErrNoSecrets, context deadline
//	or cancellation                             503 Service Unavailable (retry later)
//	errors.ErrUnsupported                       501 Not Implemented
//	anything else                               500 Internal Server Error
//
// Answer a 503 with a Retry-After header: the store is electing a leader,
// catching up, or full, and the same request is likely to succeed soon.
func StatusCode(err error) int {
	for _, row := range statusTable {
		for _, target := range row.errs {
			if errors.Is(err, target) {
				return row.code
			}
		}
	}
	if err == nil {
		return http.StatusOK
	}
	return http.StatusInternalServerError
}

var statusTable = []struct {
	errs []error
	code int
}{
	{[]error{session.ErrNoKey}, http.StatusNotFound},
	{[]error{session.ErrNotFound, session.ErrDestroyed, session.ErrExists, session.ErrCASFailed}, http.StatusConflict},
	{[]error{session.ErrInvalid, session.ErrNotInteger}, http.StatusBadRequest},
	{[]error{session.ErrTooLarge}, http.StatusRequestEntityTooLarge},
	{[]error{session.ErrNoLeader, session.ErrTimeout, session.ErrClosed, session.ErrQuota, ErrNoSecrets,
		context.DeadlineExceeded, context.Canceled}, http.StatusServiceUnavailable},
	{[]error{errors.ErrUnsupported}, http.StatusNotImplemented},
}

// WriteError answers the request with [StatusCode] of err and that
// status's text as the body (never err's own text, which may describe
// internals), adding Retry-After: 1 to a 503. It is the default
// [Options.ErrorHandler].
func WriteError(w http.ResponseWriter, _ *http.Request, err error) {
	code := StatusCode(err)
	if code == http.StatusOK {
		code = http.StatusInternalServerError
	}
	switch {
	case errors.Is(err, session.ErrQuota):
		// The store is full: room comes back as sessions end, not
		// within a second.
		w.Header().Set("Retry-After", "30")
	case code == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
	}
	http.Error(w, http.StatusText(code), code)
}
