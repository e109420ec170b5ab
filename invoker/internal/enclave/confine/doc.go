// Package confine runs an enclave owner (the shared Node runtime of one function image) as a
// least-privilege process, so that an escape from a tenant's V8 isolate is not a host compromise.
//
// It owns the host side of the owner's confinement:
//
//   - the launcher command (launcher/teemate-confine.c, built into bin/ by `make build`): Go's
//     SysProcAttr.Cloneflags creates fresh mount, pid, ipc, uts and network namespaces; the static
//     launcher then builds a private read-only root (system runtime, the runtime files, the owner's
//     writable state directory, a size-bounded private /tmp, a fresh /proc), pivots into it,
//     brings loopback up, switches to an unprivileged uid/gid (64000:64000 by default; no passwd
//     entry needed), empties every capability set, sets no_new_privs, installs the seccomp filter of
//     node-isolate-patch/src/seccomp_policy.h and execs the owner;
//   - the owner's state directory and the launcher's new-root mount point (created, chowned to the
//     owner's uid, removed after it);
//   - egress: pasta (Debian's passt package) attached to the owner's network namespace gives
//     outbound NAT to the outside world, with the gateway NOT mapped to the host's loopback
//     (--no-map-gw), no inbound ports, and TCP forwards to the host's loopback only for the
//     operator's egress allow-list; the host's own addresses are unreachable routes in the
//     namespace (the launcher adds them). Without pasta the owner has no network beyond its own
//     loopback.
//
// The post-start part of the confinement (execve forbidden once the owner runs) is the owner's own
// (enclave-runtime/trusted/lockdown.js); this package only asks for it.
//
// Trust: this package runs on the untrusted host, as root. It protects the host from the owner,
// not the owner's secrets from the host (that is SGX's job). Everything it does must hold even if
// the owner's process is fully controlled by an attacker after exec.
package confine
