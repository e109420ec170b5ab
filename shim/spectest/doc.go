// Package spectest checks the C programs of shim/ against their specification: the action-proxy
// protocol towards the invoker (POST /init, POST /run, shared/reference/openwhisk-protocol.md) and
// the gate protocol towards the enclave runtime (enclave-runtime/PROTOCOL.md, including its section
// on the shim). It builds bin/teemate-shim and bin/teemate-strawman with the shim's Makefile, runs
// them as a sandbox would, and talks to them over real sockets: a scripted gate written from the
// documented frames, and a real enclave runtime (node enclave-runtime/trusted/owner.js) for the
// cases that need one.
//
// It has only tests; it imports nothing of the invoker, so the spec, not the Go client, is what the
// shim is held to. TEEMATE_SHIM_CFLAGS (e.g. "-O1 -g -fsanitize=address,undefined") builds the
// programs with other flags for sanitizer runs.
package spectest
