package harness

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/teemate/platform/bench/internal/result"
	"github.com/teemate/platform/internal/testtool"
)

// TestCPUOnContainers runs the noop action on real containers (the oci sandbox, runc) for the
// teemate and native models and checks that every component the model has is accounted: the
// owner (teemate), runc's commands and init, the bench's Go process, and what ran in the
// container (the shim, or native's Node proxy).
func TestCPUOnContainers(t *testing.T) {
	testtool.Require(t, "node", "runc")
	if os.Geteuid() != 0 {
		testtool.Missing(t, "the oci sandbox needs root")
	}
	for _, img := range []string{"teemate", "native"} {
		if _, err := os.Stat(filepath.Join(testtool.Root(t), ".state", "images", img, "rootfs")); err != nil {
			testtool.Missing(t, "function image "+img+" not built (make images)")
		}
	}
	d := startTestDirectOn(t, "oci")
	res := &result.Result{Schema: result.SchemaVersion}
	const samples = 5
	opts := Options{Models: []string{"teemate", "native"}, Warmup: 1, Samples: samples, Repeat: 1, Bursts: 1,
		ActionMemoryMB: 256, TimeoutMs: 30000, Noop: true}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := Run(ctx, d, opts, res); err != nil {
		t.Fatal(err)
	}
	res.Finish()
	if len(res.Cases) != 2 {
		t.Fatalf("cases %d, models %+v, warnings %v", len(res.Cases), res.Models, res.Warnings)
	}
	for _, c := range res.Cases {
		u := c.CPU
		if !c.AllValid || u == nil {
			t.Fatalf("%s: valid %v, cpu %+v, first error %q, warnings %v", c.Model, c.AllValid, u, firstErr(c), res.Warnings)
		}
		t.Logf("%s: %+v", c.Model, *u)
		if u.Activations != samples || u.Platform <= 0 || u.SandboxRuntime <= 0 || u.RuntimeInContainer <= 0 || u.PooledSeen == 0 {
			t.Errorf("%s: activations, platform, runtime or runc's init not accounted: %+v", c.Model, *u)
		}
		switch c.Model {
		case "teemate":
			if u.Owner <= 0 || u.Shim <= 0 || u.Proxy != 0 {
				t.Errorf("teemate: owner and shim must be positive, no proxy: %+v", *u)
			}
		case "native":
			if u.Owner != 0 || u.Proxy <= 0 || u.Shim != 0 {
				t.Errorf("native: the proxy must be positive, no owner or shim: %+v", *u)
			}
		}
		if sum := u.Owner + u.SandboxRuntime + u.Platform + u.InSandbox(); sum < u.Total*0.999 || sum > u.Total*1.001 {
			t.Errorf("%s: components sum to %.3f, total %.3f", c.Model, sum, u.Total)
		}
	}
}

// TestNeedsNetwork: the uploader is the function left out of native and strawman on a sandbox
// backend without networking; the others run everywhere.
func TestNeedsNetwork(t *testing.T) {
	if !needsNetwork("uploader") || needsNetwork("crypto-md5") || needsNetwork(result.NoopFunction) {
		t.Fatal("needsNetwork: the uploader alone needs a network")
	}
}
