package executor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/activation"
	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/internal/proxy"
	"github.com/teemate/platform/invoker/internal/sandbox/oci"
	"github.com/teemate/platform/invoker/whisk"
)

// ownerOf reserves and releases a slot of image's owner (starting it), and returns the owner's pid
// and gate socket: the owner this test's executor started, killed later by that pid only.
func ownerOf(t *testing.T, e *env) (int, string) {
	t.Helper()
	l, err := e.manager.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	return l.Owner.(interface{ Pid() int }).Pid(), l.GateSocket()
}

// waitRunning waits until n slots of the owner are taken (the activations attached and acquired
// their enclave threads), then a little longer for their /init and /run to go out.
func waitRunning(t *testing.T, socket string, slots, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		p, err := gate.Ping(ctx, socket)
		cancel()
		if err == nil && slots-p.Free >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d activations did not take their enclave threads (last ping %+v, %v)", n, p, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// /init only prepares the action; /run follows at once.
	time.Sleep(500 * time.Millisecond)
}

// The owner of a shared enclave is killed (SIGKILL, by the pid this test's manager started) while
// activations run on it and while others hold leases on it but have not reached /run. The running
// ones are the platform's failures (whisk internal error, never the developer's, not run again);
// the others run again on a fresh owner and succeed, and say so.
func TestOwnerKilledUnderLoad(t *testing.T) {
	const slots, running, pending = 16, 10, 6
	e := setup(t, slots, shimBin)
	pid, socket := ownerOf(t, e)

	var wg sync.WaitGroup
	runOut := make([]activation.Outcome, running)
	slow := `function main(){ return new Promise(r => setTimeout(() => r({late: true}), 4000)) }`
	for i := range running {
		wg.Add(1)
		go func() { defer wg.Done(); runOut[i] = e.exec.Run(context.Background(), job(slow, `{}`, 30*time.Second)) }()
	}
	waitRunning(t, socket, slots, running)

	// Stopped, the owner still holds its free slots in the manager's view: the next activations
	// get leases on it, and their shims wait in the gate's hello until the owner is killed.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	pendOut := make([]activation.Outcome, pending)
	quick := `function main(p){ return {n: p.n} }`
	for i := range pending {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pendOut[i] = e.exec.Run(context.Background(), job(quick, fmt.Sprintf(`{"n":%d}`, i), 30*time.Second))
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("activations hung after their owner was killed")
	}

	counts := map[int]int{}
	for i, o := range runOut {
		counts[o.Response.StatusCode]++
		if o.Response.StatusCode != whisk.StatusWhiskError {
			t.Errorf("running activation %d: status %d %s, want a whisk internal error", i, o.Response.StatusCode, o.Response.Result)
			continue
		}
		if got := errorText(o.Response); got != proxy.MsgEnclaveLostRun {
			t.Errorf("running activation %d: error %q, want %q", i, got, proxy.MsgEnclaveLostRun)
		}
		if o.Retried != "" {
			t.Errorf("running activation %d was run again (%s): its code may have run", i, o.Retried)
		}
	}
	retried := 0
	for i, o := range pendOut {
		if o.Response.StatusCode != whisk.StatusSuccess || !strings.Contains(string(o.Response.Result), fmt.Sprintf(`"n":%d`, i)) {
			t.Errorf("pending activation %d: status %d %s, want its result from a fresh owner", i, o.Response.StatusCode, o.Response.Result)
		}
		if o.Retried != "" {
			retried++
		}
	}
	if retried != pending {
		t.Errorf("%d of %d pending activations say they were retried", retried, pending)
	}
	t.Logf("owner killed with %d activations at /run: %d whisk errors, %d developer errors; %d before /run: %d succeeded on a fresh owner (%d retried)",
		running, counts[whisk.StatusWhiskError], counts[whisk.StatusDeveloperError], pending, pending-countFailed(pendOut), retried)
}

func countFailed(outs []activation.Outcome) int {
	n := 0
	for _, o := range outs {
		if o.Response.StatusCode != whisk.StatusSuccess {
			n++
		}
	}
	return n
}

// A sandbox that cannot start is the platform's failure: a whisk internal error, tried once more
// (the second sandbox fails the same way here), never the developer's.
func TestSandboxStartFailureRetriedOnce(t *testing.T) {
	e := setup(t, 2, "/nonexistent/teemate-shim")
	o := e.exec.Run(context.Background(), job(`function main(){return {}}`, `{}`, 5*time.Second))
	if o.Response.StatusCode != whisk.StatusWhiskError {
		t.Fatalf("status %d %s, want a whisk internal error", o.Response.StatusCode, o.Response.Result)
	}
	if o.Retried != whisk.MsgResourceProvisionError {
		t.Fatalf("retried %q, want the first attempt's %q", o.Retried, whisk.MsgResourceProvisionError)
	}
}

