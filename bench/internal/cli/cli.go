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
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/teemate/platform/bench/internal/harness"
	"github.com/teemate/platform/bench/internal/result"
	"github.com/teemate/platform/functions"
	"github.com/teemate/platform/functions/hostile"
)

// Profiles. quick fits in under five minutes on a 2-core machine; full is the paper's set.
var (
	QuickFunctions = []string{"dynamic-html", "crypto-md5", "uploader"}
	QuickSizes     = []string{functions.SizeTest}
	// HostileFunctions are the --hostile mode's benign functions besides noop.
	HostileFunctions = []string{"crypto-md5"}
	FullSizes        = []string{functions.SizeSmall}
)

// SealedInterval is --sealed's default --interval.
const SealedInterval = 50 * time.Millisecond

type flags struct {
	quick, verbose, noop, cpu   bool
	hostile, sealed             bool
	hostileStreams              int
	apiHost, auth, sandbox      string
	models, fns, sizes          string
	samples, warmup, repeat     int
	bursts, actionMB, timeoutMs int
	slots                       int
	poolSize                    int
	ociRuntime                  string
	isolateReuse                string
	unsafeOwnerAsRoot           bool
	egressAllow                 string
	interval                    time.Duration
	concurrency, memConcurrency string
	out, name, repo, shim       string
	idleWait, memInterval       time.Duration
	maxLoad                     float64
	sealedProfile               string
	// The drain scenario (drain.go).
	scenario                  string
	rate                      float64
	before, after, switchTail time.Duration
	requestTimeout            time.Duration
}

