// Package cpuacct measures the CPU time the bench's process tree and its containers spend, split
// by component: the bench process itself (with the in-process platform: controller, invoker and
// Kafka broker), the processes it started and already reaped (the OCI runtime's commands, or the
// process sandbox's sandboxes), the warm enclave owners and their network helper, other live
// descendants, and the containers below the invoker's own cgroup parent. Snapshots are taken at
// the start and end of a measured phase; the difference divided by the phase's activations is the
// CPU per activation. Sources: getrusage for the bench process and its reaped children,
// /proc/<pid>/stat for live descendants, cgroup v1 cpuacct.usage or v2 cpu.stat for containers.
// It is host-side tooling outside the trust boundary.
package cpuacct
