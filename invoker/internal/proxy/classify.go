package proxy

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/teemate/platform/invoker/internal/wire"
	"github.com/teemate/platform/invoker/whisk"
)

// Reply is everything the classification looks at for one /init or /run call.
type Reply struct {
	// Init says the reply is /init's (texts differ: "during initialization").
	Init bool
	// Status is the HTTP status; 0 when no reply arrived.
	Status int
	// Body is the reply body (at most the response limit).
	Body []byte
	// Outcome is the shim's outcome header (the enclave's outcome, passed on unchanged, or
	// wire.OutcomeGate); "" from a standard proxy, whose replies are classified by status and
	// body alone, as OpenWhisk does.
	Outcome wire.Outcome
	// TimedOut: the call reached the action's time limit.
	TimedOut bool
	// TimeoutMs is the action's time limit, for the timeout text.
	TimeoutMs int64
	// OOM: the sandbox was killed for exceeding its memory limit.
	OOM bool
	// Failed: the connection failed or the sandbox exited before a reply.
	Failed bool
	// Truncated: the body was longer than MaxLength; Length is its full length.
	Truncated bool
	Length    int64
	MaxLength int64
	// Unreached: the action proxy was never reached (no sandbox, not ready): a whisk error.
	Unreached bool
	// Shim: the action proxy is the teemate shim (the teemate and strawman models), which runs none
	// of the action's code at /init, where a standard proxy runs its top-level code. A shim that
	// never answers /init (its sandbox exited first) failed before the action ran.
	Shim bool
	// Aborted, when set, is why the invoker itself gave up (its context ended): a whisk error
	// carrying that cause, whatever else is known.
	Aborted string
	// OwnerDied: the shared enclave's owner this activation's sandbox was attached to is gone (its
	// process exited, or the enclave manager dropped it as unhealthy). The evidence comes from the
	// enclave manager, never from the sandbox, which runs user code. Without a result of the
	// enclave (LostEnclave), the failure is then the platform's, not the action's.
	OwnerDied bool
	// RunQueued: /run went out behind this /init (Client.InitRun). A shim that answered /init
	// with success then went on to /run at once, so an owner that died since may have died
	// under the action: that is no evidence that none of its code ran, and the /run reply
	// decides. An /init the shim failed is evidence still: it refuses a /run after one.
	RunQueued bool
}

// Texts of the whisk errors for an owner that died under an activation. They say what failed
// without naming anything of the host (the owner's id, pid or exit status go to the invoker's log).
const (
	// MsgEnclaveLostInit: the owner died before the action's code ran (at /init, or between /init
	// and a /run not yet sent); the activation is retried once on a fresh owner.
	MsgEnclaveLostInit = "The enclave serving the action failed before the action ran."
	// MsgEnclaveLostRun: the owner died while the action ran; it is not retried, since the
	// action's code may have run.
	MsgEnclaveLostRun = "The enclave serving the action failed while the action ran."
)

// LostEnclave says that the reply carries no result of the enclave: no reply came at all, or the
// shim answered for a gate connection that broke (OpenWhisk's texts for a container that died,
// outcome developer, which only the shim writes: the enclave reports an action's crash, a
// process.exit or an uncaught error, as a result of its own). With OwnerDied, that is a whisk error.
func (r Reply) LostEnclave() bool {
	if r.Failed || r.Status == 0 {
		return true
	}
	if r.Outcome != wire.OutcomeDeveloper {
		return false
	}
	var b struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(r.Body, &b) != nil {
		return false
	}
	return b.Error == whisk.MsgAbnormalRun || b.Error == whisk.MsgAbnormalInitialization
}

// Verdict is the classification of one activation step.
type Verdict struct {
	Response whisk.ActivationResponse
	// TimedOut: the action reached its time limit (OpenWhisk's annotation timeout:true).
	TimedOut bool
	// NoUserCode: the platform failed before any user code ran (the shim could not use the
	// enclave, or the enclave's owner died before /run), so the activation may be retried.
	NoUserCode bool
	// Detail is the shim's whole text for a gate failure, for the invoker's log: the response
	// keeps only what failed (whatFailed), not the host's detail.
	Detail string
}

