package executor

import "fmt"

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
