// Package attach is the sandbox side of the sgx backend: a fresh process (the shim in a per-activation
// container) attaches the image's warm enclave through /dev/teemate at the owner's addresses, takes a
// TCS from the kernel's table and enters the enclave on it.
//
// Attach and AcquireTCS work on any Linux host with teemate.ko (the kmod VM test runs them against
// the fake enclave device). Enter executes EENTER and therefore needs real SGX hardware: it is built
// only with the `sgx` build tag (enter_sgx.go, enter_amd64.s); the default build returns
// ErrHardwareOnly so that every caller compiles and fails clearly.
//
// This package runs on the untrusted host. The enclave identifies the caller by the TCS it entered on;
// nothing this package sends (slot numbers, addresses) is trusted by it.
package attach
