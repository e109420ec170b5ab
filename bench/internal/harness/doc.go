// Package harness drives the benchmark: it deploys the evaluated functions, invokes them under each
// execution model (sequential latency, concurrent bursts, memory sampling), validates every response
// and records the samples into a result.Result.
//
// In direct mode the platform runs in this process: an embedded Kafka broker, the controller-adapter's
// own controller through its public package controller-adapter/embed (store, load balancer, REST and
// internal API: the invoker reads actions and stores activation records there, as in production), and
// one in-process invoker (daemon.RunWithBackends) per model on the same sandbox backend. Actions are
// deployed through the controller's REST API; each invocation goes through the controller's invoke
// path without the HTTP round trip. In api mode it deploys and invokes through a running platform's
// REST API. It runs on the untrusted host.
package harness
