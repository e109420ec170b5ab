// Package gate is the host side of the gate protocol (enclave-runtime/PROTOCOL.md): framing, the
// message types and a client that attaches to an enclave owner, takes a TCS slot and drives init and
// run. The shim inside every sandbox uses it, and the enclave manager uses it for health pings. It also
// makes the owners' gate keys and the per-activation tokens derived from them (token.go), which the
// executor hands to each activation's sandbox.
//
// It runs on the untrusted host. It validates what comes back (sizes, types) so that a broken owner
// yields an error, not a hang or a crash, but it cannot make the owner trustworthy: in sgx mode that is
// the attestation's job.
package gate
