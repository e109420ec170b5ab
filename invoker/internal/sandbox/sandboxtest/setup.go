package sandboxtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
)

// RunScript runs the repository script rel (e.g. "deploy/images/build.sh") in root with args, for
// at most five minutes. env is the whole environment; nil inherits the test's. A failure carries
// the script's output.
func RunScript(root string, env []string, rel string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, rel), args...)
	cmd.Dir = root
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", filepath.Base(rel), err, out)
	}
	return nil
}

// StartDocker starts the development dockerd (deploy/dev/start-dockerd.sh) and builds the function
// images into it (deploy/images/build.sh). Both need root.
func StartDocker(root string) error {
	for _, rel := range []string{"deploy/dev/start-dockerd.sh", "deploy/images/build.sh"} {
		if err := RunScript(root, nil, rel); err != nil {
			return err
		}
	}
	return nil
}

// Require skips t when reason (why the environment lacks what the test needs) is set; under
// CI=true it fails t instead (testtool.Missing), so CI cannot go green by skipping.
func Require(t testing.TB, reason string) {
	t.Helper()
	if reason != "" {
		testtool.Missing(t, reason)
	}
}

// Main runs a package's tests after its one-time setup, which returns why the tests cannot run (""
// when they can); the reason is stored in *reason for Require and printed once under need.
func Main(m *testing.M, need string, reason *string, setup func() string) int {
	*reason = setup()
	if *reason != "" {
		fmt.Fprintln(os.Stderr, need+":", *reason)
	}
	return m.Run()
}
