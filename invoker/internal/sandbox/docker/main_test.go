package docker

import (
	"context"
	"os"
	"testing"

	"go.uber.org/zap"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/sandbox/sandboxtest"
)

// These tests need a real Docker Engine and the function images. As root they start one with
// deploy/dev/start-dockerd.sh and build the images with deploy/images/build.sh; otherwise they
// are skipped, except under CI=true where a missing engine fails them.
var skipReason string

func TestMain(m *testing.M) {
	os.Exit(sandboxtest.Main(m, "docker sandbox tests need an engine", &skipReason, setupEngine))
}

func setupEngine() string {
	if os.Geteuid() != 0 && os.Getenv("CI") != "true" {
		return "not root (run as root, or with CI=true, to start dockerd and build the images)"
	}
	root, err := testtool.RepoRoot()
	if err != nil {
		return err.Error()
	}
	if err := sandboxtest.StartDocker(root); err != nil {
		return err.Error()
	}
	return ""
}

// needEngine skips (or, under CI, fails) a test that needs the engine.
func needEngine(t testing.TB) *Runtime {
	t.Helper()
	sandboxtest.Require(t, skipReason)
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
