package executor

import (
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/invoker/internal/activation"
	"github.com/teemate/platform/invoker/internal/sandbox/process"
)

// An action's network is the enclave runtime's business in the teemate model: the sandbox only
// talks to the gate, gets no network of its own, and the shim is told to pass "network" in the
// run. The models that run the action inside the sandbox still give it the sandbox's network.
func TestNetworkPerModel(t *testing.T) {
	rt, err := process.New(process.Config{StateDir: t.TempDir()}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	shared := SharedEnclave{ShimPath: "/shim"}
	strawman := Strawman{ShimPath: "/shim", Runtime: []string{"node", "owner.js"}}
	native := Native{Command: []string{"node", "proxy.js"}}
	for _, tc := range []struct {
		model       Model
		network     bool
		wantSandbox bool
		wantEnv     string
	}{
		{shared, true, false, "1"},
		{shared, false, false, ""},
		{strawman, true, true, "1"},
		{native, true, true, "1"},
		{native, false, false, ""},
	} {
		x := &Executor{cfg: Config{Model: tc.model}, sandboxes: rt}
		job := &activation.Job{Name: "wsk0_1_guest_net", Image: "nodejs:20", MemoryMB: 128, Network: tc.network}
		spec := x.spec(job, job.Name, time.Second, "/p", "/g")
		if spec.Network != tc.wantSandbox || spec.Env["TEEMATE_NETWORK"] != tc.wantEnv {
			t.Errorf("%s network=%v: sandbox network %v, TEEMATE_NETWORK %q; want %v, %q",
				tc.model.Name(), tc.network, spec.Network, spec.Env["TEEMATE_NETWORK"], tc.wantSandbox, tc.wantEnv)
		}
	}
}
