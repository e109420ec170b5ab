// Package mountinfo reads /proc/self/mountinfo (proc(5)): the one parser of it for the invoker's
// packages that look for mounts (cgroup hierarchies, leftover sandbox mounts). It runs on the
// untrusted host and trusts what the kernel reports.
package mountinfo
