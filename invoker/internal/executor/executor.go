package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/activation"
	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/metrics"
	"github.com/teemate/platform/invoker/internal/proxy"
	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/whisk"
)

// Enclaves hands out leases on warm enclave threads; *enclave.Manager implements it.
type Enclaves interface {
	Reserve(ctx context.Context, image string) (*enclave.Lease, error)
}

// Config configures the Executor.
type Config struct {
	// Model is the strategy: SharedEnclave (the TeeMate design), Native or Strawman. Required.
	Model Model
	// ProxyDir is a host directory under which each sandbox gets a directory for its action-proxy
	// socket. Required; keep it short (unix socket paths are limited to 107 bytes).
	ProxyDir string
	// Grace is added to every wait beyond the action's own limits (5 s by default), so the enclave's
	// timeout reply wins over the invoker's and a broken sandbox is still noticed in bounded time.
	Grace time.Duration
	// ReadyTimeout bounds the wait for the shim to listen (10 s by default).
	ReadyTimeout time.Duration
	// LogConfig gives the collection limits for a log limit; proxy.DefaultLogConfig by default.
	LogConfig func(limitBytes int64) proxy.LogConfig
	// OnTeardown, when set, receives each sandbox's teardown time (it happens after the answer, so
	// it is not part of the Outcome's phases).
	OnTeardown func(time.Duration)
}

// Guest paths used when the sandbox backend can remap mounts.
const (
	guestProxyDir = "/run/teemate/proxy"
	guestGateDir  = "/run/teemate/gate"
	proxySockName = "proxy.sock"
)

// Executor runs each activation in a fresh sandbox, shaped by its Model: attached to the warm
// shared enclave of the action's image (SharedEnclave), or with its own runtime inside (Native,
// Strawman). It implements activation.Executor.
type Executor struct {
	enclaves  Enclaves
	sandboxes sandbox.Runtime
	cfg       Config
	log       *zap.Logger
	seq       atomic.Uint64
	teardowns sync.WaitGroup
}

var _ activation.Executor = (*Executor)(nil)

// RotateKey gives image a new image key in its warm enclaves (the invoker's admin POST
// /keys/rotate). An error wraps enclave.ErrNoOwner when no owner of image runs here, or when the
// enclaves cannot rotate keys at all.
func (t *Executor) RotateKey(ctx context.Context, image string) (kid, previous string, err error) {
	r, ok := t.enclaves.(interface {
		RotateKey(ctx context.Context, image string) (string, string, error)
	})
	if !ok {
		return "", "", fmt.Errorf("rotate image key of %s: these enclaves keep no image keys: %w", image, enclave.ErrNoOwner)
	}
	return r.RotateKey(ctx, image)
}

