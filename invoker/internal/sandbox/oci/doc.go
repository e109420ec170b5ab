// Package oci is the "oci" sandbox backend: every sandbox is a fresh OCI container run by runc
// (crun optionally) from a root filesystem that deploy/images/build.sh made. It runs on the
// untrusted host.
//
// # Creation off the request path
//
// OCI runtimes split a container's life into create (namespaces, cgroup, mounts, the rootfs;
// the expensive part) and start (exec the process). The backend keeps a pool of
// created-but-not-started containers per (image, memory limit, pids limit) and refills it in the
// background (Config.RefillWorkers creates at once), at a lower priority: nice 10 while the pool
// has containers ready, normal once it ran dry, set on a thread of its own whose priority runc
// and the container's init inherit; the init is set back to nice 0 once created, so the
// activation does not run niced. Every container is still used exactly once: after its process
// exits it is deleted, never returned to the pool.
//
// Everything a use would otherwise do on the filesystem is done at create time too: the slot's
// mount points (Config.MountPoints) and the start configuration's file, kept open.
//
// # Per-use configuration at start time
//
// A pooled container is created before anyone knows which activation it will serve, yet the
// shim's environment (gate, limits), the command and the bind mounts (the activation's proxy
// directory, the enclave's gate directory) differ per activation. So:
//
//   - The container's process, fixed at create, is the image's start stub /sbin/teemate-start, a
//     small static C program (shim/start/teemate-start.c, built by deploy/images/build.sh). When
//     started it reads /run/teemate/start.conf (NUL-separated fields, see package startconf)
//     and execs the real command with the real environment, keeping pid 1.
//   - /run/teemate inside the container is a bind mount of a per-container "slot" directory on
//     the host. The slot is made a shared mount on the host and bound into the container with
//     rslave propagation. At acquire time the backend writes start.conf into the slot and mounts
//     each Spec.Mounts host path onto slot/<guest path below /run/teemate>; the mount propagates
//     into the already created container. Mount flags do not propagate, only mounts do, so each
//     per-use mount is made as a detached tree (open_tree), given nosuid,nodev[,ro]
//     (mount_setattr) and only then attached (move_mount): three syscalls, about 15 µs here,
//     against about 60 µs for the older bind, remount, bind, unmount through a staging point
//     (still used on kernels without mount_setattr). Only the activation's own directories are
//     mounted, into its own container's slot, and unmounted with it.
//
// Per-use mounts must therefore have guest paths below /run/teemate (the teemate executor's
// /run/teemate/proxy and /run/teemate/gate are). Memory and pids limits are fixed at create and
// so are part of the pool key.
//
// # Start without the runtime's binary
//
// A created container's init waits on the runtime's exec FIFO (<root>/<id>/exec.fifo) before it
// execs its process; `runc start` and `crun start` only release it (and exec'ing either costs
// about 10 ms). The backend releases it itself: for runc it opens the FIFO for reading, removes
// it (runc's state tells created from running by the FIFO's presence) and reads the byte the
// init writes just before its exec, watching the init's pidfd in case it dies instead; for crun
// it opens the FIFO for writing, unlinks it and writes one byte, as crun does. Either way Create
// returns while the init execs the stub, so the caller's connect and first request overlap with
// that exec (the proxy socket is already listening, see below).
// When the FIFO is not there, or the runtime is another one, it runs `<runtime> start`, which
// then also gives the reason a start is refused. `runc state`, `runc delete` and `runc list`
// keep working on these containers.
//
// # The action proxy's socket, bound before the activation
//
// At create time the backend binds and listens on a unix socket in the container's bundle
// directory (<StateDir>/<id>/proxy.sock, outside the slot: the container never sees its path)
// and hands it to `runc create --preserve-fds 1` as descriptor 3; the host then closes its copy,
// so a container that dies closes the socket and a connect fails at once. The start stub keeps
// descriptor 3 open across its exec and sets TEEMATE_PROXY_FD=3, and the action proxy accepts
// on it. Sandbox.ProxySocket returns the host path: a connect succeeds at once and waits in the
// backlog until the proxy accepts, so nobody polls for readiness. Spec.ProxySocket is not used.
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
// crun accepts the same create arguments (--preserve-fds included) and creates a container in
// about half runc's time. Debian's crun refuses hybrid cgroup hosts ("cgroups in hybrid mode
// not supported"). It works only when the invoker runs in a private mount namespace with
// /sys/fs/cgroup/unified unmounted (unshare -m sh -c 'umount /sys/fs/cgroup/unified; exec
// invoker ...'); otherwise New reports ErrUnavailable with that reason. runc needs no
// workaround. The tests run on crun with OCI_TEST_RUNTIME=crun inside such a namespace.
package oci
