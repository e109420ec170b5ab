// Package confinetest builds what confined owners need for tests (the launcher and the lockdown
// addon), as `make build` does. Test-only helper; untrusted host side.
package confinetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/teemate/platform/internal/testtool"
)

// Launcher builds what confined owners need in the repository above the working directory and
// returns that repository's root and the launcher's path.
func Launcher() (repo, launcher string, err error) {
	if repo, err = testtool.RepoRoot(); err != nil {
		return "", "", err
	}
	launcher, err = Build(repo)
	return repo, launcher, err
}

// Build makes repo/bin/teemate-confine and repo/node-isolate-patch/build/teemate_lockdown.node
// (up to date: nothing is rebuilt) and returns the launcher's path. Test binaries of several
// packages run at once, so the builds are serialized with a lock file.
func Build(repo string) (string, error) {
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "teemate-confinetest.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too
	launcher := filepath.Join(repo, "bin", "teemate-confine")
	for _, args := range [][]string{
		{"-s", "-C", repo, launcher},
		{"-s", "-C", filepath.Join(repo, "node-isolate-patch"), "build/teemate_lockdown.node"},
	} {
		if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("make %v: %w\n%s", args, err, out)
		}
	}
	return launcher, nil
}