// New makes the executor.
func New(enclaves Enclaves, sandboxes sandbox.Runtime, cfg Config, log *zap.Logger) (*Executor, error) {
	if cfg.Model == nil || cfg.ProxyDir == "" {
		return nil, errors.New("executor: Model and ProxyDir are required")
	}
	if err := cfg.Model.validate(); err != nil {
		return nil, fmt.Errorf("executor: %w", err)
	}
	if err := os.MkdirAll(cfg.ProxyDir, 0o755); err != nil {
		return nil, fmt.Errorf("executor: %w", err)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 5 * time.Second
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	if cfg.LogConfig == nil {
		cfg.LogConfig = proxy.DefaultLogConfig
	}
	return &Executor{enclaves: enclaves, sandboxes: sandboxes, cfg: cfg, log: log}, nil
}

// oomGrace is how long a broken connection waits for the sandbox's exit to learn whether it was
// killed for its memory.
const oomGrace = 2 * time.Second

// abortGrace is how long a call may still finish after the owner died or the sandbox exited.
const abortGrace = time.Second

// Abort causes of one activation's calls.
var (
	errOwnerDied     = errors.New("enclave owner died")
	errSandboxExited = errors.New("sandbox exited")
)

// ownerGrace is how long a reply without a result of the enclave waits for the evidence that the
// owner died: the shim answers as soon as its gate connection breaks, usually before the manager
// has reaped the owner and dropped it.
const ownerGrace = 3 * time.Second

// Run runs one job. It never hangs: every wait is bounded by the job's limits plus the grace, and
// the owner's death or the sandbox's exit aborts the calls in flight. An attempt that failed
// through the platform's fault before the action's code could run is run again, once (retryable);
// the outcome then says so (Outcome.Retried).
func (t *Executor) Run(ctx context.Context, job *activation.Job) activation.Outcome {
	out, end := t.attempt(ctx, job, 1)
	if !retryable(end) {
		return out
	}
	first := errorText(out.Response)
	if end.died != nil && end.failedIn == stateInitializing {
		// The shim met the enclave and failed there: give the manager a moment to drop an owner
		// that is dying, so the second lease goes to a live one.
		select {
		case <-end.died:
		case <-time.After(abortGrace):
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		return out // the invoker gave up meanwhile: the first attempt's whisk error stands
	}
	t.log.Warn("activation failed before the action's code ran: running it again on a fresh sandbox",
		zap.String("sandbox", job.Name), zap.String("image", job.Image), zap.Stringer("failed_in", end.failedIn),
		zap.String("first", first))
	out, _ = t.attempt(ctx, job, 2)
	out.Retried = first
	return out
}

// errorText is the "error" string of a failed response's result ("" when there is none).
func errorText(r whisk.ActivationResponse) string {
	var b struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.Result, &b); err != nil {
		return "" // a result without an error string: nothing to quote
	}
	return b.Error
}

// attempt runs the job once, in a fresh sandbox, and says how it ended for the retry rule.
func (t *Executor) attempt(ctx context.Context, job *activation.Job, number int) (activation.Outcome, attemptEnd) {
	timeout := job.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	// Creation, readiness, init and run each have their own bound; this caps them all together.
	hctx, cancel := context.WithTimeout(ctx, t.cfg.ReadyTimeout+2*timeout+3*t.cfg.Grace)
	defer cancel()
	out := activation.Outcome{Phases: map[string]time.Duration{}}
	name := job.Name
	if number > 1 {
		// The first sandbox may still be being removed (behind the answer), and a backend may
		// name its container after the sandbox (docker).
		name = fmt.Sprintf("%s_retry%d", job.Name, number-1)
	}
	log := t.log.With(zap.String("sandbox", name), zap.String("image", job.Image))
	end := attemptEnd{number: number, failedIn: stateCreating}
	ended := func(o activation.Outcome) (activation.Outcome, attemptEnd) {
		end.status = o.Response.StatusCode
		end.aborted = end.aborted || ctx.Err() != nil
		end.exhausted = hctx.Err() != nil
		return o, end
	}

	// Only SharedEnclave shares a warm enclave; the other two models bring their own runtime into
	// every sandbox, so nothing can die under them but the sandbox itself.
	var died <-chan struct{}
	var lease *enclave.Lease
	gateDir := ""
	if t.cfg.Model.SharesEnclave() {
		var err error
		lease, err = t.enclaves.Reserve(hctx, job.Image)
		if err != nil {
			end.aborted = errors.Is(err, enclave.ErrClosed)
			return ended(t.failEarly(ctx, out, log, "no enclave thread", err))
		}
		defer lease.Release()
		died, gateDir = lease.Died(), lease.Dir()
		end.died = died
	}

	dir := filepath.Join(t.cfg.ProxyDir, strconv.FormatUint(t.seq.Add(1), 36))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ended(t.failEarly(ctx, out, log, "proxy directory", err))
	}
	removeDir := func() {
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("removing the proxy directory failed", zap.Error(err))
		}
	}
	spec := t.spec(job, name, timeout, dir, gateDir)
	if lease != nil {
		addGateToken(spec.Env, lease.Owner, job)
		addSealedHint(spec.Env, job)
	}

	lc := &life{state: stateCreating, log: log}
	t0 := time.Now()
	sb, err := t.sandboxes.Create(hctx, spec)
	out.Phases[metrics.PhaseSandboxCreate] = time.Since(t0)
	if err != nil {
		lc.on(evCreateFailed)
		removeDir()
		return ended(t.failEarly(ctx, out, log, "sandbox create", err))
	}
	lc.on(evCreated)
	end.failedIn, end.noUserCode = t.activate(hctx, ctx, job, timeout, lease, sb, lc, &out, log)

	// The answer goes out first and the sandbox is removed behind it, as OpenWhisk removes a
	// container after the activation's acks; the sandbox has already served its one activation.
	// Close waits for these teardowns.
	t.teardowns.Add(1)
	go func() {
		defer t.teardowns.Done()
		defer removeDir()
		t1 := time.Now()
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer dcancel()
		if err := sb.Destroy(dctx); err != nil {
			lc.on(evRemoveFailed)
			log.Error("destroying the sandbox failed", zap.Error(err))
		} else {
			lc.on(evRemoved)
		}
		if t.cfg.OnTeardown != nil {
			t.cfg.OnTeardown(time.Since(t1))
		}
	}()
	return ended(out)
}

