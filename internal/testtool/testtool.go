// Package testtool decides what a test does when the machine lacks something it needs (a program
// such as node, gcc, qemu or docker, or a file the build makes): locally it skips with the reason;
// under CI=true it fails, so that CI cannot go green by skipping. It also finds the repository
// root that tests build and run things from, and the process's CPU time for benchmarks that report
// CPU rather than wall time. It is used by tests only and runs on neither side of
// the trust boundary.
package testtool

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CI reports whether the tests run under CI (CI=true, as .ci/run is started).
func CI() bool { return os.Getenv("CI") == "true" }

// Require makes sure each named program is on PATH; when one is not, t is skipped, or failed
// under CI=true.
func Require(t testing.TB, programs ...string) {
	t.Helper()
	var missing []string
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		Missing(t, strings.Join(missing, ", ")+" not installed (make deps installs it)")
	}
}

// Missing skips t with reason, or fails it under CI=true. reason says what is missing.
func Missing(t testing.TB, reason string) {
	t.Helper()
	if CI() {
		t.Fatalf("CI=true but %s", reason)
	} else {
		t.Skip(reason)
	}
}

// RepoRoot is the nearest directory above the working directory (a test's package directory) that
// holds go.mod.
func RepoRoot() (string, error) {
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
			return "", errors.New("no go.mod above the test directory")
		}
		dir = parent
	}
}

// Root is RepoRoot for a test: t fails when there is no repository above it.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// ProcessCPU is the CPU time this process has used so far (user + system): benchmarks report CPU
// per operation with it, the figure the machine's other load moves least.
func ProcessCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
