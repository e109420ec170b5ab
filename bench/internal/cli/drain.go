package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/teemate/platform/bench/internal/harness"
	"github.com/teemate/platform/bench/internal/result"
)

// ScenarioDrain is --scenario drain: pre-copy drain against stop-and-copy (issue #20).
const ScenarioDrain = "drain"

// The drain scenario's defaults.
const (
	DrainRate       = 20.0
	DrainBefore     = 5 * time.Second
	DrainAfter      = 15 * time.Second
	DrainSwitchTail = 3 * time.Second
)

func drainFlags(fs *flag.FlagSet, f *flags) {
	fs.StringVar(&f.scenario, "scenario", "", `"drain": take an invoker out of service under a steady load, by pre-copy drain and by `+
		`stop-and-copy (/disable), each on a fresh platform of two in-process invokers; failures, cold starts, downtime, `+
		`switch-window latency and the state transfer side by side (default: the evaluation)`)
	fs.Float64Var(&f.rate, "rate", DrainRate, "drain scenario: requests per second over all its actions (open loop)")
	fs.DurationVar(&f.before, "before", DrainBefore, "drain scenario: load before the trigger")
	fs.DurationVar(&f.after, "after", DrainAfter, "drain scenario: load after the trigger")
	fs.DurationVar(&f.requestTimeout, "request-timeout", 30*time.Second,
		"drain scenario: a request unanswered this long fails (stop-and-copy strands the activations the disabled invoker had taken)")
	fs.DurationVar(&f.switchTail, "switch-window", DrainSwitchTail,
		"drain scenario: the switch window's latency covers requests started from the trigger until this long after the switch and drained")
}

// checkScenario validates --scenario and the flags that go with it.
func checkScenario(f *flags, set map[string]bool) error {
	switch f.scenario {
	case "":
		for _, n := range []string{"rate", "before", "after", "switch-window", "request-timeout"} {
			if set[n] {
				return fmt.Errorf("--%s belongs to --scenario %s", n, ScenarioDrain)
			}
		}
		return nil
	case ScenarioDrain:
	default:
		return fmt.Errorf("unknown --scenario %q (known: %s)", f.scenario, ScenarioDrain)
	}
	if f.hostile || f.sealed || f.apiHost != "" {
		return errors.New("--scenario drain runs its own platforms: not with --hostile, --sealed or --api-host")
	}
	if f.sandbox != "oci" && f.sandbox != "process" {
		return fmt.Errorf("--scenario drain runs on --sandbox oci or process, not %q", f.sandbox)
	}
	if f.rate <= 0 || f.rate > 1000 {
		return errors.New("--rate must be in (0, 1000] requests per second")
	}
	if f.before < time.Second || f.after < time.Second || f.switchTail < 0 || f.requestTimeout < time.Second {
		return errors.New("--before, --after and --request-timeout must be at least 1s, --switch-window not negative")
	}
	return nil
}

