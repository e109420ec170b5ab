// Package oci is the "oci" sandbox backend: every sandbox is a fresh container, described by an
// OCI config.json, from a root filesystem that deploy/images/build.sh made. The invoker runs it
// with teemate-launch by default (DefaultRuntime; see "teemate-launch" below), runc, crun and
// any OCI runtime staying selectable (Config.Runtime; the invoker's --oci-runtime). It runs on
// the untrusted host.
//
// # Why the launcher is the default
//
// runc spends most of a container on starting itself; the sandbox's container has one fixed
// shape, which a purpose-built launcher sets up with no process of its own. Per container
// (create, start, wait, destroy; the whole process tree's CPU, bench/README.md "Fresh
// containers") the launcher spends 18.7 ms of CPU against runc's 136 and crun's 74, and a pool
// refills at 33.9 containers a second against 6.6 for either. End to end (bin/bench, teemate
// and native on oci) a noop activation costs the teemate model 71 ms of CPU with the launcher
// against 200 with runc (p50 15.7 ms against 29), and 64 concurrent clients get 24.9 req/s
// against 9.4. The isolation is the same (TestIsolation holds every runtime to it: pid 1,
// read-only root, the spec's capabilities and no more, no_new_privs, seccomp mode 2, five new
// namespaces, the memory limit).
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
//     and execs the real command with the real environment, keeping pid 1. The teemate-launch
//     runtime does the stub's work in its own init instead (launch plan -S, the same reader:
//     shim/start/startconf.h), so the command is exec'd once; runc and crun run the stub.
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
// # Prestarted containers
//
// A command that can wait for its use (sandbox.Spec.Prestart: one path, no arguments, the
// image's own file), the teemate shim, gets pools of its own (PoolKey.Prestart) on the
// launcher: the container's process is the command itself, started at creation with only
// TEEMATE_PROXY_FD=3 and TEEMATE_START_CONF=/run/teemate/start.conf, so it waits confined (the
// init confines itself before its ready report, see below) and listening. Its use writes the
// start configuration and mounts the per-use directories, as for any pooled container, and
// sends no start: the shim reads the configuration's environment once the first connection is
// pending, which is only after Create has returned. The init's exec and the shim's own start
// are then off the activation's path (bench/README.md, "Prestarted shims"). The container is
// still used once and the same confinement holds; a prestarted container whose process died
// while pooled is destroyed at acquire and passed over. runc and crun start a container's
// process with their own binary, so they do not prestart (their keys drop Prestart).
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
// invoker ...'); otherwise New reports ErrUnavailable with that reason. bin/teemate-crun
// (shim/launch/teemate-crun.c) does exactly that for crun alone: it unshares a mount namespace
// (slave of the host's, so the slot's mounts still propagate), detaches the unified mount and
// execs crun; New takes it as crun (the registry picks it for --oci-runtime crun where crun
// cannot run by itself). runc needs no workaround. The tests run on crun with
// OCI_TEST_RUNTIME=$PWD/bin/teemate-crun.
//
// # Seccomp
//
// Every config.json carries a seccomp profile (seccomp.go): a deny list of what no sandboxed
// process needs (mount and the new mount API, namespaces, module loading, keyrings, bpf,
// perf_event_open, clock setting, reboot, ...: EPERM), clone with CLONE_NEWUSER (EPERM) and
// clone3 (ENOSYS, so the C library falls back to clone, whose flags the filter sees). runc and
// crun load it with libseccomp; teemate-launch gets it compiled to BPF here, with calls of a
// foreign architecture (a 64-bit kernel's 32-bit entry) killing the process.
//
// # teemate-launch
//
// A runtime made for this backend's one container shape (launch.go, shim/launch/teemate-launch.c),
// chosen with Config.Runtime set to the path of bin/teemate-launch (the invoker's default). runc
// spends most of a container on starting itself (three runs of an 8.7 MB Go binary: create, its
// init, delete); the launcher has no process of its own:
//
//   - create: the config.json the backend writes is translated into the launcher's plan (clone
//     flags; mounts as mount(2) flags and data; masked and read-only paths; rlimits; one
//     capability mask; the seccomp filter as BPF). launchPlan refuses what it cannot honour
//     (another namespace, a terminal, differing capability sets) rather than run with less. The
//     cgroup is made and its limits written (cgroup v1: memory, swap where accounted, pids,
//     devices with runc's default allow list, cpu and cpuacct for accounting), then one clone
//     of the invoker (os.StartProcess with Cloneflags, Setsid, a pidfd) starts the static init
//     in new pid, mount, ipc, uts and network namespaces, with the proxy socket as descriptor 3
//     and a socket pair as descriptor 4. The invoker writes the init's pid into each cgroup
//     and records pid and start time (package reap); the init binds the image's root, mounts
//     /proc, /dev (with runc's default device nodes), /dev/pts, /dev/shm, /dev/mqueue, /sys,
//     /tmp and the slot (rslave), pivots into it, masks and write-protects the spec's paths,
//     remounts the root read-only, sets the hostname, brings up lo and reports ready.
//     Those mounts are made before the pivot, where a symbolic link in the image (/run ->
//     /etc) would still resolve against the host's root: each target is opened below the
//     root one component at a time (openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS),
//     missing directories made there, and mounted through its descriptor; a target that goes
//     through a symbolic link is refused, naming it (runc instead resolves such a link inside
//     the root; the images we build have none). TestMountTargetSymlinkEscape tries both an
//     absolute and a climbing link.
//     Before it reports ready the init also confines itself: it sets the rlimits and ids,
//     narrows the capabilities (bounding, permitted and effective to the spec's set;
//     inheritable and ambient empty), sets no_new_privs and loads the seccomp filter, so a
//     pooled container waits confined and its start has only the exec left.
//   - start: one byte on the socket pair. The init execs the start stub (with -S, the
//     configured command), which keeps pid 1.
//   - destroy: SIGKILL through the pidfd (the pid namespace goes with its init), reap the
//     init (the invoker is its parent), rmdir the cgroups, forget the record. No process runs.
//   - Reap kills the recorded inits of earlier runs (their pid and start time checked through
//     a pidfd) and removes their bundles and cgroups as for runc.
//
// The cgroup limits are cgroup v1's. This host is hybrid: cpu, cpuacct, cpuset, memory,
// devices, freezer, blkio and pids are v1 hierarchies under /sys/fs/cgroup, and the unified
// (v2) hierarchy at /sys/fs/cgroup/unified has hugetlb as its only controller. clone3's
// CLONE_INTO_CGROUP takes a v2 cgroup only, so here it could place the init in a cgroup that
// limits nothing; it is not used. The init is moved into its v1 cgroups right after the clone
// instead, before it runs anything of the container's (its own setup, mounts and pivot, runs in
// the invoker's cgroups). On a unified (v2-only) host New refuses the launcher with that reason
// (LaunchBlocked; the invoker's probe says so too); runc and crun remain. The container's state is not in a runtime root:
// `runc list` does not show these containers; their records (StateDir/launched) do.
package oci
