// Package nodeproc runs raftsession binaries as child processes for tests
// and waits on them, so that cmd/node's process tests, test/browser and
// test/e2e start nodes and poll in one way.
//
// [Build] compiles a main package (cmd/node, cmd/lb) once per test binary;
// [Cleanup], called from TestMain, removes what it built. [Start] runs a
// binary with arguments and extra environment, its output going to a log
// file or to memory ([Proc.Log]); the test's own RAFTSESSION_ variables
// are left out, so a developer's environment cannot change a node's
// flags. [MustStart] is Start for a test: the process is killed when the
// test ends and its log printed when the test failed.
//
// Every wait is [Poll]: call a function every 50ms until it returns nil or
// a deadline passes, giving up at once on an error made with [Abort].
// [Proc.WaitOK] polls a URL (a node's /readyz or /healthz) and gives up
// when the process exits; [Proc.WaitServing] reads the addresses a node
// logs once it serves, for nodes started on port 0; [GetStatus] reads a
// node's GET /cluster/status. No wait sleeps a fixed time.
//
// Processes stop with [Proc.Stop] (SIGTERM, then SIGKILL after a
// timeout), [Proc.Kill] (SIGKILL) or any [Proc.Signal]. The package is
// for Unix-like systems.
package nodeproc
