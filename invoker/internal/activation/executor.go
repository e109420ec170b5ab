package activation

import (
	"context"
	"time"

	"github.com/teemate/platform/invoker/internal/wire"
	"github.com/teemate/platform/invoker/whisk"
)

// Job is one activation ready to run: the message, the fetched action and everything the action
// proxy's /init and /run need, already computed by the pipeline.
type Job struct {
	Msg    *whisk.ActivationMessage
	Action *whisk.Action
	// Name is the sandbox name, OpenWhisk style: wsk{N}_{counter}_{ns}_{action}.
	Name string
	// Image is the runtime kind the action needs, e.g. "nodejs:20"; one warm enclave serves each.
	Image string
	// Init is /init's "value" object: name, main, code, binary, env (init args and __OW_* values).
	Init wire.Init
	// Run is /run's body: value (content without init args) and the __OW_* fields.
	Run wire.Run
	// Deadline is when the run must have finished (transaction start is not used: OpenWhisk
	// computes it from the start of the run, now + timeout).
	Deadline time.Time
	// Timeout, MemoryMB and LogLimitBytes are the action's limits.
	Timeout       time.Duration
	MemoryMB      int
	LogLimitBytes int64
	// Network says the action may use the network (OpenWhisk gives every container a network; we give
	// one only to actions that ask, through the annotation "network": true).
	Network bool
}

// Outcome is what an executor reports for one job. Every failure is already classified into
// Response (OpenWhisk status codes and texts); an executor never returns a Go error.
type Outcome struct {
	Response whisk.ActivationResponse
	// Logs are formatted OpenWhisk log lines ("<time> stdout: text"), truncation line included.
	Logs []string
	// Start and End bound init plus run (OpenWhisk's activation start/end).
	Start, End time.Time
	// InitTime is the /init duration when this activation initialised a fresh sandbox; with a fresh
	// sandbox per activation it is always set (OpenWhisk shows it as a cold start).
	InitTime time.Duration
	// TimedOut marks a run that reached its time limit (annotation timeout:true).
	TimedOut bool
	// Phases are per-phase durations (metrics.Phase* names), recorded in metrics and in the record's
	// "timings" annotation so the bench can read them.
	Phases map[string]time.Duration
	// Retried, when set, is why a first attempt failed (a whisk internal error's text) before any of
	// the action's code ran; the activation then ran again on a fresh sandbox, and this is the
	// second attempt's outcome (annotations retried:true and retryReason).
	Retried string
}

// Executor runs activations. Implementations are safe for concurrent use and must return when ctx
// ends (answering with a whisk error), never hang.
type Executor interface {
	Run(ctx context.Context, job *Job) Outcome
}

// Unavailable is the Executor used when no enclave or sandbox backend is configured: every activation
// is answered with a whisk internal error that says why, never left hanging.
type Unavailable struct{ Reason string }

// Run answers the job with a whisk error.
func (u Unavailable) Run(_ context.Context, _ *Job) Outcome {
	now := time.Now()
	return Outcome{
		Response: whisk.WhiskError("The invoker cannot run actions: " + u.Reason),
		Start:    now, End: now,
	}
}