// Close waits for the sandboxes still being removed.
func (t *Executor) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() { t.teardowns.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sandboxes still being removed: %w", ctx.Err())
	}
}

func (t *Executor) spec(job *activation.Job, name string, timeout time.Duration, proxyDir, gateDir string) sandbox.Spec {
	guestProxy, guestGate := proxyDir, gateDir
	if t.sandboxes.Capabilities().RemapsPaths {
		guestProxy, guestGate = guestProxyDir, guestGateDir
	}
	logLimit := job.LogLimitBytes
	if logLimit < 0 {
		logLimit = 0
	}
	spec := sandbox.Spec{
		Name:   name,
		Rootfs: t.cfg.Model.Rootfs(),
		Env: map[string]string{
			"TEEMATE_PROXY_SOCKET":    filepath.Join(guestProxy, proxySockName),
			"TEEMATE_SANDBOX":         name,
			"TEEMATE_MEMORY_MB":       strconv.Itoa(job.MemoryMB),
			"TEEMATE_LOG_LIMIT_BYTES": strconv.FormatInt(logLimit, 10),
			"TEEMATE_TIMEOUT_MS":      strconv.FormatInt(timeout.Milliseconds(), 10),
		},
		MemoryMB:    job.MemoryMB,
		Network:     job.Network,
		Mounts:      []sandbox.Mount{{HostPath: proxyDir, GuestPath: guestProxy}},
		ProxySocket: filepath.Join(proxyDir, proxySockName),
	}
	if job.Network {
		// The shim tells the enclave runtime, which lets the action open client sockets.
		spec.Env["TEEMATE_NETWORK"] = "1"
	}
	t.cfg.Model.shape(&spec, job, guestProxy, guestGate, gateDir)
	return spec
}

// failEarly answers a job that never reached its sandbox's action proxy: a whisk error.
func (t *Executor) failEarly(ctx context.Context, out activation.Outcome, log *zap.Logger, what string, err error) activation.Outcome {
	now := time.Now()
	out.Start, out.End = now, now
	r := proxy.Reply{Unreached: true}
	if ctx.Err() != nil {
		r.Aborted = context.Cause(ctx).Error()
	} else {
		log.Warn("activation failed before the action proxy", zap.String("step", what), zap.Error(err))
	}
	out.Response = proxy.Classify(r).Response
	return out
}

