// Package sgx is the "sgx" enclave backend and the home of the whole SGX path: the enclave runtime
// (enclave-runtime/trusted/owner.js and the isolate addon) runs inside an SGX enclave built by a
// patched Gramine (gramine/, design only), one warm enclave per function image, shared through
// /dev/teemate (kmod/) with a fresh sandbox per activation. README.md in this folder walks one
// activation end to end (owner start under gramine-sgx, share via /dev/teemate, sandbox attach at the
// owner's addresses, TCS take, EENTER, gate messages, isolate) and says for every step what runs on a
// machine without SGX, what is compiled only and what is design only.
//
// Subpackages: teemate (the /dev/teemate client), attach (the sandbox side: ticket, attach, TCS,
// EENTER, the session and the gate relay), cmd/teemate-join (the joiner a shim starts in sgx mode).
//
// It owns: the host preflight (SGX device and CPU flags, /dev/teemate, Gramine tools, the signed
// manifest), rendering the owner's Gramine manifest (enclave-runtime/manifest/, where everything
// measured lives) and signing it, starting `gramine-sgx` as the owner, reading the share the patched
// loader registered with /dev/teemate (its "share line"), and waiting for the gate to answer a ping.
// Handling the owner process itself (stderr, gate wait, exit, stop) is shared with the direct backend
// in package ownerproc.
//
// How the share reaches the invoker: the patched Gramine loader is the only process that holds the
// enclave fd and knows the enclave's ranges and TCS pages. After EINIT it calls TEEMATE_IOC_SHARE
// itself with the pool TCS pages the manifest reserves for joins and writes one JSON line with the
// share id, token, TCS count and address span to the pipe named by TEEMATE_SHARE_FD (fd 3, an
// inherited pipe); that loader change is a design so far (gramine/0001). ParseShareLine reads the
// line. The token is a capability: it goes only to the sandboxes of this image (ShareInfo.Ticket).
//
// This package runs on the untrusted host. Nothing here is trusted by the enclave: the loader, the
// share line and the kernel module are host code too; the enclave checks every join itself and knows a
// caller only by the TCS it entered on.
package sgx
