// Package sandboxtest is the test harness the sandbox backends' tests (docker, oci) and the invoker
// daemon's container tests share: finding the repository, running its setup scripts (dockerd, the
// function images), skipping a test that lacks them (failing it under CI=true instead), and checks
// on real sandboxes (draining streams, exits, the native action proxy, concurrent create/destroy).
//
// It is imported only by _test.go files. Like the code it tests, it runs on the untrusted host.
package sandboxtest