func parse(args []string, stderr io.Writer) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Bool("direct", true, "the platform runs in the bench: embedded Kafka, the controller-adapter's controller, in-process invokers, one per model (default mode)")
	fs.BoolVar(&f.quick, "quick", false, "quick profile: "+strings.Join(QuickFunctions, ", ")+", size test, 30 samples, 1 repetition (< 5 min)")
	fs.StringVar(&f.apiHost, "api-host", "", "measure a running platform through its REST API instead (e.g. http://127.0.0.1:3233)")
	fs.StringVar(&f.auth, "auth", "", "uuid:key for --api-host")
	fs.StringVar(&f.sandbox, "sandbox", "oci", "sandbox backend of the in-process invokers: oci (containers, teemate-launch by default), docker, or process (development only: not a container)")
	fs.StringVar(&f.models, "models", "teemate,native,strawman", "models to measure (api mode: the platform's model, as a label)")
	fs.StringVar(&f.fns, "functions", "", "comma-separated functions (default: all nine; quick: "+strings.Join(QuickFunctions, ",")+")")
	fs.StringVar(&f.sizes, "sizes", "", "comma-separated input sizes: test, small, large (default small; quick: test)")
	fs.IntVar(&f.samples, "samples", 0, "measured sequential invocations per case (default 50; quick 30)")
	fs.IntVar(&f.warmup, "warmup", 0, "discarded invocations before measuring (default 5; quick 3)")
	fs.IntVar(&f.repeat, "repeat", 0, "repetitions of the whole run (default 3; quick 1)")
	fs.IntVar(&f.bursts, "bursts", 0, "bursts per concurrency and repetition (default 3; quick 1)")
	fs.StringVar(&f.concurrency, "concurrency", "8,64", "burst sizes for throughput")
	fs.StringVar(&f.memConcurrency, "memory-concurrency", "1,64", "burst sizes sampled for peak memory")
	fs.DurationVar(&f.memInterval, "memory-interval", 5*time.Millisecond, "memory sampling interval")
	fs.BoolVar(&f.unsafeOwnerAsRoot, "unsafe-owner-as-root", false, "run the warm enclave owners as root without confinement (to measure what confinement costs)")
	fs.StringVar(&f.egressAllow, "egress-allow", "", `extra host-loopback endpoints the owners may reach, "host:port,..." (the object store is added)`)
	fs.StringVar(&f.ociRuntime, "oci-runtime", "", "runtime of the oci sandbox: teemate-launch (default), runc or crun")
	fs.StringVar(&f.isolateReuse, "isolate-reuse", "none", "teemate's isolate reuse: none (a new isolate per activation, the default) or tenant (each enclave thread keeps its isolate for the bench's one namespace, a new context per activation; an option, never the default across tenants)")
	fs.IntVar(&f.poolSize, "pool-size", 0, "created sandboxes the oci and process backends keep ready (0: the backend's default, 2)")
	fs.DurationVar(&f.interval, "interval", 0, "least time between the starts of sequential latency samples (0: back to back)")
	fs.IntVar(&f.slots, "slots", 0, "TCS slots of teemate's warm enclave (default: 4 per core; requests beyond wait for a thread; the owner's memory grows with it)")
	fs.IntVar(&f.actionMB, "action-memory", 256, "memory limit of every action (MB)")
	fs.IntVar(&f.timeoutMs, "timeout-ms", 60000, "time limit of every action (ms)")
	fs.BoolVar(&f.noop, "noop", true, "also measure the trivial noop action (invoker overhead, new-isolate cost)")
	fs.BoolVar(&f.cpu, "cpu", true, "account the CPU per activation of the latency samples by component (owner, sandbox runtime, platform, shim/proxy)")
	fs.StringVar(&f.out, "out", "", "result JSON (default bench/results/<name>.json); the .md and .svg files go beside it")
	fs.StringVar(&f.name, "name", "", "run name (default quick or full plus a timestamp)")
	fs.StringVar(&f.repo, "repo", "", "repository root (default: found from the working directory)")
	fs.StringVar(&f.shim, "shim", "", "the teemate model's shim (default <repo>/bin/teemate-shim; the strawman model uses teemate-strawman beside it)")
	fs.DurationVar(&f.idleWait, "idle-wait", 30*time.Second, "wait up to this long for an idle machine before starting (then warn)")
	fs.Float64Var(&f.maxLoad, "max-load-per-core", 0.5, "idle means a one-minute load average below this per core")
	fs.BoolVar(&f.verbose, "verbose", false, "log the invokers at info level")
	fs.BoolVar(&f.hostile, "hostile", false, "hostile mode: the benign teemate stream (noop and --functions, default "+strings.Join(HostileFunctions, ",")+
		") alone, then beside the hostile mix of functions/hostile on the same warm enclave; p50/p99 side by side (direct mode only)")
	fs.IntVar(&f.hostileStreams, "hostile-streams", 1, "hostile mode: hostile activations running at a time")
	fs.BoolVar(&f.sealed, "sealed", false, "sealed mode: the noop action unsealed and sealed (sealed code and parameters, sealed result and receipt), "+
		"alternately on the teemate model; both p50s and their difference (goal < 1 ms); --interval defaults to "+SealedInterval.String()+" here")
	fs.StringVar(&f.sealedProfile, "sealed-cpuprofile", "", "sealed mode: write Go CPU profiles of the bench process (its controller, broker, invoker and client) "+
		"during the unsealed and the sealed CPU blocks to PREFIX-unsealed.pprof and PREFIX-sealed.pprof")
	drainFlags(fs, f)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	def := func(p *int, full, quick int) {
		if *p == 0 {
			*p = full
			if f.quick {
				*p = quick
			}
		}
	}
	def(&f.samples, 50, 30)
	def(&f.warmup, 5, 3)
	def(&f.repeat, 3, 1)
	def(&f.bursts, 3, 1)
	if f.samples < 1 || f.warmup < 0 || f.repeat < 1 || f.bursts < 1 || f.actionMB < 128 || f.timeoutMs < 100 {
		return nil, errors.New("samples, repeat and bursts must be >= 1, warmup >= 0, action-memory >= 128, timeout-ms >= 100")
	}
	if (f.apiHost == "") != (f.auth == "") {
		return nil, errors.New("--api-host and --auth go together")
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if err := checkScenario(f, set); err != nil {
		return nil, err
	}
	if f.sealed {
		// Paced unless asked otherwise: back to back, the owner's slots fall behind preparing
		// fresh environments on a busy machine, and whether a sample finds one prepared (about
		// 0.2 ms) or makes its own (40-100 ms) then decides the p50s more than sealing does.
		if !set["interval"] {
			f.interval = SealedInterval
		}
		if f.hostile {
			return nil, errors.New("--sealed and --hostile are separate runs")
		}
		if f.models != "teemate,native,strawman" && f.models != "teemate" {
			return nil, errors.New("--sealed measures the teemate model only")
		}
		f.models = "teemate"
	}
	if f.hostile {
		if f.apiHost != "" {
			return nil, errors.New("--hostile runs its own platform (the hostile actions attack its endpoints): not with --api-host")
		}
		if f.models != "teemate,native,strawman" && f.models != "teemate" {
			return nil, errors.New("--hostile measures the teemate model only")
		}
		if f.hostileStreams < 1 || f.hostileStreams > 16 {
			return nil, errors.New("--hostile-streams must be 1..16")
		}
		f.models = "teemate"
	}
	return f, nil
}