// Classify decides an activation step's status: it is the one place that turns what happened
// (a reply of the shim or of a standard action proxy, a failure to reach it, the invoker giving up)
// into an ActivationResponse. Replies are classified the way OpenWhisk's invoker does
// (ActivationResponse.processInitResponseContent / processRunResponseContent), with the teemate
// outcomes on top: "gate" is a whisk error, and "timeout"/"memory" carry the enclave's texts. For
// a successful /init the result is a success with no result; callers go on to /run.
//
// The platform's faults are the platform's: an activation whose sandbox was never reached, whose
// shim could not use the enclave, or whose enclave owner died under it (OwnerDied, without a
// result of the enclave) is a whisk internal error, never a developer error. A successful /init
// on an owner that has died since is one too: the prepared action would run nowhere. The action's
// own failures (a throw, process.exit, its time or memory limit) come back as results of the
// enclave and stay developer errors.
func Classify(r Reply) Verdict {
	switch {
	case r.Aborted != "":
		return Verdict{Response: whisk.WhiskError("The activation was aborted: " + r.Aborted)}
	case r.Unreached:
		return Verdict{Response: whisk.WhiskError(whisk.MsgResourceProvisionError), NoUserCode: true}
	case r.OwnerDied && r.Init && (r.Status == 200 && !r.RunQueued || r.LostEnclave()):
		// Owners exist only in the shared-enclave model, whose /init runs none of the action's
		// code (the enclave only prepares it), so nothing of the action has run yet.
		return Verdict{Response: whisk.WhiskError(MsgEnclaveLostInit), NoUserCode: true}
	case r.OwnerDied && !r.OOM && r.LostEnclave():
		return Verdict{Response: whisk.WhiskError(MsgEnclaveLostRun)}
	case r.Shim && r.Init && r.Failed && !r.OOM && !r.TimedOut:
		return Verdict{Response: whisk.WhiskError(whisk.MsgResourceProvisionError), NoUserCode: true}
	}
	v := Verdict{
		Response:   classifyReply(r),
		TimedOut:   r.TimedOut || r.Outcome == wire.OutcomeTimeout,
		NoUserCode: r.Outcome == wire.OutcomeGate,
	}
	if r.Outcome == wire.OutcomeGate && !r.TimedOut {
		if e, ok := errorField(r.Body); ok {
			v.Detail = string(e)
		}
	}
	return v
}

func classifyReply(r Reply) whisk.ActivationResponse {
	switch {
	case r.TimedOut || (r.Outcome == wire.OutcomeTimeout && !hasErrorField(r.Body)):
		return whisk.DeveloperError(whisk.MsgTimedOut(r.TimeoutMs, r.Init))
	case r.OOM || (r.Outcome == wire.OutcomeMemory && !hasErrorField(r.Body)):
		return whisk.DeveloperError(whisk.MsgMemoryExhausted)
	case r.Failed || r.Status == 0:
		if r.Init {
			return whisk.DeveloperError(whisk.MsgAbnormalInitialization)
		}
		return whisk.DeveloperError(whisk.MsgAbnormalRun)
	case r.Outcome == wire.OutcomeGate:
		if e, ok := errorField(r.Body); ok {
			return whisk.WhiskError(whatFailed(e))
		}
		return whisk.WhiskError(whisk.MsgResourceProvisionError)
	}
	ok := r.Status == 200
	if r.Init {
		if ok {
			return whisk.ActivationResponse{StatusCode: whisk.StatusSuccess}
		}
		if e, has := errorField(r.Body); has {
			return withSize(whisk.ErrorResponse(whisk.StatusDeveloperError, e), len(r.Body))
		}
		return whisk.DeveloperError(whisk.MsgInvalidInitResponse(string(r.Body)))
	}
	if r.Truncated {
		return whisk.ApplicationError(whisk.MsgTruncatedResponse(r.Length, r.MaxLength, string(r.Body)))
	}
	body := bytes.TrimSpace(r.Body)
	switch {
	case len(body) > 0 && body[0] == '{' && json.Valid(body):
		e, has := errorField(body)
		switch {
		case ok && has:
			return withSize(whisk.ErrorResponse(whisk.StatusApplicationError, e), len(r.Body))
		case ok:
			return withSize(whisk.Success(body), len(r.Body))
		case has:
			return withSize(whisk.ErrorResponse(whisk.StatusDeveloperError, e), len(r.Body))
		}
	case len(body) > 0 && body[0] == '[' && json.Valid(body):
		if ok {
			return withSize(whisk.Success(body), len(r.Body))
		}
	}
	return withSize(whisk.DeveloperError(whisk.MsgInvalidRunResponse(string(r.Body))), len(r.Body))
}

// whatFailed is the part of the shim's gate-failure text the tenant sees: the sentence before its
// first ": " says what failed ("The enclave is not reachable", "No enclave thread could be
// taken"); the rest is the host's detail (a socket path, an errno, the owner's refusal), which
// the shim logs and the tenant has no use for.
func whatFailed(e json.RawMessage) string {
	var text string
	if json.Unmarshal(e, &text) != nil || text == "" {
		return whisk.MsgResourceProvisionError
	}
	if i := strings.Index(text, ": "); i > 0 {
		text = text[:i]
	}
	if !strings.HasSuffix(text, ".") {
		text += "."
	}
	return text
}

func withSize(resp whisk.ActivationResponse, n int) whisk.ActivationResponse {
	resp.Size = &n
	return resp
}

// errorField returns the "error" member of a JSON object body.
func errorField(body []byte) (json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, false
	}
	e, ok := m["error"]
	return e, ok
}

func hasErrorField(body []byte) bool {
	_, ok := errorField(body)
	return ok
}
