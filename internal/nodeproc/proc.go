package nodeproc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Spec says how [Start] runs a process.
type Spec struct {
	// Path is the binary, usually from [Build]. Required.
	Path string
	// Name names the process in errors and log headers (default the base
	// name of Path).
	Name string
	// Args are the command-line arguments.
	Args []string
	// Env is added to the test's environment, whose RAFTSESSION_
	// variables are left out (default none added). Secrets such as
	// RAFTSESSION_CLUSTER_KEY belong here rather than in Args: a command
	// line is visible to every local user, and Args go to the log header.
	Env []string
	// LogPath is the file the process's stdout and stderr are appended to,
	// between a header line at start and a footer line at exit (default:
	// the output is kept in memory). Either way [Proc.Log] returns it.
	LogPath string
}

// ErrNotRunning is returned by [Proc.Signal] and the calls built on it when
// the process has exited.
var ErrNotRunning = errors.New("nodeproc: process is not running")

// Proc is one started process. Its methods are safe for concurrent use.
type Proc struct {
	spec   Spec
	cmd    *exec.Cmd
	mem    *lockedBuffer // the output when Spec.LogPath is empty
	exited chan struct{} // closed once the process has exited
	err    error         // from Wait, set before exited is closed
}

// Start starts the process described by spec. A goroutine waits for it to
// exit; the caller must stop it ([Proc.Stop], [Proc.Kill]) or let it exit.
func Start(spec Spec) (*Proc, error) {
	if spec.Path == "" {
		return nil, errors.New("nodeproc: Spec.Path is empty")
	}
	if spec.Name == "" {
		spec.Name = filepath.Base(spec.Path)
	}
	p := &Proc{spec: spec, exited: make(chan struct{})}
	p.cmd = exec.Command(spec.Path, spec.Args...)
	p.cmd.Env = append(environ(), spec.Env...)
	var logFile *os.File
	if spec.LogPath != "" {
		f, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("nodeproc: %s log: %w", spec.Name, err)
		}
		fmt.Fprintf(f, "==== nodeproc %s: start %s %s\n", stamp(), spec.Path, strings.Join(spec.Args, " "))
		logFile = f
		p.cmd.Stdout, p.cmd.Stderr = f, f
	} else {
		p.mem = &lockedBuffer{}
		p.cmd.Stdout, p.cmd.Stderr = p.mem, p.mem
	}
	if err := p.cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("nodeproc: start %s: %w", spec.Name, err)
	}
	go func() {
		err := p.cmd.Wait()
		if logFile != nil {
			fmt.Fprintf(logFile, "==== nodeproc %s: exited: %v\n", stamp(), err)
			logFile.Close()
		}
		p.err = err
		close(p.exited)
	}()
	return p, nil
}

// MustStart is [Start] for a test: it fails tb when the process does not
// start, kills the process when tb ends, and prints its log when tb
// failed.
func MustStart(tb testing.TB, spec Spec) *Proc {
	tb.Helper()
	p, err := Start(spec)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = p.Kill()
		<-p.exited
		if tb.Failed() {
			tb.Logf("---- log of %s (%v) ----\n%s", p.spec.Name, p.err, p.Log())
		}
	})
	return p
}

func stamp() string { return time.Now().Format(time.RFC3339Nano) }

// environ is the test's environment without RAFTSESSION_ variables, which
// would change a node's flags.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RAFTSESSION_") {
			env = append(env, kv)
		}
	}
	return env
}

// Name is Spec.Name.
func (p *Proc) Name() string { return p.spec.Name }

// Exited is closed once the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Running reports whether the process has not exited (a stopped process
// runs).
func (p *Proc) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Pid returns the process ID, or 0 once the process has exited.
func (p *Proc) Pid() int {
	if !p.Running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Err returns what waiting for the process returned (nil for exit code 0),
// once it has exited; before that, nil.
func (p *Proc) Err() error {
	if p.Running() {
		return nil
	}
	return p.err
}

// ExitCode returns the exit code once the process has exited, or -1 while
// it runs or when a signal ended it.
func (p *Proc) ExitCode() int {
	if p.Running() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Signal sends sig to the process, or returns [ErrNotRunning].
func (p *Proc) Signal(sig os.Signal) error {
	if !p.Running() {
		return ErrNotRunning
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return ErrNotRunning
		}
		return fmt.Errorf("nodeproc: signal %s: %w", p.spec.Name, err)
	}
	return nil
}

// killWait bounds the wait for a process to exit after SIGKILL.
const killWait = 10 * time.Second

// Kill sends SIGKILL and waits for the process to exit.
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	return p.WaitExit(killWait)
}

// Stop sends SIGTERM (a node drains, hands leadership over and closes) and
// waits up to timeout for the process to exit; after that it kills the
// process and says so.
func (p *Proc) Stop(timeout time.Duration) error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := p.WaitExit(timeout); err != nil {
		_ = p.Kill()
		return fmt.Errorf("nodeproc: %s did not stop on SIGTERM within %v; killed", p.spec.Name, timeout)
	}
	return nil
}

// WaitExit waits up to timeout for the process to exit.
func (p *Proc) WaitExit(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
		return fmt.Errorf("nodeproc: %s still running after %v", p.spec.Name, timeout)
	}
}

// Log returns the process's output so far (with Spec.LogPath, the whole
// file, earlier runs included).
func (p *Proc) Log() string {
	if p.mem != nil {
		return p.mem.String()
	}
	b, err := os.ReadFile(p.spec.LogPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// Tail returns the last n lines of [Proc.Log].
func (p *Proc) Tail(n int) string { return Tail(p.Log(), n) }

// Tail returns the last n lines of log.
func Tail(log string, n int) string {
	ls := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// exitedError is the error a wait gives up with when the process exited.
func (p *Proc) exitedError() error {
	return Abort(fmt.Errorf("nodeproc: %s exited (%v):\n%s", p.spec.Name, p.err, p.Tail(20)))
}

// WaitOK polls GET url until it answers 200 OK, and gives up when the
// process exits or timeout passes.
func (p *Proc) WaitOK(url string, timeout time.Duration) error {
	return Poll(timeout, func() error {
		if !p.Running() {
			return p.exitedError()
		}
		return GetOK(url)
	})
}

// WaitLine waits until a line of the process's output contains substr
// and returns the first such line, without its newline.
func (p *Proc) WaitLine(substr string, timeout time.Duration) (string, error) {
	var found string
	err := Poll(timeout, func() error {
		exited := !p.Running() // before reading: output ends at exit
		for line := range strings.Lines(p.Log()) {
			if strings.Contains(line, substr) {
				found = strings.TrimRight(line, "\n")
				return nil
			}
		}
		if exited {
			return p.exitedError()
		}
		return fmt.Errorf("no line with %q yet", substr)
	})
	return found, err
}

// WaitServing waits until the process logs that it serves (cmd/node's
// "msg=serving" line) and returns that line's key=value fields: http,
// admin, raft and gossip hold the bound addresses, which is how a test
// learns them when the node was started on port 0.
func (p *Proc) WaitServing(timeout time.Duration) (map[string]string, error) {
	line, err := p.WaitLine("msg=serving", timeout)
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			fields[k] = v
		}
	}
	return fields, nil
}

// lockedBuffer collects output written by exec's copying goroutine and
// read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
