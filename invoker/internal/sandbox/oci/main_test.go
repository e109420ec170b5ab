package oci

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/sandbox/sandboxtest"
)

// These tests run real containers from the images deploy/images/build.sh makes, on the runtime
// OCI_TEST_RUNTIME names: teemate-launch (the default, as the invoker's; built into bin/ when
// missing), runc or crun. As root they install runc when it is the runtime and missing, and build
// the images; otherwise they are skipped, except under CI=true where a missing runtime fails them.
var (
	skipReason string
	imagesDir  string
)

func TestMain(m *testing.M) {
	code := sandboxtest.Main(m, "oci sandbox tests need root (and runc for OCI_TEST_RUNTIME=runc)", &skipReason, setup)
	if stubBin != "" {
		// The start stub built once for the package's tests (buildStub).
		if err := os.RemoveAll(filepath.Dir(stubBin)); err != nil {
			fmt.Fprintln(os.Stderr, "removing the start stub's build directory:", err)
		}
	}
	os.Exit(code)
}

func setup() string {
	if os.Geteuid() != 0 {
		return "not root (containers need root; run the tests as root)"
	}
	root, err := testtool.RepoRoot()
	if err != nil {
		return err.Error()
	}
	if _, err := exec.LookPath("runc"); err != nil && testRuntime() == kindRunc {
		cmd := exec.Command("sh", "-c", "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends runc || "+
			"{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends runc; }")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Sprintf("installing runc: %v\n%s", err, out)
		}
	}
	imagesDir = filepath.Join(root, ".state", "images")
	if err := sandboxtest.RunScript(root, append(os.Environ(), "IMAGES_DIR="+imagesDir), "deploy/images/build.sh",
		"--no-docker", "teemate", "native"); err != nil {
		return err.Error()
	}
	return ""
}

func needRuntime(t testing.TB) {
	t.Helper()
	sandboxtest.Require(t, skipReason)
}

// newRuntime makes a backend with its own state directory and id prefix, closed at the end of
// the test, which then checks that nothing is left (no container, no bundle).
func newRuntime(t testing.TB, cfg Config) *Runtime {
	t.Helper()
	needRuntime(t)
	if cfg.StateDir == "" {
		dir, err := os.MkdirTemp("", "oci")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		cfg.StateDir = dir
	}
	if cfg.IDPrefix == "" {
		cfg.IDPrefix = "wsktest_"
	}
	if cfg.CgroupParent == "" {
		// A parent of its own, which Close removes with anything runc left in it (a container's
		// cgroup whose processes were still leaving), as the invoker gives each runtime.
		cfg.CgroupParent = "/teemate/" + filepath.Base(cfg.StateDir)
		cfg.OwnCgroupParent = true
	}
	rt := newRuntimeNoClose(t, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := rt.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		if ids := listIDs(t, rt); len(ids) != 0 {
			t.Errorf("containers left after Close: %v", ids)
		}
		if left := bundles(t, rt); len(left) != 0 {
			t.Errorf("bundles left after Close: %v", left)
		}
		if cfg.OwnCgroupParent {
			if left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", cfg.CgroupParent)); len(left) != 0 {
				t.Errorf("cgroups left after Close: %v", left)
			}
		}
	})
	return rt
}

// testRuntime is the runtime OCI_TEST_RUNTIME names, DefaultRuntime (the launcher) when unset.
func testRuntime() string {
	if rt := os.Getenv("OCI_TEST_RUNTIME"); rt != "" {
		return rt
	}
	return DefaultRuntime
}

// newRuntimeNoClose makes a backend on the runtime OCI_TEST_RUNTIME names (the launcher by
// default) that the test closes itself, if at all.
func newRuntimeNoClose(t testing.TB, cfg Config) *Runtime {
	t.Helper()
	cfg.ImagesDir = imagesDir
	if cfg.Runtime == "" {
		// "runc" runs the suite on runc, "crun" on crun (see doc.go for the host it needs),
		// "teemate-launch" (the default) on the launcher, built into the repository's bin/ when
		// missing.
		cfg.Runtime = testRuntime()
	}
	if cfg.Runtime == kindLaunch {
		cfg.Runtime = launcherBin(t)
	}
	rt, err := New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// listIDs is `runc list` of the backend's root.
func listIDs(t testing.TB, rt *Runtime) []string {
	t.Helper()
	ids, err := rt.containerIDs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func bundles(t testing.TB, rt *Runtime) []string {
	t.Helper()
	entries, err := os.ReadDir(rt.cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), rt.cfg.IDPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

var (
	launcherOnce sync.Once
	launcherPath string
	launcherErr  error
)

// launcherBin is bin/teemate-launch of the repository, made with the shim's Makefile.
func launcherBin(t testing.TB) string {
	t.Helper()
	launcherOnce.Do(func() {
		root, err := testtool.RepoRoot()
		if err != nil {
			launcherErr = err
			return
		}
		bin := filepath.Join(root, "bin")
		launcherPath = filepath.Join(bin, kindLaunch)
		out, err := exec.Command("make", "-s", "-C", filepath.Join(root, "shim"), "BIN="+bin, launcherPath).CombinedOutput()
		if err != nil {
			launcherErr = fmt.Errorf("make %s: %w: %s", launcherPath, err, out)
		}
	})
	if launcherErr != nil {
		t.Fatal(launcherErr)
	}
	return launcherPath
}
