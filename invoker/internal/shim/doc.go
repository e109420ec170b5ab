// Package shim is the action proxy inside every teemate sandbox. It serves OpenWhisk's action-proxy
// protocol (POST /init, POST /run) to the invoker and forwards the activation to the warm shared
// enclave of the function image through the gate (enclave-runtime/PROTOCOL.md): attach (hello),
// take an enclave thread (acquire), init, run in a new isolate, release. It prints the activation's
// captured console lines on its own stdout and stderr followed by OpenWhisk's sentinel on both, and
// reports the outcome and a per-phase breakdown in response headers.
//
// It runs on the untrusted host side, inside the per-activation sandbox: it sees the action's code,
// parameters and result only as the invoker already does. A sandbox serves exactly one activation,
// so the shim exits after /run (or after a failed /init).
//
// In strawman mode (TEEMATE_STRAWMAN_CMD) it starts a fresh enclave runtime inside the sandbox for
// its one activation, the "one enclave per container" model the TeeMate paper compares against.
package shim