// activate drives the sandbox's action proxy from starting to removing: ready, /init, /run, logs.
// It returns the state the sandbox was in when the activation ended, and whether the verdict says
// none of the action's code ran (the retry rule's inputs). lease is nil when the model shares no
// enclave.
func (t *Executor) activate(hctx, parent context.Context, job *activation.Job, timeout time.Duration,
	lease *enclave.Lease, sb sandbox.Sandbox, lc *life, out *activation.Outcome, log *zap.Logger) (failedIn state, noUserCode bool) {
	var died <-chan struct{}
	if lease != nil {
		died = lease.Died()
	}
	logCfg := t.cfg.LogConfig(job.LogLimitBytes)
	// The shim stamps each line with the enclave's time; the native model's proxy does not.
	logCfg.Stamped = t.shim()
	collector := proxy.Collect(sb.Stdout(), sb.Stderr(), logCfg)

	// Any call in flight is cut short when the owner dies or the sandbox exits. Both normally end
	// the connection by themselves (the shim answers at once when its gate breaks, and an exited
	// sandbox closes its socket), and a reply already written must still be read, so the abort
	// comes only after a short grace: it is the backstop for a sandbox that hangs instead.
	actx, abort := context.WithCancelCause(hctx)
	defer abort(nil)
	go func() {
		var cause error
		select {
		case <-died:
			cause = errOwnerDied
		case <-sb.Exited():
			cause = errSandboxExited
		case <-actx.Done():
			return
		}
		timer := time.NewTimer(abortGrace)
		defer timer.Stop()
		select {
		case <-timer.C:
			abort(cause)
		case <-actx.Done():
		}
	}()

	client, err := proxy.New(sb.ProxySocket())
	if err != nil {
		lc.on(evProxyFailed)
		*out = t.failEarly(parent, *out, log, "proxy client", err)
		return stateStarting, true
	}
	defer client.Close()
	t0 := time.Now()
	err = client.WaitReady(actx, t0.Add(t.cfg.ReadyTimeout))
	out.Phases[metrics.PhaseProxyReady] = time.Since(t0)
	if err != nil {
		lc.on(evProxyFailed)
		phases := out.Phases
		*out = t.failEarly(parent, *out, log, "action proxy not ready", fmt.Errorf("%w (cause: %v)", err, context.Cause(actx)))
		out.Phases = phases
		_ = collector.Wait(hctx, true, sb.Exited()) // drain for the debug log only
		return stateStarting, true
	}

	lc.on(evProxyReady)

	lc.on(evInit)
	body := job.Run
	if body.Deadline == "" {
		dl := job.Deadline
		if dl.IsZero() {
			dl = time.Now().Add(timeout)
		}
		body.Deadline = strconv.FormatInt(dl.UnixMilli(), 10)
	}
	// The shim takes /run behind /init (proxy.Client.InitRun); a standard proxy gets them one
	// after the other, /run only once /init has succeeded.
	pipelined := t.shim()
	var initFailed *classified
	afterInit := func(resp *proxy.Response, err error) bool {
		out.InitTime = time.Since(out.Start)
		// The init's reply is classified with the owner's death as evidence: an owner that died
		// by now makes the init void, and the activation stops here, before any of the action's
		// code ran (with /run already sent, only when the shim failed the init: see
		// proxy.Reply.RunQueued).
		reply := t.reply(true, pipelined, resp, err, actx, parent, timeout, sb, lease, log)
		if resp != nil {
			out.Phases[metrics.PhaseAttach] = msDur(resp.Timings.AttachMs)
			out.Phases[metrics.PhaseTCSAcquire] = msDur(resp.Timings.TCSMs)
			out.Phases[metrics.PhaseInit] = msDur(resp.Timings.InitMs)
			if resp.HasTimings {
				// A backend that binds the proxy's socket before the sandbox starts makes the
				// connect succeed at once; the proxy's own start then shows as the part of /init
				// the shim did not spend on its phases, and counts as the proxy getting ready.
				inShim := resp.Timings.AttachMs + resp.Timings.TCSMs + resp.Timings.InitMs
				if wait := out.InitTime - msDur(inShim); wait > 0 {
					out.Phases[metrics.PhaseProxyReady] += wait
				}
			}
		}
		if reply.aborted != "" || reply.resp.StatusCode != whisk.StatusSuccess {
			initFailed = &reply
			return false
		}
		lc.on(evInitOK)
		return true
	}
	out.Start = time.Now()
	var resp *proxy.Response
	if pipelined {
		resp, err = client.InitRun(actx, job.Init, timeout, body, timeout+t.cfg.Grace, afterInit)
	} else if afterInit(client.Init(actx, job.Init, timeout)) {
		resp, err = client.Run(actx, body, timeout+t.cfg.Grace)
	}
	if initFailed != nil {
		lc.on(evInitFailed)
		t.finish(hctx, out, *initFailed, collector, sb, log)
		return stateInitializing, initFailed.noUserCode
	}
	reply := t.reply(false, false, resp, err, actx, parent, timeout, sb, lease, log)
	lc.on(evRunDone)
	if resp != nil {
		out.Phases[metrics.PhaseIsolateCreate] = msDur(resp.Timings.IsolateMs)
		out.Phases[metrics.PhaseRun] = msDur(resp.Timings.RunMs)
		out.Phases[metrics.PhaseIsolateTeardown] = msDur(resp.Timings.TeardownMs)
	}
	t.finish(hctx, out, reply, collector, sb, log)
	return stateRunning, reply.noUserCode
}

type classified struct {
	resp       whisk.ActivationResponse
	timedOut   bool
	noUserCode bool   // the shim could not use the enclave: no user code ran
	aborted    string // the cause when the invoker itself gave up (ctx ended)
}

func verdict(v proxy.Verdict) classified {
	return classified{resp: v.Response, timedOut: v.TimedOut, noUserCode: v.NoUserCode}
}

