// Package direct is the "direct" enclave backend: the enclave runtime (enclave-runtime/trusted/
// owner.js, with the isolate addon when it is built) runs as a plain Node process on the host, and
// sandboxes reach it through its gate socket. There is no SGX: the host can read everything the
// runtime holds, so direct mode gives NO confidentiality, and it says so in its logs. It exists for
// development, CI and the comparison benchmarks on machines without SGX2.
//
// This package runs on the untrusted host; the program it starts is the trusted runtime code.
package direct
