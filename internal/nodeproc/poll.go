package nodeproc

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// interval is how often [Poll] asks: fast enough that waits end soon after
// their condition holds, slow enough not to load the nodes it asks.
const interval = 50 * time.Millisecond

// abortError marks an error that makes [Poll] give up at once.
type abortError struct{ err error }

func (e abortError) Error() string { return e.err.Error() }
func (e abortError) Unwrap() error { return e.err }

// Abort wraps err so that [Poll] returns it at once instead of asking
// again: for conditions that can no longer come true, such as a process
// that exited.
func Abort(err error) error { return abortError{err} }

// Poll calls f every 50ms until f returns nil, f returns an error made
// with [Abort], or timeout passes. It returns nil, or f's last error
// (unwrapped from Abort) saying how long it waited.
func Poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ae := (abortError{}); errors.As(err, &ae) {
			return ae.err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		<-tick.C
	}
}

// WaitFor is [Poll] that fails tb, naming what it waited for, when f does
// not return nil in time.
func WaitFor(tb testing.TB, timeout time.Duration, what string, f func() error) {
	tb.Helper()
	if err := Poll(timeout, f); err != nil {
		tb.Fatalf("waiting for %s: %v", what, err)
	}
}

// client asks the nodes during waits. A request to a stopped (SIGSTOP)
// node must not hold a wait past its deadline.
var client = &http.Client{Timeout: 3 * time.Second}

// GetOK sends GET url and returns nil when it answers 200 OK.
func GetOK(url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body) // so the connection is reused
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
