// Package executor holds the activation executors. Teemate runs every activation in a fresh sandbox
// (any sandbox.Runtime backend) whose shim attaches to the warm shared enclave of the action's image
// (an enclave.Manager lease): create the sandbox, wait for its action proxy, /init, /run, collect the
// logs, destroy the sandbox, release the lease. A sandbox attached to an owner that requires a gate
// token gets the token of its own activation, and no other (gatetoken.go). Every failure is classified into an OpenWhisk
// ActivationResponse; nothing waits without a bound.
//
// It runs on the untrusted host. Per-phase durations go into Outcome.Phases; the activation pipeline
// records them in metrics, so the executor does not observe them itself.
package executor
