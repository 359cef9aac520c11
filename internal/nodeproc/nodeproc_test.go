package nodeproc

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func sh(script string) Spec { return Spec{Path: "/bin/sh", Name: "sh", Args: []string{"-c", script}} }

func TestPoll(t *testing.T) {
	t.Run("until nil", func(t *testing.T) {
		n := 0
		err := Poll(5*time.Second, func() error {
			if n++; n < 3 {
				return errors.New("not yet")
			}
			return nil
		})
		if err != nil || n != 3 {
			t.Fatalf("got err %v after %d calls, want nil after 3", err, n)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		errLast := errors.New("still not")
		err := Poll(100*time.Millisecond, func() error { return errLast })
		if !errors.Is(err, errLast) || !strings.Contains(err.Error(), "after 100ms") {
			t.Fatalf("got %v, want the last error after 100ms", err)
		}
	})
	t.Run("abort", func(t *testing.T) {
		errGone := errors.New("gone")
		n := 0
		err := Poll(time.Minute, func() error { n++; return fmt.Errorf("wrapped: %w", Abort(errGone)) })
		if !errors.Is(err, errGone) || n != 1 {
			t.Fatalf("got %v after %d calls, want gone after 1", err, n)
		}
	})
}

func TestMemoryLogAndExitCode(t *testing.T) {
	p := MustStart(t, sh("echo out; echo err >&2; exit 3"))
	if err := p.WaitExit(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := p.ExitCode(); got != 3 {
		t.Errorf("exit code: got %d, want 3", got)
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) {
		t.Errorf("Err: got %v, want an *exec.ExitError", p.Err())
	}
	if got := p.Log(); got != "out\nerr\n" {
		t.Errorf("log: got %q, want %q", got, "out\nerr\n")
	}
	if p.Running() || p.Pid() != 0 {
		t.Errorf("after exit: Running %v, Pid %d; want false, 0", p.Running(), p.Pid())
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Signal after exit: got %v, want ErrNotRunning", err)
	}
}

func TestLogFileAppendsRuns(t *testing.T) {
	spec := sh(`echo "run $RUN"`)
	spec.LogPath = filepath.Join(t.TempDir(), "p.log")
	for _, run := range []string{"1", "2"} {
		spec.Env = []string{"RUN=" + run}
		p := MustStart(t, spec)
		if err := p.WaitExit(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(spec.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("log file has %d lines, want 3 per run:\n%s", len(lines), b)
	}
	for i, run := range []string{"1", "2"} {
		header, out, footer := lines[3*i], lines[3*i+1], lines[3*i+2]
		if !strings.HasPrefix(header, "==== nodeproc ") || !strings.HasSuffix(header, ": start /bin/sh -c echo \"run $RUN\"") ||
			out != "run "+run ||
			!strings.HasPrefix(footer, "==== nodeproc ") || !strings.HasSuffix(footer, ": exited: <nil>") {
			t.Fatalf("run %s: got\n%s\n%s\n%s\nwant a start header, %q and an exit footer", run, header, out, footer, "run "+run)
		}
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("RAFTSESSION_SECRET", "from-the-developer")
	t.Setenv("NODEPROC_KEPT", "kept")
	spec := sh(`echo "[$RAFTSESSION_SECRET] [$NODEPROC_KEPT] [$RAFTSESSION_ADMIN_TOKEN]"`)
	spec.Env = []string{"RAFTSESSION_ADMIN_TOKEN=given"}
	p := MustStart(t, spec)
	if err := p.WaitExit(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := p.Log(), "[] [kept] [given]\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestStopAndKill(t *testing.T) {
	p := MustStart(t, sh("exec sleep 60"))
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if p.Running() || p.ExitCode() != -1 {
		t.Fatalf("after Stop: Running %v, exit code %d; want false, -1 (signalled)", p.Running(), p.ExitCode())
	}
	// A process that ignores SIGTERM is killed after the timeout.
	q := MustStart(t, sh(`trap "" TERM; echo trapped; while :; do sleep 0.05; done`))
	if _, err := q.WaitLine("trapped", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := q.Stop(200 * time.Millisecond); err == nil || q.Running() {
		t.Fatalf("Stop of a process ignoring SIGTERM: got %v, running %v; want an error and a killed process", err, q.Running())
	}
	if err := q.Kill(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Kill after exit: got %v, want ErrNotRunning", err)
	}
}

func TestWaitOK(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	p := MustStart(t, sh("exec sleep 60"))
	if err := p.WaitOK(srv.URL, 10*time.Second); err != nil || calls.Load() != 3 {
		t.Fatalf("got %v after %d requests, want nil after 3", err, calls.Load())
	}

	// A process that exits ends the wait at once, with its log.
	q := MustStart(t, sh("echo bad flag; exit 1"))
	start := time.Now()
	err := q.WaitOK(srv.URL+"/missing", time.Minute)
	if err == nil || !strings.Contains(err.Error(), "bad flag") || time.Since(start) > 10*time.Second {
		t.Fatalf("got %v after %v, want the exit and its log at once", err, time.Since(start))
	}
}

func TestWaitServing(t *testing.T) {
	p := MustStart(t, sh(`echo "level=INFO msg=starting"; echo "time=x level=INFO msg=serving http=127.0.0.1:1 admin=127.0.0.1:2"; exec sleep 60`))
	a, err := p.WaitServing(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if a["http"] != "127.0.0.1:1" || a["admin"] != "127.0.0.1:2" {
		t.Fatalf("got %v, want http 127.0.0.1:1 and admin 127.0.0.1:2", a)
	}
	q := MustStart(t, sh("echo no serving line"))
	if _, err := q.WaitServing(time.Minute); err == nil || !strings.Contains(err.Error(), "no serving line") {
		t.Fatalf("got %v, want the exit and its log", err)
	}
}

func TestGetStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cluster/status" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{"id":"n1","state":"Leader","leader":"n1","commit_index":7,
			"members":[{"id":"n1","role":"voter"},{"id":"n2","role":"non-voter"},{"id":"n3","role":"voter"}]}`)
	}))
	defer srv.Close()
	s, err := GetStatus(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != "Leader" || s.CommitIndex != 7 || strings.Join(s.Voters(), ",") != "n1,n3" {
		t.Fatalf("got %+v, want leader n1 at commit 7 with voters n1,n3", s)
	}
	if _, err := GetStatus(srv.URL + "/nowhere"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("status of a missing endpoint: got %v, want a 404 error", err)
	}
}

func TestFreePorts(t *testing.T) {
	// Calls one after another (as the nodes of a cluster pick theirs)
	// never return a port twice, although each call's listeners are
	// closed before the next one asks the kernel for port 0.
	seen := map[int]bool{}
	for range 200 {
		ports, err := FreePorts(4)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if seen[p] || p == 0 {
				t.Fatalf("port %d returned twice (or zero)", p)
			}
			seen[p] = true
		}
	}
}

func TestBuildOnce(t *testing.T) {
	bin := MustBuild(t, "./testdata/hello")
	if again := MustBuild(t, "./testdata/hello"); again != bin {
		t.Fatalf("second Build: got %s, want the first binary %s", again, bin)
	}
	p := MustStart(t, Spec{Path: bin, Args: []string{"a", "b"}})
	if err := p.WaitExit(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := p.Log(), "hello [a b]\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := Build("./testdata/missing"); err == nil {
		t.Fatal("Build of a missing package: got nil error")
	}
}
