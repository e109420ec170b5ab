// Package startconf encodes the start configuration of a pooled sandbox: the command, environment
// and working directory that the start stub (shim/start, a small
// static C program) reads when its sandbox is started and then execs. Sandboxes are created before
// anyone knows which activation they will serve, so this is how the activation's command reaches
// them. It runs on the untrusted host.
package startconf
