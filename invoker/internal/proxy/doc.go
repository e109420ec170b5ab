// Package proxy is the invoker's side of OpenWhisk's action-proxy protocol: an HTTP/1.1 client for
// POST /init and /run on any action proxy (the teemate shim or a standard OpenWhisk runtime image),
// reached over a unix socket or http://host:port, that writes each request and reads its reply on
// the caller's goroutine over one kept connection; a collector that turns a sandbox's stdout and stderr
// into OpenWhisk log lines (sentinels, limits, truncation; the shim's lines keep the enclave's time
// and stream); and Classify, the one place that decides an activation step's status: from the
// shim's outcome (passed on unchanged from the enclave), from a standard proxy's status and body,
// from a failure to reach the proxy at all, or from the enclave manager's evidence that the owner
// of the shared enclave died under the activation (then the platform's failure, never the action's).
//
// It runs on the untrusted host. Everything it reads comes from a sandbox that ran user code, so every
// read is bounded in size and time.
package proxy
