// Package reap removes what an invoker that died (SIGKILL, a crash, a power cut of the process)
// left on the host: processes it started, mounts below its runtime directory and the cgroups its
// containers had. Every backend that leaves such things uses these helpers for its Reap, and the
// invoker's composition root (invoker/daemon) for the runtime directory as a whole, so the rules
// live in one place:
//
//   - A process is killed only when it is verifiably ours: its pid was recorded by us (Record, in
//     a directory only the invoker writes) together with its start time, and /proc/PID/stat still
//     shows that start time, so a reused pid is never killed. A process inside a cgroup of ours
//     is ours by construction.
//   - Mounts are detached lazily (MNT_DETACH), deepest first, and only those at or below the
//     directory given, as /proc/self/mountinfo lists them. A directory is removed only where no
//     mount is left below it (RemoveTree after detaching; RemoveUnmounted, for a caller that
//     detached its own, stops at any mount root without reading the mount table).
//   - Cgroups are removed depth first with rmdir, in every mounted hierarchy (cgroup v1 and v2);
//     the processes still in them are killed first.
//
// It runs on the untrusted host, as the invoker (root for mounts and cgroups). It imports nothing
// of ours but package mountinfo.
package reap
