// Package ownerproc owns the host-side handling of one enclave owner process, shared by the enclave
// backends (direct and sgx): starting the prepared command in its own process group, forwarding its
// stderr lines to zap by level, recording why it exited, waiting until its gate answers a ping, and
// stopping it (SIGTERM to the group, SIGKILL after a timeout), and running an owner started ahead of
// its traffic at background CPU priority until it serves or for at most 5 s (background.go: a cpu
// cgroup at the cpu hierarchy's root, named teemate-bg-PID, idle where the kernel has cpu.idle and
// of low weight otherwise). What command runs, and anything the
// backend reads from the process besides stderr, stays in the backend.
//
// This package runs on the untrusted host; the process it supervises runs the trusted runtime code,
// which trusts nothing this package does.
package ownerproc
