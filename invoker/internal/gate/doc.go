// Package gate is the host side of the gate protocol (enclave-runtime/PROTOCOL.md) in Go: framing,
// the message types and a client that attaches to an enclave owner, takes a TCS slot and drives init
// and run. The enclave manager uses it for health pings, and the enclave backends' tests drive
// owners with it; the shim inside every sandbox speaks the same protocol in C (shim/shim/gate.c).
// The shapes both share with the action-proxy side (the init value, outcomes, log lines, limits)
// live in package wire. It also makes the per-activation tokens derived from the owners' gate keys
// (token.go), which the executor hands to each activation's sandbox.
//
// It runs on the untrusted host. It validates what comes back (sizes, types) so that a broken owner
// yields an error, not a hang or a crash, but it cannot make the owner trustworthy: in sgx mode that is
// the attestation's job.
package gate
