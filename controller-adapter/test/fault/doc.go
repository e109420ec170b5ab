// Package fault is the platform's fault suite (issue #17): it starts the real binaries
// (bin/controller-adapter standalone, or a split deployment of a broker process,
// bin/controller-adapter --kafka and bin/invoker), drives invocations at them, injects one fault
// per scenario (SIGKILL of the invoker, the controller-adapter, the enclave owner or the
// standalone platform; SIGTERM of the standalone; a broker restart; a full data directory; a
// clock jump) and counts what the callers saw: sent, succeeded, failed, broken, lost,
// duplicated, re-run after an answer, blamed on the developer, left behind, recovery time.
//
// The counting is done from outside the platform: an activation's code reports each start of a
// run to an HTTP server of the test (the action has the network annotation and the server is on
// the invoker's egress allow-list), so a run killed midway is counted as well as a completed
// one, and nothing the platform logs or stores is trusted for the count.
//
// This file set holds the suite's pure parts (the result of a scenario, the guarantees it is
// checked against, which scenarios are asserted, the generated table); fault_test.go and
// harness_test.go run the processes. `make test` runs the short version, `make fault-test` the
// long one, which rewrites docs/faults.md and docs/faults.json. The package is test tooling and
// runs on neither side of the trust boundary.
package fault
