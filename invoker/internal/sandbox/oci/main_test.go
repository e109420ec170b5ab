package oci

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/sandbox/sandboxtest"
)

// These tests run real runc containers from the images deploy/images/build.sh makes. As root
// they install runc when missing and build the images; otherwise they are skipped, except under
// CI=true where a missing runtime fails them.
var (
	skipReason string
	imagesDir  string
)

func TestMain(m *testing.M) {
	os.Exit(sandboxtest.Main(m, "oci sandbox tests need runc and root", &skipReason, setup))
}

func setup() string {
	if os.Geteuid() != 0 {
		return "not root (runc needs root; run the tests as root)"
	}
	root, err := testtool.RepoRoot()
	if err != nil {
		return err.Error()
	}
	if _, err := exec.LookPath("runc"); err != nil {
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

func needRunc(t testing.TB) {
	t.Helper()
	sandboxtest.Require(t, skipReason)
}

// newRuntime makes a backend with its own state directory and id prefix, closed at the end of
// the test, which then checks that nothing is left (no container, no bundle).
func newRuntime(t testing.TB, cfg Config) *Runtime {
	t.Helper()
	needRunc(t)
	if cfg.StateDir == "" {
		dir, err := os.MkdirTemp("", "oci")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		cfg.StateDir = dir
	}
	cfg.ImagesDir = imagesDir
	if cfg.Runtime == "" {
		cfg.Runtime = os.Getenv("OCI_TEST_RUNTIME") // "crun" runs the suite on crun (see doc.go for the host it needs)
	}
	if cfg.IDPrefix == "" {
		cfg.IDPrefix = "wsktest_"
	}
	rt, err := New(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
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
	})
	return rt
}

// listIDs is `runc list` of the backend's root.
func listIDs(t testing.TB, rt *Runtime) []string {
	t.Helper()
	out, err := rt.runtime(context.Background(), "list", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list []struct {
		ID string `json:"id"`
	}
	if len(out) > 0 && string(out) != "null" {
		if err := json.Unmarshal(out, &list); err != nil {
			t.Fatalf("runc list: %v: %s", err, out)
		}
	}
	var ids []string
	for _, c := range list {
		ids = append(ids, c.ID)
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

func nopLogger() *zap.Logger { return zap.NewNop() }
