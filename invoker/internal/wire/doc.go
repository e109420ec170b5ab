// Package wire owns the shapes and constants that cross the sandbox boundary: the bodies of the
// action-proxy protocol's POST /init and POST /run (OpenWhisk's), the outcome of an activation as the
// enclave reports it and the shim passes it on, the shim's response headers, the log sentinel, the
// log line of the gate, and the gate protocol's version and limits (enclave-runtime/PROTOCOL.md).
//
// It is a leaf: it imports nothing of ours, so every side can use it (the invoker's proxy client
// and classification, the gate client, the activation pipeline). The other languages keep copies
// that a test here checks: the C shim's shim/shim/wire.h and the enclave runtime's
// enclave-runtime/trusted/wire.js.
//
// It runs on the untrusted host; the values it describes come from a sandbox or an enclave and are
// checked by whoever reads them.
package wire
