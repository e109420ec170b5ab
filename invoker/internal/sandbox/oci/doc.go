// Package oci is the "oci" sandbox backend: every sandbox is a fresh OCI container run by runc
// (crun optionally) from a root filesystem that deploy/images/build.sh made. It runs on the
// untrusted host.
//
// # Creation off the request path
//
// OCI runtimes split a container's life into create (namespaces, cgroup, mounts, the rootfs;
// the expensive part) and start (exec the process). The backend keeps a pool of
// created-but-not-started containers per (image, memory limit, pids limit) and refills it in the
// background, so an activation only pays for `runc start`. Every container is still used exactly
// once: after its process exits it is deleted, never returned to the pool.
//
// # Per-use configuration at start time
//
// A pooled container is created before anyone knows which activation it will serve, yet the
// shim's environment (proxy socket, gate, limits), the command and the bind mounts (the
// activation's proxy directory, the enclave's gate directory) differ per activation. So:
//
//   - The container's process, fixed at create, is the image's start stub /sbin/teemate-start
//     (invoker/internal/sandbox/oci/startstub). When started it reads /run/teemate/start.json
//     and execs the real command with the real environment, keeping pid 1.
//   - /run/teemate inside the container is a bind mount of a per-container "slot" directory on
//     the host. The slot is made a shared mount on the host and bound into the container with
//     rslave propagation. At acquire time the backend writes start.json into the slot and
//     bind-mounts each Spec.Mounts host path onto slot/<guest path below /run/teemate>; the
//     mount propagates into the already created container. Then `runc start`.
//
// Per-use mounts must therefore have guest paths below /run/teemate (the teemate executor's
// /run/teemate/proxy and /run/teemate/gate are). Memory and pids limits are fixed at create and
// so are part of the pool key.
//
// # Output, exit and OOM
//
// `runc create` runs detached with terminal=false and passes its stdio to the container: the
// backend hands it the write ends of two pipes per container, so Stdout and Stderr are plain
// pipes. The container's init pid comes from --pid-file; a pidfd on it reports the exit. OOM is
// read from the container's memory cgroup (memory.oom_control on cgroup v1, memory.events on
// v2) before the container is deleted.
//
// # Networking
//
// Sandboxes get a new, empty network namespace (loopback only). A sandbox that asks for a
// network is refused: this backend has no bridge or CNI yet (TODO).
//
// # crun
//
// Debian's crun refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported"). It works
// only when the invoker runs in a private mount namespace with /sys/fs/cgroup/unified
// unmounted (unshare -m sh -c 'umount /sys/fs/cgroup/unified; exec invoker ...'); otherwise
// New reports ErrUnavailable with that reason. runc needs no workaround.
package oci
