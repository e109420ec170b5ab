// Package direct is the "direct" enclave backend: the enclave runtime (enclave-runtime/trusted/
// owner.js, with the isolate addon when it is built) runs as a plain Node process on the host, and
// sandboxes reach it through its gate socket. There is no SGX: the host can read everything the
// runtime holds, so direct mode gives NO confidentiality, and it says so in its logs. It exists for
// development, CI and the comparison benchmarks on machines without SGX2.
//
// It still keeps the host safe from the owner: as root, every owner runs confined (package
// confine: own uid, no capabilities, seccomp, own namespaces, a private read-only root, pasta
// egress with an allow-list) and locks itself down after start (execve forbidden,
// enclave-runtime/trusted/lockdown.js). New refuses to run owners as root unconfined unless
// Config.UnsafeOwnerAsRoot says so; an invoker that is not root runs them as itself, with a warning.
//
// Each owner gets a random gate key on its standard input (owner.GateKey, gate.KeyHolder), so that
// only the sandbox created for an activation, holding that activation's token, can attach to it
// (enclave-runtime/PROTOCOL.md, "Authentication").
//
// This package runs on the untrusted host; the program it starts is the trusted runtime code.
package direct
