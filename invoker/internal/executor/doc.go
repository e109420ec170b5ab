// Package executor runs activations. The Executor runs every activation in a fresh sandbox (any
// sandbox.Runtime backend) shaped by a Model strategy: SharedEnclave, the TeeMate design, whose
// shim attaches to the warm shared enclave of the action's image (an enclave.Manager lease);
// Native, OpenWhisk's own Node action proxy and no enclave; Strawman, a fresh enclave runtime
// booted inside every sandbox. For each activation it creates the sandbox, waits for its action
// proxy, sends /init and /run, collects the logs, destroys the sandbox and releases the lease;
// the steps follow the sandbox lifecycle, an explicit state machine (lifecycle.go, after
// OpenWhisk's ContainerProxy). Every failure is classified into an OpenWhisk ActivationResponse,
// with the lease's evidence that the enclave's owner died (the platform's failure, not the
// action's); nothing waits without a bound. An activation that failed through the platform's fault
// before any of its code could run is run again, once, on a fresh sandbox and lease (retryable, in
// lifecycle.go); once /run was sent it never is. A sandbox attached to an owner that requires a gate token gets
// the token of its own activation, and no other (gatetoken.go).
//
// It runs on the untrusted host. Per-phase durations go into Outcome.Phases; the activation pipeline
// records them in metrics, so the executor does not observe them itself.
package executor
