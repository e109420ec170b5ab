// Package conformance holds tests only: it runs the Go teemate shim (invoker/cmd/teemate-shim-go) and
// the C one (shim/, built with make) through the same table of scenarios and requires the same
// observable behaviour from both: HTTP status, X-Teemate-Outcome, reply body, which replies carry
// X-Teemate-Timings, the activation's lines and sentinels on stdout and stderr, and the exit.
//
// The scenarios run against a real enclave owner (enclave-runtime/trusted/owner.js under node, the
// direct backend) and, for the failures a healthy owner never produces (a gate that breaks mid-run,
// replies of the wrong shape, busy), against a scripted gate server speaking the gate framing.
// A differential fuzz test feeds the same request bodies to both binaries.
//
// Both shims run on the untrusted host side; so do these tests.
package conformance