// A shim that exits before it answers /init (its sandbox started, its proxy never became ready) is
// the platform's failure too, and retried: the shim runs none of the action's code.
func TestShimNeverReadyRetriedOnce(t *testing.T) {
	bad := filepath.Join(shortDir(t, "eb"), "teemate-shim")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := setup(t, 2, bad)
	o := e.exec.Run(context.Background(), job(`function main(){return {}}`, `{}`, 5*time.Second))
	if o.Response.StatusCode != whisk.StatusWhiskError {
		t.Fatalf("status %d %s, want a whisk internal error", o.Response.StatusCode, o.Response.Result)
	}
	if o.Retried != whisk.MsgResourceProvisionError {
		t.Fatalf("retried %q, want the first attempt's %q", o.Retried, whisk.MsgResourceProvisionError)
	}
}

// The action's own crashes stay the developer's, on a live owner, and are never run again.
func TestActionCrashStaysDeveloperError(t *testing.T) {
	e := setup(t, 4, shimBin)
	pid, _ := ownerOf(t, e)
	for _, tc := range []struct{ name, code, want string }{
		{"process.exit(1)", `function main(){ console.log('bye'); process.exit(1) }`, "process.exit(1)"},
		{"uncaught throw", `function main(){ throw new Error('boom') }`, "boom"},
		{"uncaught async throw", `function main(){ setTimeout(() => { throw new Error('later') }, 10); return new Promise(() => {}) }`, "later"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := e.exec.Run(context.Background(), job(tc.code, `{}`, 5*time.Second))
			if o.Response.StatusCode != whisk.StatusDeveloperError || !strings.Contains(errorText(o.Response), tc.want) {
				t.Fatalf("status %d %s, want a developer error naming %q", o.Response.StatusCode, o.Response.Result, tc.want)
			}
			if o.Retried != "" {
				t.Fatalf("run again after the action's own failure (%s)", o.Retried)
			}
		})
	}
	// The owner survived the crashes (they ended only their isolates).
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("owner %d is gone after the actions' crashes: %v", pid, err)
	}
}

// A stream of activations, the owner killed in the middle of it, whatever step each activation is
// at (creating its sandbox, attaching, at /init, at /run): none is the developer's failure; each
// succeeds or is a whisk internal error, and only those at /run fail.
func TestOwnerKilledMidStream(t *testing.T) {
	killMidStream(t, setup(t, 16, shimBin))
}

// The same in real containers (the oci backend, runc): a container takes longer to come up, so
// more activations are caught before /run.
func TestOwnerKilledMidStreamOCI(t *testing.T) {
	if skipReason != "" {
		testtool.Missing(t, skipReason)
	}
	testtool.Require(t, "runc")
	if os.Geteuid() != 0 {
		testtool.Missing(t, "the oci backend needs root")
	}
	images := filepath.Join(testtool.Root(t), ".state", "images")
	if _, err := os.Stat(filepath.Join(images, ModelTeemate, "rootfs")); err != nil {
		testtool.Missing(t, "no teemate image (make images): "+err.Error())
	}
	state := shortDir(t, "eo")
	// A cgroup parent of its own, removed with whatever runc left in it when the runtime closes.
	rt, err := oci.New(oci.Config{ImagesDir: images, StateDir: state, IDPrefix: "wsk9blame_",
		CgroupParent: "/teemate/" + filepath.Base(state), OwnCgroupParent: true,
		RefillWorkers: 2}, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	if err != nil {
		t.Fatal(err)
	}
	killMidStream(t, setupRuntime(t, 16, "/bin/teemate-shim", rt))
}

func killMidStream(t *testing.T, e *env) {
	t.Helper()
	const total, parallel = 60, 12
	pid, _ := ownerOf(t, e)
	code := `function main(p){ return new Promise(r => setTimeout(() => r({n: p.n}), 30)) }`
	outs := make([]activation.Outcome, total)
	next := make(chan int)
	var wg sync.WaitGroup
	var finished atomic.Int64
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				outs[i] = e.exec.Run(context.Background(), job(code, fmt.Sprintf(`{"n":%d}`, i), 30*time.Second))
				// In the steady stream, once the owner's first isolates have warmed up.
				if finished.Add(1) == total/3 {
					if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	for i := range total {
		next <- i
	}
	close(next)
	wg.Wait()

	counts := map[int]int{}
	retried := 0
	for i, o := range outs {
		counts[o.Response.StatusCode]++
		if o.Retried != "" && o.Response.StatusCode == whisk.StatusSuccess {
			retried++
		}
		switch o.Response.StatusCode {
		case whisk.StatusSuccess:
			if !strings.Contains(string(o.Response.Result), fmt.Sprintf(`"n":%d`, i)) {
				t.Errorf("activation %d: result %s", i, o.Response.Result)
			}
		case whisk.StatusWhiskError:
			if o.Retried != "" {
				t.Errorf("activation %d failed again after its retry: %s (first: %s)", i, o.Response.Result, o.Retried)
			}
		default:
			t.Errorf("activation %d: status %d %s: the owner's death blamed on the action", i, o.Response.StatusCode, o.Response.Result)
		}
	}
	if counts[whisk.StatusWhiskError]+retried == 0 {
		t.Error("no activation was in flight when the owner was killed: the test did not test anything")
	}
	t.Logf("owner killed mid-stream: %d activations, %d succeeded (%d after a retry), %d whisk errors, %d developer errors",
		total, counts[whisk.StatusSuccess], retried, counts[whisk.StatusWhiskError], counts[whisk.StatusDeveloperError])
}