func list(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func ints(s string) ([]int, error) {
	var out []int
	for _, p := range list(s) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("bad concurrency %q (1..1024)", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// cases expands the function and size filters; a size a function lacks is an error.
func cases(f *flags) ([]harness.CaseSpec, error) {
	fns := list(f.fns)
	if len(fns) == 0 {
		fns = functions.Names()
		if f.quick {
			fns = QuickFunctions
		}
		if f.hostile {
			fns = HostileFunctions
		}
	}
	sizes := list(f.sizes)
	if len(sizes) == 0 {
		sizes = FullSizes
		if f.quick || f.hostile {
			sizes = QuickSizes
		}
	}
	var out []harness.CaseSpec
	for _, name := range fns {
		fn, err := functions.Get(name)
		if err != nil {
			return nil, err
		}
		for _, s := range sizes {
			if _, err := fn.Input(s); err != nil {
				return nil, err
			}
			out = append(out, harness.CaseSpec{Function: name, Size: s})
		}
	}
	return out, nil
}

func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root not found (run from inside the repository or pass --repo)")
		}
		dir = parent
	}
}

// Main runs the command and returns the exit status: 0 when every response was valid, 1 on an
// error, 2 when the run finished but some responses were invalid or a model could not run.
func Main(args []string, stdout, stderr io.Writer) int {
	// Timing must not pay for the machine's extra CA bundle on every Node start, in this process or
	// its children (the in-process invokers' enclave owners and sandboxes).
	_ = os.Unsetenv("NODE_EXTRA_CA_CERTS")
	f, err := parse(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	runner := run
	if f.scenario == ScenarioDrain {
		runner = runDrain
	}
	if err := runner(f, stdout, stderr); err != nil {
		var partial *partialError
		if errors.As(err, &partial) {
			fmt.Fprintln(stderr, "bench:", err)
			return 2
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	return 0
}

type partialError struct{ msg string }

func (e *partialError) Error() string { return e.msg }

func run(f *flags, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cs, err := cases(f)
	if err != nil {
		return err
	}
	conc, err := ints(f.concurrency)
	if err != nil {
		return err
	}
	memConc, err := ints(f.memConcurrency)
	if err != nil {
		return err
	}
	repo := f.repo
	if repo == "" {
		if repo, err = findRepo(); err != nil {
			return err
		}
	}
	profile, name, out, err := naming(f, repo)
	if err != nil {
		return err
	}

	env := harness.Environment(repo)
	env.Sandbox, env.Enclave, env.Mode = f.sandbox, "direct", "direct"
	if f.sandbox == "process" {
		env.Sandbox = ProcessLabel
	}
	env.MemorySampler = "PSS of the invoker's descendant processes (/proc/<pid>/smaps_rollup, RSS fallback)"
	if f.apiHost != "" {
		env.Mode, env.APIHost, env.Sandbox, env.Enclave = "api", f.apiHost, "platform's", "platform's"
		env.MemorySampler = "not measured in api mode"
	}
	fmt.Fprintf(stderr, "bench: checking that the machine is idle (up to %s)...\n", f.idleWait)
	load, idle, waited := harness.WaitIdle(ctx, f.idleWait, f.maxLoad)
	env.LoadAvgBefore, env.Idle, env.IdleWaitedS = load, idle, waited.Seconds()
	res := &result.Result{Schema: result.SchemaVersion, Name: name, StartedAt: time.Now(), Environment: env}
	if !idle {
		w := fmt.Sprintf("machine not idle: load average %.2f %.2f %.2f on %d cores after waiting %.0f s; timings are noisy",
			load[0], load[1], load[2], env.Cores, waited.Seconds())
		res.Warnings = append(res.Warnings, w)
		fmt.Fprintln(stderr, "bench: warning:", w)
	}
	if f.apiHost == "" && f.sandbox == "process" {
		res.Warnings = append(res.Warnings, "process sandbox: development only, not a container; container figures need --sandbox oci")
		fmt.Fprintln(stderr, "bench: the process sandbox is for development only (not a container); the default is --sandbox oci")
	}
	if !env.SGX {
		res.Warnings = append(res.Warnings, "no SGX: strawman's enclave creation is a runtime boot and teemate uses the direct enclave; these are not SGX numbers")
	}
	models := list(f.models)
	var fnNames, sizes []string
	seen := map[string]bool{}
	for _, c := range cs {
		if !seen[c.Function] {
			seen[c.Function] = true
			fnNames = append(fnNames, c.Function)
		}
		if !seen["size:"+c.Size] {
			seen["size:"+c.Size] = true
			sizes = append(sizes, c.Size)
		}
	}
	res.Config = result.Config{Profile: profile, Functions: fnNames, Sizes: sizes, Models: models, Warmup: f.warmup,
		Samples: f.samples, Repeat: f.repeat, Concurrency: conc, Bursts: f.bursts,
		MemoryIntervalMs: float64(f.memInterval.Microseconds()) / 1000, ActionMemoryMB: f.actionMB,
		IntervalMs: float64(f.interval.Microseconds()) / 1000, PoolSize: f.poolSize, OCIRuntime: ociRuntimeLabel(f)}
	if f.isolateReuse != "" && f.isolateReuse != "none" {
		res.Config.IsolateReuse = f.isolateReuse
	}

	platform, cleanup, err := startPlatform(f, repo, models, conc, memConc)
	if err != nil {
		return err
	}
	defer cleanup()

	opts := harness.Options{Models: models, Cases: cs, Warmup: f.warmup, Samples: f.samples, Repeat: f.repeat, Interval: f.interval,
		Concurrency: conc, Bursts: f.bursts, MemoryConcurrency: memConc, MemoryInterval: f.memInterval,
		ActionMemoryMB: f.actionMB, TimeoutMs: f.timeoutMs, Noop: f.noop, NoCPU: !f.cpu,
		NoSandboxNetwork: f.apiHost == "" && f.sandbox == "oci",
		Progress:         func(s string) { fmt.Fprintln(stderr, s) }}
	if f.sandbox == "docker" || f.sandbox == "oci" {
		opts.CgroupGlobs = CgroupGlobs
	}
	var runErr error
	if f.hostile {
		ho := harness.HostileOptions{Cases: cs, Noop: f.noop, Warmup: f.warmup, Samples: f.samples, Interval: f.interval,
			Streams: f.hostileStreams, Hostile: harness.HostileMix(), ActionMemoryMB: f.actionMB, TimeoutMs: f.timeoutMs,
			Progress: opts.Progress}
		if d, ok := platform.(interface{ HostileParams() hostile.Params }); ok {
			ho.Params = d.HostileParams()
		}
		runErr = harness.RunHostile(ctx, platform, ho, res)
	} else if f.sealed {
		runErr = harness.RunSealed(ctx, platform, harness.SealedOptions{Warmup: f.warmup, Samples: f.samples, Interval: f.interval,
			ActionMemoryMB: f.actionMB, TimeoutMs: f.timeoutMs, CPUProfile: f.sealedProfile, Progress: opts.Progress}, res)
	} else {
		runErr = harness.Run(ctx, platform, opts, res)
	}
	res.FinishedAt = time.Now()
	res.Finish()
	if err := write(res, out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "results: %s\nreport:  %s\n", out, strings.TrimSuffix(out, ".json")+".md")
	printSummary(stdout, res)
	return exitStatus(res, runErr)
}

// naming returns the run's profile, its name and the results file (whose directory it creates).
func naming(f *flags, repo string) (profile, name, out string, err error) {
	profile = "full"
	if f.quick {
		profile = "quick"
	}
	if f.hostile {
		profile = "hostile"
	}
	if f.sealed {
		profile = "sealed"
	}
	if f.scenario == ScenarioDrain {
		profile = ScenarioDrain
	}
	name = f.name
	if name == "" && f.out != "" {
		name = strings.TrimSuffix(filepath.Base(f.out), ".json")
	}
	if name == "" {
		name = profile + "-" + time.Now().Format("20060102-150405")
	}
	out = f.out
	if out == "" {
		out = filepath.Join(repo, "bench", "results", name+".json")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", "", "", fmt.Errorf("results directory: %w", err)
	}

	return profile, name, out, nil
}

// startPlatform starts what the bench measures: the platform at --api-host, or an in-process one
// (embedded broker, the controller-adapter's controller, one invoker per model). The returned func
// stops it and removes what it made.
func startPlatform(f *flags, repo string, models []string, conc, memConc []int) (harness.Platform, func(), error) {
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	fail := func(err error) (harness.Platform, func(), error) {
		cleanup()
		return nil, nil, err
	}
	if f.apiHost != "" {
		if len(models) != 1 {
			return nil, nil, errors.New("api mode measures the platform's configured model: pass exactly one --models label")
		}
		platform, err := harness.NewAPI(f.apiHost, f.auth)
		if err != nil {
			return nil, nil, err
		}
		return platform, platform.Close, nil
	}
	level := zapcore.ErrorLevel
	if f.verbose {
		level = zapcore.InfoLevel
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	log, err := zc.Build()
	if err != nil {
		return nil, nil, fmt.Errorf("logger: %w", err)
	}
	cleanups = append(cleanups, func() { _ = log.Sync() }) // stderr may not sync (a terminal or a pipe); nothing to do about it
	state, err := os.MkdirTemp("", "bench-state-")
	if err != nil {
		return fail(fmt.Errorf("state dir: %w", err))
	}
	cleanups = append(cleanups, func() {
		if err := os.RemoveAll(state); err != nil {
			log.Warn("remove the state directory", zap.String("dir", state), zap.Error(err))
		}
	})
	maxConc := 1
	for _, c := range append(append([]int(nil), conc...), memConc...) {
		maxConc = max(maxConc, c)
	}
	shim := f.shim
	if shim == "" {
		shim = filepath.Join(repo, "bin", "teemate-shim")
	}
	strawman := filepath.Join(filepath.Dir(shim), "teemate-strawman")
	for _, s := range []string{shim, strawman} {
		if _, err := os.Stat(s); err != nil {
			return fail(fmt.Errorf("shim not found (run make build): %w", err))
		}
	}
	d, err := harness.StartDirect(harness.DirectConfig{RepoDir: repo, ShimPath: shim, Sandbox: f.sandbox,
		Concurrency: maxConc, Slots: f.slots, PoolSize: f.poolSize, OCIRuntime: f.ociRuntime, ActionMemoryMB: f.actionMB, StateDir: state, Logger: log,
		UnsafeOwnerAsRoot: f.unsafeOwnerAsRoot, EgressAllow: f.egressAllow, IsolateReuse: f.isolateReuse})
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, d.Close)
	return d, cleanup, nil
}

// exitStatus is the run's error: the run stopped early, or it finished with a model that could not
// run or with invalid answers (a partialError: the results are complete but not all good).
func exitStatus(res *result.Result, runErr error) error {
	if runErr != nil {
		return fmt.Errorf("run stopped early (partial results written): %w", runErr)
	}
	for _, m := range res.Models {
		if !m.Available {
			return &partialError{msg: "model " + m.Name + " could not run: " + m.Reason}
		}
	}
	if s := res.Sealed; s != nil && s.UnsealedInvalid+s.SealedInvalid > 0 {
		return &partialError{msg: fmt.Sprintf("sealed run: %d answers were invalid (see the report)", s.UnsealedInvalid+s.SealedInvalid)}
	}
	if h := res.Hostile; h != nil && h.BenignInvalid() > 0 {
		return &partialError{msg: fmt.Sprintf("hostile run: %d benign answers were invalid (see the report)", h.BenignInvalid())}
	}
	for _, c := range res.Cases {
		if !c.AllValid {
			return &partialError{msg: fmt.Sprintf("%s/%s/%s had invalid responses (see the report)", c.Model, c.Function, c.Size)}
		}
	}
	return nil
}

// ProcessLabel names the process sandbox in the output: it runs each sandbox as a plain process
// on the host, not a container, so its figures are not the platform's.
const ProcessLabel = "process (development only: not a container)"

// CgroupGlobs locate container cgroups of the docker and oci backends (cgroup v2 and v1 layouts).
var CgroupGlobs = []string{
	"/sys/fs/cgroup/system.slice/docker-*.scope",
	"/sys/fs/cgroup/docker/*",
	"/sys/fs/cgroup/memory/docker/*",
	"/sys/fs/cgroup/teemate/*",
	"/sys/fs/cgroup/memory/teemate/*",
}

func write(res *result.Result, out string) error {
	dir := filepath.Dir(out)
	base := strings.TrimSuffix(filepath.Base(out), ".json")
	plots, perr := res.WritePlots(dir, base)
	if perr != nil {
		res.Warnings = append(res.Warnings, "plots: "+perr.Error())
	}
	b, err := res.Encode()
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, base+".md"), []byte(res.Markdown(plots)), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func printSummary(w io.Writer, r *result.Result) {
	if s := r.Sealed; s != nil {
		fmt.Fprintf(w, "\nnoop latency (ms), unsealed and sealed:\n\n%s", s.Table())
	}
	if h := r.Hostile; h != nil {
		fmt.Fprintf(w, "\nbenign latency (ms) alone and beside the hostile mix (full passes of the mix: %d; hostile streams: %d):\n\n%s", h.Passes, h.HostileStreams, h.Table())
		for _, wn := range r.Warnings {
			fmt.Fprintln(w, "warning:", wn)
		}
		return
	}
	fmt.Fprintf(w, "\n%-9s %5s %9s %9s %9s %9s %9s %9s %10s\n", "model", "cases", "p50 ms", "p99 ms", "req/s@8", "req/s@64", "MiB@1", "MiB@64", "CPU ms/act")
	for _, m := range r.Config.Models {
		s, ok := r.Summary.Models[m]
		if !ok {
			fmt.Fprintf(w, "%-9s not measured\n", m)
			continue
		}
		fmt.Fprintf(w, "%-9s %5d %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %10.1f\n", m, s.Cases, s.P50Ms, s.P99Ms, s.Throughput8, s.Throughput64, s.PeakMemory1MB, s.PeakMemory64MB, s.CPUMs)
	}
	q := r.Summary.Ratios
	fmt.Fprintf(w, "\nratios (larger is better for teemate): latency vs native %.2fx, vs strawman %.2fx (paper %s); throughput vs strawman @8 %.2fx @64 %.2fx (paper %s); memory@64 strawman/teemate %.2fx (paper %s)\n",
		q.LatencyTeemateVsNative, q.LatencyTeemateVsStrawman, result.PaperLatencyVsStrawman, q.Throughput8TeemateVsStrawman,
		q.Throughput64TeemateVsStrawman, result.PaperThroughputVsStrawman, q.Memory64StrawmanVsTeemate, result.PaperMemoryVsStrawman)
	if o := r.Issue3["teemate"]; o != nil {
		fmt.Fprintf(w, "noop on teemate (n=%d): new isolate per activation p50 %.2f ms; invoker overhead excluding the function p50 %.2f ms (p99 %.2f ms); end-to-end p50 %.2f ms\n",
			o.N, o.NewIsolateP50Ms, o.OverheadP50Ms, o.OverheadP99Ms, o.EndToEndP50Ms)
	}
	printCPU(w, r)
	for _, wn := range r.Warnings {
		fmt.Fprintln(w, "warning:", wn)
	}
}

// printCPU prints each case's CPU per activation by component.
func printCPU(w io.Writer, r *result.Result) {
	header := false
	for _, c := range r.Cases {
		u := c.CPU
		if u == nil {
			continue
		}
		if !header {
			fmt.Fprintf(w, "\nCPU ms per activation (latency samples; in sandbox = shim, native proxy or strawman runtime):\n%-9s %-22s %7s %8s %8s %9s %8s %8s\n",
				"model", "case", "owner", "runtime", "platform", "in sandbox", "total", "settled")
			header = true
		}
		fmt.Fprintf(w, "%-9s %-22s %7.1f %8.1f %8.1f %9.1f %8.1f %8v\n", c.Model, c.Function+"/"+c.Size,
			u.Owner, u.SandboxRuntime, u.Platform, u.InSandbox(), u.Total, u.Settled)
	}
}

// ociRuntimeLabel is the runtime the oci sandbox runs with, for the result's config: the flag, or
// the invokers' default when it is empty; nothing when the sandbox is not oci.
func ociRuntimeLabel(f *flags) string {
	switch {
	case f.sandbox != "oci":
		return ""
	case f.ociRuntime == "":
		return harness.DefaultOCIRuntime
	}
	return f.ociRuntime
}
