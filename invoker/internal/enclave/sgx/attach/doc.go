// Package attach is the sandbox side of the sgx backend: a fresh process in a per-activation sandbox
// attaches the image's warm enclave through /dev/teemate at the owner's addresses, takes a TCS from
// the kernel's table and enters the enclave on it.
//
// The pieces, in the order a join uses them:
//   - Ticket: the share id and token the invoker puts into the sandbox's environment (Env,
//     TicketFromEnv).
//   - Attach, AcquireTCS, Release: the /dev/teemate calls with their checks (work on any Linux host
//     with teemate.ko; kmod's VM test runs them against the fake enclave device).
//   - Enter: one gate request in, one reply out, by EENTER on the held TCS. It needs SGX hardware and
//     is built only with the `sgx` build tag (enter_sgx.go, enter_amd64.s); the default build checks
//     its arguments and returns ErrHardwareOnly, so every caller compiles and fails clearly.
//   - Session (Join): attach + one TCS for a whole gate conversation; decides whether the TCS goes
//     back clean (the thread left by EEXIT, or never entered) or is quarantined (ErrOCALL).
//   - Serve: relays the gate protocol between the shim and a Session, one entry per frame, so the
//     shim speaks to an sgx enclave exactly as it speaks to the gate socket in direct mode.
//     cmd/teemate-join (one folder up) is the program that runs it inside the sandbox.
//
// This package runs on the untrusted host. The enclave identifies the caller by the TCS it entered
// on; nothing this package sends (slot numbers, addresses) is trusted by it.
package attach
