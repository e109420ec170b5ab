package executor

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/invoker/internal/activation"
	"github.com/teemate/platform/invoker/internal/sandbox/process"
	"github.com/teemate/platform/invoker/whisk"
)

// The retry rule: once, for the platform's failures, and only while none of the action's code can
// have run (at most once for user code).
func TestRetryable(t *testing.T) {
	const (
		whiskErr = whisk.StatusWhiskError
		devErr   = whisk.StatusDeveloperError
	)
	tests := []struct {
		name  string
		end   attemptEnd
		retry bool
	}{
		{"no enclave thread (owner start failed)", attemptEnd{number: 1, failedIn: stateCreating, status: whiskErr, noUserCode: true}, true},
		{"sandbox did not start", attemptEnd{number: 1, failedIn: stateCreating, status: whiskErr, noUserCode: true}, true},
		{"shim never became ready", attemptEnd{number: 1, failedIn: stateStarting, status: whiskErr, noUserCode: true}, true},
		{"attach refused / owner gone before hello", attemptEnd{number: 1, failedIn: stateInitializing, status: whiskErr, noUserCode: true}, true},
		{"owner died during or after /init", attemptEnd{number: 1, failedIn: stateInitializing, status: whiskErr, noUserCode: true}, true},
		{"second attempt", attemptEnd{number: 2, failedIn: stateStarting, status: whiskErr, noUserCode: true}, false},
		{"owner died during /run", attemptEnd{number: 1, failedIn: stateRunning, status: whiskErr}, false},
		{"gate failure at /run (verdict says no user code)", attemptEnd{number: 1, failedIn: stateRunning, status: whiskErr, noUserCode: true}, false},
		{"action threw", attemptEnd{number: 1, failedIn: stateRunning, status: devErr}, false},
		{"init syntax error", attemptEnd{number: 1, failedIn: stateInitializing, status: devErr}, false},
		{"native proxy failed at /init (its code ran)", attemptEnd{number: 1, failedIn: stateInitializing, status: whiskErr}, false},
		{"success", attemptEnd{number: 1, failedIn: stateRunning, status: whisk.StatusSuccess}, false},
		{"invoker stopping", attemptEnd{number: 1, failedIn: stateStarting, status: whiskErr, noUserCode: true, aborted: true}, false},
		{"the attempt's bound ran out (waited for a slot)", attemptEnd{number: 1, failedIn: stateCreating, status: whiskErr, noUserCode: true, exhausted: true}, false},
	}
	for _, tc := range tests {
		if got := retryable(tc.end); got != tc.retry {
			t.Errorf("%s: retry %v, want %v", tc.name, got, tc.retry)
		}
	}
}

func TestTransition(t *testing.T) {
	tests := []struct {
		from state
		on   event
		to   state
	}{
		{stateCreating, evCreated, stateStarting},
		{stateCreating, evCreateFailed, stateRemoved},
		{stateStarting, evProxyReady, stateReady},
		{stateStarting, evProxyFailed, stateRemoving},
		{stateReady, evInit, stateInitializing},
		{stateInitializing, evInitOK, stateRunning},
		{stateInitializing, evInitFailed, stateRemoving},
		{stateRunning, evRunDone, stateRemoving},
		{stateRemoving, evRemoved, stateRemoved},
		{stateRemoving, evRemoveFailed, stateRemoved},
	}
	valid := map[[2]int]bool{}
	for _, tc := range tests {
		valid[[2]int{int(tc.from), int(tc.on)}] = true
		t.Run(tc.from.String()+"/"+tc.on.String(), func(t *testing.T) {
			got, err := transition(tc.from, tc.on)
			if err != nil || got != tc.to {
				t.Fatalf("got %s, %v; want %s", got, err, tc.to)
			}
		})
	}
	// Everything else is a bug in the executor: refused, and the sandbox goes to removing so it is
	// destroyed all the same. Nothing leads back to a state a sandbox could be reused from.
	for s := stateCreating; s <= stateRemoved; s++ {
		for e := evCreated; e <= evRemoveFailed; e++ {
			if valid[[2]int{int(s), int(e)}] {
				continue
			}
			got, err := transition(s, e)
			if err == nil || got != stateRemoving || !strings.Contains(err.Error(), s.String()) {
				t.Errorf("%s on %s: %s, %v; want a refusal", s, e, got, err)
			}
		}
	}
	if len(valid) != len(tests) {
		t.Fatal("a transition is listed twice")
	}
}

// Each model shapes its sandbox: what runs in it, which root filesystem, whether it reaches a
// shared enclave's gate.
func TestModels_Shape(t *testing.T) {
	rt, err := process.New(process.Config{StateDir: t.TempDir()}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	job := &activation.Job{Name: "wsk0_1_guest_m", Image: "nodejs:20", MemoryMB: 128}
	for _, tc := range []struct {
		model   Model
		rootfs  string
		command string
		gate    string // TEEMATE_GATE
		mounts  int
		argc    int // the strawman's launcher takes the shim and the runtime's argv
	}{
		{SharedEnclave{ShimPath: "/shim"}, "teemate", "/shim", "/g/gate.sock", 2, 1},
		{Native{Command: []string{"/node", "proxy.js"}}, "native", "/node", "", 1, 2},
		{Strawman{ShimPath: "/s/shim", Runtime: []string{"/node", "owner.js"}}, "strawman", "/s/teemate-strawman", "/p/gate.sock", 1, 14},
	} {
		if err := tc.model.validate(); err != nil {
			t.Fatalf("%s: %v", tc.model.Name(), err)
		}
		x := &Executor{cfg: Config{Model: tc.model}, sandboxes: rt}
		spec := x.spec(job, job.Name, 1e9, "/p", "/g")
		if spec.Rootfs != tc.rootfs || spec.Command[0] != tc.command || spec.Env["TEEMATE_GATE"] != tc.gate ||
			len(spec.Mounts) != tc.mounts || len(spec.Command) != tc.argc {
			t.Errorf("%s: %+v", tc.model.Name(), spec)
		}
	}
	for _, m := range []Model{SharedEnclave{}, Native{}, Strawman{ShimPath: "/s"}} {
		if _, err := New(nil, rt, Config{Model: m, ProxyDir: t.TempDir()}, nil); err == nil {
			t.Errorf("%s without its programs accepted", m.Name())
		}
	}
}
