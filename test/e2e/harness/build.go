package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Build compiles cmd/node once per process and returns the binary's path.
// Later calls return the same binary. Set E2E_RACE=1 to build with -race.
// [Cleanup] removes it.
func Build() (string, error) {
	build.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			build.err = err
			return
		}
		build.dir, err = os.MkdirTemp("", "raftsession-e2e-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.bin = filepath.Join(build.dir, "node")
		args := []string{"build", "-o", build.bin}
		if os.Getenv("E2E_RACE") == "1" {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/node")
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("harness: go build ./cmd/node: %w\n%s", err, out)
		}
	})
	return build.bin, build.err
}

// Cleanup removes the binary [Build] made. Call it from TestMain.
func Cleanup() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

// moduleRoot finds the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: no go.mod above the working directory")
		}
		dir = parent
	}
}
