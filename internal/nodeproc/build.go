package nodeproc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Import paths of the repository's binaries, for [Build].
const (
	NodePackage = "github.com/raftsession/raftsession/cmd/node"
	LBPackage   = "github.com/raftsession/raftsession/cmd/lb"
)

var built struct {
	mu   sync.Mutex
	dir  string            // made on the first build, removed by Cleanup
	bins map[string]string // package and flags → binary
}

// Build compiles the main package at import path pkg with the extra go
// build flags (such as -race) and returns the binary's path. The first
// call for a package and flags builds; later calls return the same binary.
// The package resolves in the module of the test's working directory, so
// a module that replaces the core with the repository's copy (or the
// go.work) gets the repository's binary.
func Build(pkg string, flags ...string) (string, error) {
	built.mu.Lock()
	defer built.mu.Unlock()
	key := strings.Join(append([]string{pkg}, flags...), " ")
	if bin, ok := built.bins[key]; ok {
		return bin, nil
	}
	if built.dir == "" {
		dir, err := os.MkdirTemp("", "raftsession-nodeproc-")
		if err != nil {
			return "", err
		}
		built.dir, built.bins = dir, map[string]string{}
	}
	bin := filepath.Join(built.dir, filepath.Base(pkg)+"-"+strconv.Itoa(len(built.bins)))
	args := append(append([]string{"build", "-o", bin}, flags...), pkg)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("nodeproc: go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	built.bins[key] = bin
	return bin, nil
}

// MustBuild is [Build] that fails tb when the build fails.
func MustBuild(tb testing.TB, pkg string, flags ...string) string {
	tb.Helper()
	bin, err := Build(pkg, flags...)
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

// Cleanup removes the binaries [Build] made and closes the idle
// connections of the polling client (a leak checker would see their
// goroutines). Call it from TestMain after m.Run.
func Cleanup() {
	built.mu.Lock()
	defer built.mu.Unlock()
	if built.dir != "" {
		os.RemoveAll(built.dir)
		built.dir, built.bins = "", nil
	}
	client.CloseIdleConnections()
}