// reply classifies one /init or /run call, including why it failed when no reply came and, in the
// teemate model, whether the lease's owner died under it (the evidence Classify needs to tell the
// platform's failure from the action's).
func (t *Executor) reply(init, runQueued bool, resp *proxy.Response, err error, actx, parent context.Context,
	timeout time.Duration, sb sandbox.Sandbox, lease *enclave.Lease, log *zap.Logger) classified {
	// The shim runs none of the action's code itself; OpenWhisk's Node proxy runs it at /init.
	r := proxy.Reply{Init: init, TimeoutMs: timeout.Milliseconds(), Shim: t.shim(), RunQueued: runQueued}
	if err == nil {
		r.Status, r.Body, r.Outcome = resp.Status, resp.Body, resp.Outcome
		r.Truncated, r.Length, r.MaxLength = resp.Truncated, resp.Length, proxy.DefaultMaxResponse
		r.OwnerDied = ownerDied(r, lease, parent, log)
		v := proxy.Classify(r)
		if v.Detail != "" {
			log.Warn("the sandbox could not use the enclave", zap.Bool("init", init), zap.String("detail", v.Detail))
		}
		return verdict(v)
	}
	if parent.Err() != nil {
		cause := context.Cause(parent).Error()
		c := verdict(proxy.Classify(proxy.Reply{Aborted: cause}))
		c.aborted = cause
		return c
	}
	cause := context.Cause(actx)
	log.Debug("action proxy call failed", zap.Bool("init", init), zap.Error(err), zap.NamedError("cause", cause))
	switch {
	case errors.Is(err, proxy.ErrTimeout):
		r.TimedOut = true
	case errors.Is(cause, errSandboxExited) || isClosed(sb.Exited()):
		r.Failed, r.OOM = true, sb.OOMKilled()
	case errors.Is(cause, errOwnerDied):
		// The backstop cut the call short after the owner died: the sandbox did not exit, so
		// there is no memory kill to wait for.
		r.Failed = true
	default:
		// The connection broke, or the overall bound ran out. A memory kill shows as a broken
		// connection before the backend has seen the exit; like OpenWhisk (which polls docker
		// inspect for 2 s), wait briefly for the exit to tell an OOM kill apart.
		r.Failed = true
		select {
		case <-sb.Exited():
			r.OOM = sb.OOMKilled()
		case <-time.After(oomGrace):
		case <-parent.Done():
		}
	}
	r.OwnerDied = ownerDied(r, lease, parent, log)
	return verdict(proxy.Classify(r))
}

// ownerDied says whether the lease's owner is gone, as evidence for Classify (false without a
// lease). The shim's answer for a broken gate waits up to ownerGrace for the evidence: the shim
// answers at once when its gate breaks, before the manager has seen the owner go. No answer at
// all (the sandbox exited, the invoker's clock ran out) waits for nothing more: an owner that died
// has been seen by then, or the backstop that cut the call short was its death.
func ownerDied(r proxy.Reply, lease *enclave.Lease, parent context.Context, log *zap.Logger) bool {
	if lease == nil {
		return false
	}
	if _, lost := lease.Lost(); !lost && r.Status != 0 && r.LostEnclave() {
		select {
		case <-lease.Died():
		case <-time.After(ownerGrace):
		case <-parent.Done():
		}
	}
	reason, lost := lease.Lost()
	if lost && (r.Init || r.LostEnclave()) {
		// Info: the manager warns once per owner ("enclave owner dropped"), this is per activation.
		log.Info("the enclave owner is gone: the activation's failure is the platform's",
			zap.String("enclave", lease.Owner.ID()), zap.String("reason", reason), zap.Bool("init", r.Init))
	}
	return lost
}

// finish records the response and collects the logs.
func (t *Executor) finish(hctx context.Context, out *activation.Outcome, c classified,
	collector *proxy.Collector, sb sandbox.Sandbox, log *zap.Logger) {
	out.End = time.Now()
	out.Response = c.resp
	out.TimedOut = c.timedOut
	devErr := c.resp.StatusCode == whisk.StatusDeveloperError
	logs := collector.Wait(hctx, devErr, sb.Exited())
	out.Logs = logs.Lines
	if logs.Incomplete && !devErr && c.aborted == "" {
		log.Debug("logs ended before both sentinels", zap.Int("sentinels", logs.Sentinels))
	}
}

// shim says the model's action proxy is the teemate shim (the teemate and strawman models), not a
// standard OpenWhisk proxy (native).
func (t *Executor) shim() bool { return t.cfg.Model.Name() != ModelNative }

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func msDur(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// life tracks one sandbox through its lifecycle; the executor moves it with each step's result.
// It is used by one goroutine at a time (the activation's, then its teardown's).
type life struct {
	state state
	log   *zap.Logger
}

func (l *life) on(e event) {
	next, err := transition(l.state, e)
	if err != nil {
		l.log.Error("sandbox lifecycle broken", zap.Error(err))
	} else {
		l.log.Debug("sandbox", zap.Stringer("from", l.state), zap.Stringer("event", e), zap.Stringer("to", next))
	}
	l.state = next
}

// ObserveTeardown sets the callback that receives sandbox teardown times; call it before Run.
func (t *Executor) ObserveTeardown(f func(time.Duration)) { t.cfg.OnTeardown = f }
