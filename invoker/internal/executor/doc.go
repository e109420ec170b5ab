// Package executor runs activations. The Executor runs every activation in a fresh sandbox (any
// sandbox.Runtime backend) shaped by a Model strategy: SharedEnclave, the TeeMate design, whose
// shim attaches to the warm shared enclave of the action's image (an enclave.Manager lease);
// Native, OpenWhisk's own Node action proxy and no enclave; Strawman, a fresh enclave runtime
// booted inside every sandbox. For each activation it creates the sandbox, waits for its action
// proxy, sends /init and /run, collects the logs, destroys the sandbox and releases the lease;
// the steps follow the sandbox lifecycle, an explicit state machine (lifecycle.go, after
// OpenWhisk's ContainerProxy). Every failure is classified into an OpenWhisk ActivationResponse;
// nothing waits without a bound. A sandbox attached to an owner that requires a gate token gets
// the token of its own activation, and no other (gatetoken.go).
//
// It runs on the untrusted host. Per-phase durations go into Outcome.Phases; the activation pipeline
// records them in metrics, so the executor does not observe them itself.
package executor
