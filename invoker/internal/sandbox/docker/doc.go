// Package docker is the "docker" sandbox backend: every sandbox is a fresh Docker container, made
// the way OpenWhisk's invoker makes action containers (memory = memory+swap, a pids limit,
// NET_RAW and NET_ADMIN dropped, nofile 1024, the OpenWhisk-style name), except that it has no
// network unless the action asks for one: the action proxy listens on a unix socket in a
// bind-mounted directory, so the invoker needs no IP address to reach it.
//
// A container is created, attached (stdout and stderr are streamed from before the start, so no
// line is lost and no log file is read), started, waited for, and removed; nothing is reused.
// Cleanup removes containers whose name starts with the invoker's prefix, as OpenWhisk does at
// start and shutdown, because Docker containers outlive a crashed invoker.
//
// It runs on the untrusted host and talks to the Docker Engine API through
// github.com/docker/docker/client (API version negotiated; Debian's docker.io speaks 1.41).
package docker