// runDrain runs --scenario drain and writes its result, report and table.
func runDrain(f *flags, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	repo := f.repo
	var err error
	if repo == "" {
		if repo, err = findRepo(); err != nil {
			return err
		}
	}
	profile, name, out, err := naming(f, repo)
	if err != nil {
		return err
	}
	shim := f.shim
	if shim == "" {
		shim = filepath.Join(repo, "bin", "teemate-shim")
	}
	if _, err := os.Stat(shim); err != nil {
		return fmt.Errorf("shim not found (run make build): %w", err)
	}
	env := harness.Environment(repo)
	env.Sandbox, env.Enclave, env.Mode = f.sandbox, "direct", "direct"
	env.MemorySampler = "the state transfer's own peak counters (the destination's \"image state transferred\" log)"
	res := &result.Result{Schema: result.SchemaVersion, Name: name, StartedAt: time.Now(), Environment: env}
	if f.sandbox == "process" {
		res.Environment.Sandbox = ProcessLabel
		res.Warnings = append(res.Warnings, "process sandbox: development only, not a container; container figures need --sandbox oci")
	}
	fmt.Fprintf(stderr, "bench: checking that the machine is idle (up to %s)...\n", f.idleWait)
	load, idle, waited := harness.WaitIdle(ctx, f.idleWait, f.maxLoad)
	res.Environment.LoadAvgBefore, res.Environment.Idle, res.Environment.IdleWaitedS = load, idle, waited.Seconds()
	if !idle {
		w := fmt.Sprintf("machine not idle: load average %.2f %.2f %.2f on %d cores after waiting %.0f s; timings are noisy",
			load[0], load[1], load[2], env.Cores, waited.Seconds())
		res.Warnings = append(res.Warnings, w)
		fmt.Fprintln(stderr, "bench: warning:", w)
	}
	res.Config = result.Config{Profile: profile, Scenario: ScenarioDrain, Models: []string{"teemate"}, ActionMemoryMB: f.actionMB,
		PoolSize: f.poolSize, OCIRuntime: f.ociRuntime}

	level := zapcore.ErrorLevel
	if f.verbose {
		level = zapcore.InfoLevel
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	log, err := zc.Build()
	if err != nil {
		return fmt.Errorf("logger: %w", err)
	}
	defer func() { _ = log.Sync() }() // stderr may not sync (a terminal or a pipe); nothing to do about it
	state, err := os.MkdirTemp("", "bench-drain-")
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	defer func() {
		if err := os.RemoveAll(state); err != nil {
			fmt.Fprintf(stderr, "bench: remove the state directory %s: %v\n", state, err)
		}
	}()

	drain, stopCopy, cfg, runErr := harness.RunDrain(ctx, harness.DrainOptions{RepoDir: repo, ShimPath: shim, Sandbox: f.sandbox,
		OCIRuntime: f.ociRuntime, PoolSize: f.poolSize, Slots: f.slots, UnsafeOwnerAsRoot: f.unsafeOwnerAsRoot,
		Rate: f.rate, Before: f.before, After: f.after, SwitchTail: f.switchTail, RequestTimeout: f.requestTimeout, ActionMemoryMB: f.actionMB, TimeoutMs: f.timeoutMs,
		StateDir: state, Logger: log, Progress: func(s string) { fmt.Fprintln(stderr, s) }})
	res.Config.Drain, res.Drain, res.StopAndCopy = cfg, drain, stopCopy
	if drain != nil && stopCopy != nil {
		g := result.Goals(drain, stopCopy)
		res.Goals = &g
	}
	if drain != nil && drain.Transfer == nil {
		res.Warnings = append(res.Warnings, "the destination logged no state transfer of the image")
	}
	if drain != nil && drain.Transfer != nil && drain.Transfer.AtMs < drain.TriggerMs {
		res.Warnings = append(res.Warnings, "the destination took the image's state when its owner started (the controller's health test "+
			"action starts it on every invoker that joins), before the trigger: the drain found the image warm and keyed and moved "+
			"no state at the switch, and stop-and-copy found it warm too; the transfer figures are that start's")
	}
	res.FinishedAt = time.Now()
	res.Finish()
	if err := write(res, out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "results: %s\nreport:  %s\n", out, strings.TrimSuffix(out, ".json")+".md")
	if runErr != nil {
		return fmt.Errorf("run stopped early (partial results written): %w", runErr)
	}
	fmt.Fprintf(stdout, "\ninvoker0 out of service under %.0f req/s: pre-copy drain vs stop-and-copy\n\n%s\n", f.rate, result.DrainTable(drain, stopCopy))
	for _, l := range res.Goals.GoalLines() {
		fmt.Fprintln(stdout, "goal:", l)
	}
	for _, p := range []*result.DrainPhase{drain, stopCopy} {
		for _, e := range p.Errors {
			fmt.Fprintf(stdout, "%s failed: %s\n", p.Trigger, e)
		}
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if drain.Failed > 0 {
		return &partialError{msg: fmt.Sprintf("drain phase: %d of %d requests failed (see the report)", drain.Failed, drain.Submitted)}
	}
	return nil
}
