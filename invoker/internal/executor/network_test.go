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
	for _, tc := range []struct {
		model       string
		network     bool
		wantSandbox bool
		wantEnv     string
	}{
		{ModelTeemate, true, false, "1"},
		{ModelTeemate, false, false, ""},
		{ModelStrawman, true, true, "1"},
		{ModelNative, true, true, "1"},
		{ModelNative, false, false, ""},
	} {
		x := &Teemate{cfg: Config{Model: tc.model, ShimPath: "/shim", StrawmanRuntime: []string{"node", "owner.js"},
			NativeCommand: []string{"node", "proxy.js"}}, sandboxes: rt}
		job := &activation.Job{Name: "wsk0_1_guest_net", Image: "nodejs:20", MemoryMB: 128, Network: tc.network}
		spec := x.spec(job, time.Second, "/p", "/g")
		if spec.Network != tc.wantSandbox || spec.Env["TEEMATE_NETWORK"] != tc.wantEnv {
			t.Errorf("%s network=%v: sandbox network %v, TEEMATE_NETWORK %q; want %v, %q",
				tc.model, tc.network, spec.Network, spec.Env["TEEMATE_NETWORK"], tc.wantSandbox, tc.wantEnv)
		}
	}
}
