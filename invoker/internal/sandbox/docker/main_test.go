package docker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
)

// These tests need a real Docker Engine and the function images. As root they start one with
// deploy/dev/start-dockerd.sh and build the images with deploy/images/build.sh; otherwise they
// are skipped, except under CI=true where a missing engine fails them.
var skipReason string

func TestMain(m *testing.M) {
	skipReason = setupEngine()
	if skipReason != "" {
		fmt.Fprintln(os.Stderr, "docker sandbox tests need an engine:", skipReason)
	}
	os.Exit(m.Run())
}

func repoRoot() (string, error) {
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
			return "", fmt.Errorf("no go.mod above the test directory")
		}
		dir = parent
	}
}

func setupEngine() string {
	if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
		return "not root (run as root, or with CI=true, to start dockerd and build the images)"
	}
	root, err := repoRoot()
	if err != nil {
		return err.Error()
	}
	for _, args := range [][]string{
		{filepath.Join(root, "deploy/dev/start-dockerd.sh")},
		{filepath.Join(root, "deploy/images/build.sh")},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Sprintf("%s: %v\n%s", filepath.Base(args[0]), err, out)
		}
	}
	return ""
}

// needEngine skips (or, under CI, fails) a test that needs the engine.
func needEngine(t testing.TB) *Runtime {
	t.Helper()
	if skipReason != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no engine: %s", skipReason)
		}
		t.Skip(skipReason)
	}
	rt, err := New(context.Background(), Config{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return rt
}

func nopLogger() *zap.Logger { return zap.NewNop() }
