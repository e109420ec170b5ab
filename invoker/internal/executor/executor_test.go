package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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
	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/direct"
	"github.com/teemate/platform/invoker/internal/metrics"
	"github.com/teemate/platform/invoker/internal/proxy"
	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/process"
	"github.com/teemate/platform/invoker/internal/wire"
	"github.com/teemate/platform/invoker/whisk"
)

var (
	shimBin    string
	ownerJS    string
	skipReason string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "exbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintln(os.Stderr, "removing the test binaries:", err)
		}
	}()
	shimBin = filepath.Join(dir, "teemate-shim")
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The C shim and the strawman's launcher beside it (shim/), as make build makes them.
	build := exec.Command("make", "-s", "-C", filepath.Join(wd, "..", "..", "..", "shim"), "BIN="+dir)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build teemate-shim: %v\n%s", err, out)
		return 1
	}
	if ownerJS, err = direct.FindOwnerJS(wd); err != nil {
		skipReason = "enclave-runtime/trusted/owner.js is not there yet: " + err.Error()
	} else if _, err := exec.LookPath("node"); err != nil {
		skipReason = "node is not installed"
	}
	return m.Run()
}

type env struct {
	teardowns atomic.Int64
	exec      *Executor
	manager   *enclave.Manager
}

func shortDir(t *testing.T, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func setup(t *testing.T, slots int, shim string) *env {
	t.Helper()
	if skipReason != "" {
		testtool.Missing(t, skipReason)
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	rt, err := process.New(process.Config{StateDir: shortDir(t, "es")}, log)
	if err != nil {
		t.Fatal(err)
	}
	return setupRuntime(t, slots, shim, rt)
}

// setupRuntime is setup with a sandbox backend of the caller's; the cleanup closes it.
func setupRuntime(t *testing.T, slots int, shim string, rt sandbox.Runtime) *env {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	b, err := direct.New(direct.Config{OwnerJS: ownerJS, StopTimeout: 500 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	m := enclave.NewManager(b, enclave.ManagerConfig{BaseDir: shortDir(t, "eo"), SlotsPerOwner: slots, HealthInterval: -1}, log)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A killed owner makes Close report it; the tests assert what they expect themselves.
		if err := rt.Close(ctx); err != nil {
			t.Logf("closing the sandbox runtime: %v", err)
		}
		if err := m.Close(ctx); err != nil {
			t.Logf("closing the enclave manager: %v", err)
		}
	})
	x, err := New(m, rt, Config{Model: SharedEnclave{ShimPath: shim}, ProxyDir: shortDir(t, "ep"), Grace: 2 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{exec: x, manager: m}
	x.ObserveTeardown(func(time.Duration) { e.teardowns.Add(1) })
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Before the runtime and manager close (cleanups run last-in first-out).
		if err := x.Close(ctx); err != nil {
			t.Errorf("sandboxes left behind: %v", err)
		}
	})
	return e
}

var counter struct {
	sync.Mutex
	n int
}

func job(code, value string, timeout time.Duration) *activation.Job {
	counter.Lock()
	counter.n++
	n := counter.n
	counter.Unlock()
	id := fmt.Sprintf("%032x", n)
	return &activation.Job{
		Name:  fmt.Sprintf("wsk0_%d_guest_test", n),
		Image: "nodejs:20",
		Init: wire.Init{Name: "test", Main: "main", Code: code,
			Env: map[string]string{"__OW_NAMESPACE": "guest", "__OW_ACTIVATION_ID": id}},
		Run: wire.Run{Value: json.RawMessage(value), Namespace: "guest", ActionName: "/guest/test",
			ActionVersion: "0.0.1", ActivationID: id, TransactionID: "tid"},
		Deadline:      time.Now().Add(timeout),
		Timeout:       timeout,
		MemoryMB:      256,
		LogLimitBytes: 10 << 20,
	}
}

func resultOf(t *testing.T, o activation.Outcome) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(o.Response.Result, &m); err != nil {
		t.Fatalf("result %s: %v", o.Response.Result, err)
	}
	return m
}

func TestHelloWorld(t *testing.T) {
	e := setup(t, 4, shimBin)
	code := `function main(p) { console.log('hello ' + p.name); console.error('warn ' + p.name);
	  return { greeting: 'hi ' + p.name, id: process.env.__OW_ACTIVATION_ID }; }`
	j := job(code, `{"name":"Bob"}`, 10*time.Second)
	o := e.exec.Run(context.Background(), j)
	if o.Response.StatusCode != whisk.StatusSuccess {
		t.Fatalf("status %d %s", o.Response.StatusCode, o.Response.Result)
	}
	r := resultOf(t, o)
	if r["greeting"] != "hi Bob" || r["id"] != j.Run.ActivationID {
		t.Fatalf("result %v", r)
	}
	if len(o.Logs) != 2 {
		t.Fatalf("logs %q", o.Logs)
	}
	joined := strings.Join(o.Logs, "\n")
	if !strings.Contains(joined, " stdout: hello Bob") || !strings.Contains(joined, " stderr: warn Bob") {
		t.Fatalf("logs %q", o.Logs)
	}
	if o.InitTime <= 0 || o.TimedOut || o.End.Before(o.Start) {
		t.Fatalf("init %v timedOut %v start %v end %v", o.InitTime, o.TimedOut, o.Start, o.End)
	}
	for _, ph := range []string{metrics.PhaseSandboxCreate, metrics.PhaseProxyReady, metrics.PhaseAttach,
		metrics.PhaseTCSAcquire, metrics.PhaseInit, metrics.PhaseIsolateCreate, metrics.PhaseRun} {
		if _, ok := o.Phases[ph]; !ok {
			t.Errorf("phase %s missing (%v)", ph, o.Phases)
		}
	}
	// The process backend binds the proxy socket before the shim starts, so the shim's start is
	// part of /init's time: it is counted as the proxy getting ready, and the phases of /init
	// never add up to more than /init took.
	inInit := o.Phases[metrics.PhaseAttach] + o.Phases[metrics.PhaseTCSAcquire] + o.Phases[metrics.PhaseInit]
	if o.Phases[metrics.PhaseProxyReady] <= 0 || inInit > o.InitTime {
		t.Errorf("proxy_ready %v, init phases %v, /init took %v", o.Phases[metrics.PhaseProxyReady], inInit, o.InitTime)
	}
	// The sandbox is removed after the answer: its teardown is reported to the observer, not in
	// the outcome, and Close waits for it.
	if _, ok := o.Phases[metrics.PhaseSandboxTeardown]; ok {
		t.Error("sandbox teardown must not delay the outcome")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.exec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.teardowns.Load(); n < 1 {
		t.Fatalf("teardown observed %d times", n)
	}
}

func TestErrorClasses(t *testing.T) {
	e := setup(t, 8, shimBin)
	tests := []struct {
		name, code string
		timeout    time.Duration
		status     int
		errPrefix  string
		timedOut   bool
	}{
		{"application error", `function main(){ return {error: 'bad'} }`, 5 * time.Second, 1, "bad", false},
		{"thrown", `function main(){ console.log('before'); throw new Error('boom') }`, 5 * time.Second, 2, "An error has occurred", false},
		{"init syntax error", `function main( {`, 5 * time.Second, 2, "Initialization has failed due to", false},
		{"not a dictionary", `function main(){ return 'x' }`, 5 * time.Second, 2, whisk.MsgNotADictionary, false},
		{"timeout", `function main(){ while (true) {} }`, 300 * time.Millisecond, 2, "The action exceeded its time limits of", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := e.exec.Run(context.Background(), job(tc.code, `{}`, tc.timeout))
			if o.Response.StatusCode != tc.status {
				t.Fatalf("status %d %s", o.Response.StatusCode, o.Response.Result)
			}
			errText, _ := resultOf(t, o)["error"].(string)
			if !strings.HasPrefix(errText, tc.errPrefix) {
				t.Fatalf("error %q, want prefix %q", errText, tc.errPrefix)
			}
			if o.TimedOut != tc.timedOut {
				t.Fatalf("TimedOut %v", o.TimedOut)
			}
			if tc.status == whisk.StatusDeveloperError {
				if last := o.Logs[len(o.Logs)-1]; !strings.HasSuffix(last, whisk.MsgLogWarningDeveloperError) {
					t.Fatalf("no developer-error log warning: %q", o.Logs)
				}
			}
		})
	}
}

func TestOwnerKilledMidActivation(t *testing.T) {
	e := setup(t, 4, shimBin)
	// Learn the owner's pid through a lease of our own.
	l, err := e.manager.Reserve(context.Background(), "nodejs:20")
	if err != nil {
		t.Fatal(err)
	}
	pid := l.Owner.(interface{ Pid() int }).Pid()
	l.Release()
	code := `function main(){ console.log('started'); return new Promise(r => setTimeout(() => r({late: true}), 20000)) }`
	done := make(chan activation.Outcome, 1)
	go func() { done <- e.exec.Run(context.Background(), job(code, `{}`, 30*time.Second)) }()
	time.Sleep(500 * time.Millisecond)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-done:
		// The owner's death is the platform's failure, not the action's.
		if o.Response.StatusCode != whisk.StatusWhiskError {
			t.Fatalf("status %d %s", o.Response.StatusCode, o.Response.Result)
		}
		if errText, _ := resultOf(t, o)["error"].(string); errText != proxy.MsgEnclaveLostRun {
			t.Fatalf("error %q", errText)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("activation hung after its owner was killed")
	}
	// The next activation gets a fresh owner.
	o := e.exec.Run(context.Background(), job(`function main(){ return {ok: true} }`, `{}`, 10*time.Second))
	if o.Response.StatusCode != whisk.StatusSuccess {
		t.Fatalf("after restart: %d %s", o.Response.StatusCode, o.Response.Result)
	}
}

func TestConcurrentActivations(t *testing.T) {
	e := setup(t, 16, shimBin)
	code := `function main(p) { return { n: p.n * 2, id: process.env.__OW_ACTIVATION_ID } }`
	const n = 20
	outs := make([]activation.Outcome, n)
	jobs := make([]*activation.Job, n)
	var wg sync.WaitGroup
	for i := range n {
		jobs[i] = job(code, fmt.Sprintf(`{"n":%d}`, i), 30*time.Second)
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = e.exec.Run(context.Background(), jobs[i])
		}()
	}
	wg.Wait()
	for i, o := range outs {
		if o.Response.StatusCode != whisk.StatusSuccess {
			t.Fatalf("activation %d: %d %s (logs %q)", i, o.Response.StatusCode, o.Response.Result, o.Logs)
		}
		r := resultOf(t, o)
		if r["n"] != float64(2*i) || r["id"] != jobs[i].Run.ActivationID {
			t.Fatalf("activation %d got %v", i, r)
		}
	}
}

func TestSandboxStartFailureAndCancel(t *testing.T) {
	e := setup(t, 2, "/nonexistent/teemate-shim")
	o := e.exec.Run(context.Background(), job(`function main(){return {}}`, `{}`, 5*time.Second))
	if o.Response.StatusCode != whisk.StatusWhiskError {
		t.Fatalf("missing shim: %d %s", o.Response.StatusCode, o.Response.Result)
	}

	e = setup(t, 2, shimBin)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o = e.exec.Run(ctx, job(`function main(){return {}}`, `{}`, 5*time.Second))
	if o.Response.StatusCode != whisk.StatusWhiskError || !strings.Contains(string(o.Response.Result), "aborted") {
		t.Fatalf("cancelled: %d %s", o.Response.StatusCode, o.Response.Result)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	o = e.exec.Run(ctx, job(`function main(){ return new Promise(r => setTimeout(() => r({}), 20000)) }`, `{}`, 30*time.Second))
	if o.Response.StatusCode != whisk.StatusWhiskError || !strings.Contains(string(o.Response.Result), "aborted") {
		t.Fatalf("cancelled mid-run: %d %s", o.Response.StatusCode, o.Response.Result)
	}
}
