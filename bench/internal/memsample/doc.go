// Package memsample measures the peak memory of a process tree while a benchmark runs: it samples the
// proportional set size (PSS, from /proc/<pid>/smaps_rollup; RSS from /proc/<pid>/status when PSS is
// unreadable) of every descendant of a root process every few milliseconds, plus the memory of
// container cgroups whose processes live outside that tree (docker, oci). It is host-side tooling
// outside the trust boundary.
package memsample
