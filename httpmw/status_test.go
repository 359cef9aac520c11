package httpmw

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/raftsession/raftsession/session"
)

func TestStatusCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 200},
		{session.ErrNoKey, 404},
		{session.ErrNotFound, 409},
		{session.ErrDestroyed, 409},
		{session.ErrExists, 409},
		{session.ErrCASFailed, 409},
		{session.ErrInvalid, 400},
		{session.ErrNotInteger, 400},
		{session.ErrTooLarge, 413},
		{session.ErrNoLeader, 503},
		{session.ErrTimeout, 503},
		{session.ErrClosed, 503},
		{session.ErrQuota, 503},
		{ErrNoSecrets, 503},
		{context.DeadlineExceeded, 503},
		{context.Canceled, 503},
		{errors.ErrUnsupported, 501},
		{errors.New("disk on fire"), 500},
		// Wrapped errors, as stores and Session methods return them.
		{fmt.Errorf("session: commit: %w", fmt.Errorf("fsm: update: %w", session.ErrNotFound)), 409},
		{fmt.Errorf("forward: %w: %w", session.ErrTimeout, context.DeadlineExceeded), 503},
	}
	for _, tc := range tests {
		if got := StatusCode(tc.err); got != tc.want {
			t.Errorf("StatusCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestWriteError(t *testing.T) {
	tests := []struct {
		err   error
		code  int
		retry string
	}{
		{session.ErrQuota, 503, "30"},
		{session.ErrTooLarge, 413, ""},
		{fmt.Errorf("secret path /etc/x: %w", errors.New("boom")), 500, ""},
		{nil, 500, ""}, // an error handler called without an error still fails the request
	}
	for _, tc := range tests {
		rec := httptest.NewRecorder()
		WriteError(rec, httptest.NewRequest("GET", "/", nil), tc.err)
		if rec.Code != tc.code || rec.Header().Get("Retry-After") != tc.retry {
			t.Errorf("WriteError(%v): %d Retry-After %q, want %d %q", tc.err, rec.Code, rec.Header().Get("Retry-After"), tc.code, tc.retry)
		}
		if want := http.StatusText(tc.code) + "\n"; rec.Body.String() != want {
			t.Errorf("WriteError(%v) body %q, want %q", tc.err, rec.Body.String(), want)
		}
	}
}
