// Package testtool decides what a test does when the machine lacks something it needs (a program
// such as node, gcc, qemu or docker, or a file the build makes): locally it skips with the reason;
// under CI=true it fails, so that CI cannot go green by skipping. It is used by tests only and runs
// on neither side of the trust boundary.
package testtool

import (
	"os"
	"os/exec"
	"strings"
	"testing"
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
