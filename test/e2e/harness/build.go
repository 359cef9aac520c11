package harness

import (
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
// It builds the package by import path, so the copy it gets is the one
// this module requires: the repository's own, through the replace
// directive (or the go.work) at the root.
// Later calls return the same binary. Set E2E_RACE=1 to build with -race.
// [Cleanup] removes it.
func Build() (string, error) {
	build.once.Do(func() {
		var err error
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
		args = append(args, "github.com/raftsession/raftsession/cmd/node")
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			build.err = fmt.Errorf("harness: go build cmd/node: %w\n%s", err, out)
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
