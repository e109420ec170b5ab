package executor

import (
	"fmt"

	"github.com/teemate/platform/invoker/whisk"
)

// The lifecycle of one sandbox, as an explicit state machine (OpenWhisk's ContainerProxy is the
// anchor). Every sandbox serves exactly one activation, so the machine only moves forward:
//
//	creating ──created──▶ starting ──proxyReady──▶ ready ──init──▶ initializing ──initOK──▶ running
//	    │                     │                                         │                      │
//	createFailed          proxyFailed                              initFailed               runDone
//	    │                     ▼                                         ▼                      ▼
//	    │                 removing ◀────────────────────────────────────┴──────────────────────┘
//	    │                     │ removed / removeFailed
//	    └────────────────▶ removed
//
// A failure is a transition like any other: it leads to removing (or straight to removed when
// there is no sandbox yet), never to a state the sandbox could be reused from. transition is pure;
// the Executor performs each state's work (create, wait for the proxy, /init, /run, destroy) and
// feeds the result back as the next event.
type state int

const (
	stateCreating     state = iota // the backend creates and starts the sandbox
	stateStarting                  // the sandbox runs; its action proxy is not answering yet
	stateReady                     // the action proxy answers; nothing has been sent
	stateInitializing              // /init is in flight
	stateRunning                   // /run is in flight
	stateRemoving                  // the sandbox is being destroyed (after the answer went out)
	stateRemoved                   // nothing is left of the sandbox
)

var stateNames = [...]string{"creating", "starting", "ready", "initializing", "running", "removing", "removed"}

func (s state) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("state(%d)", int(s))
	}
	return stateNames[s]
}

type event int

const (
	evCreated      event = iota // the backend's Create returned a running sandbox
	evCreateFailed              // Create failed: there is no sandbox to remove
	evProxyReady                // the action proxy accepted the connection
	evProxyFailed               // the proxy never became ready (or the sandbox exited first)
	evInit                      // /init is sent
	evInitOK                    // /init succeeded; /run is sent at once
	evInitFailed                // /init failed or was refused (developer, gate or whisk error)
	evRunDone                   // /run answered or failed: the sandbox has served its activation
	evRemoved                   // Destroy succeeded
	evRemoveFailed              // Destroy failed; the backend's Cleanup at the next start retries
)

var eventNames = [...]string{"created", "createFailed", "proxyReady", "proxyFailed", "init", "initOK",
	"initFailed", "runDone", "removed", "removeFailed"}

func (e event) String() string {
	if e < 0 || int(e) >= len(eventNames) {
		return fmt.Sprintf("event(%d)", int(e))
	}
	return eventNames[e]
}

// transitions is the whole machine: from a state, which events lead where.
var transitions = map[state]map[event]state{
	stateCreating:     {evCreated: stateStarting, evCreateFailed: stateRemoved},
	stateStarting:     {evProxyReady: stateReady, evProxyFailed: stateRemoving},
	stateReady:        {evInit: stateInitializing},
	stateInitializing: {evInitOK: stateRunning, evInitFailed: stateRemoving},
	stateRunning:      {evRunDone: stateRemoving},
	stateRemoving:     {evRemoved: stateRemoved, evRemoveFailed: stateRemoved},
}

// transition returns the state s moves to on e, or an error when e cannot happen in s (a bug in
// the executor: the sandbox is then treated as removing, so it is destroyed all the same).
func transition(s state, e event) (state, error) {
	if to, ok := transitions[s][e]; ok {
		return to, nil
	}
	return stateRemoving, fmt.Errorf("sandbox lifecycle: no transition from %s on %s", s, e)
}

// maxAttempts: an activation is run at most twice, the second time only by the retry rule.
const maxAttempts = 2

// attemptEnd is what the retry rule looks at about one failed attempt.
type attemptEnd struct {
	// number counts the attempts, from 1.
	number int
	// failedIn is the state the sandbox was in when the attempt ended: creating when there was no
	// sandbox yet (or no lease on an enclave thread), running once /run was sent.
	failedIn state
	// status is the attempt's ActivationResponse status code.
	status int
	// noUserCode is the verdict's proxy.Verdict.NoUserCode: none of the action's code ran.
	noUserCode bool
	// aborted: the invoker gave up on the activation (its context ended, the enclaves closed).
	aborted bool
	// exhausted: the attempt used up its own time bound; a second would wait as long again.
	exhausted bool

	// died is the lease's owner-death signal (nil without a lease): not part of the rule, the
	// retry waits on it briefly so that its lease goes to a live owner.
	died <-chan struct{}
}

// retryable is the retry rule: an activation is run again, once, on a fresh sandbox (and, in the
// teemate model, with a fresh lease, so on a live owner) only when its first attempt failed through
// the platform's fault (a whisk internal error) before any of the action's code could have run.
// That holds before /init (the sandbox did not start, its proxy never answered, no enclave thread
// could be had), and at /init when the verdict says no user code ran (the shim could not attach,
// the owner died while preparing the action; the shim, which has /run queued behind /init, then
// refuses it); a standard action proxy runs the action's top-level code at /init, so a failure
// there is not retried. Once /run could have reached the enclave (after a successful /init) the
// action's code may have run, and it runs at most once: that failure is answered.
func retryable(a attemptEnd) bool {
	switch {
	case a.number >= maxAttempts || a.aborted || a.exhausted:
		return false
	case a.status != whisk.StatusWhiskError:
		return false // a success, or the action's own failure
	case a.failedIn >= stateRunning:
		return false // /run was sent: the action's code may have run
	case a.failedIn == stateInitializing:
		return a.noUserCode
	}
	return true
}
