// Package harness drives the benchmark: it deploys the evaluated functions, invokes them under each
// execution model (sequential latency, concurrent bursts, memory sampling), validates every response
// and records the samples into a result.Result.
//
// In direct mode the harness is the controller: it runs an embedded Kafka broker, serves the action
// documents over a small OpenWhisk-style REST endpoint, accepts the invoker's activation records, and
// starts one in-process invoker (daemon.RunWithBackends) per model on the same sandbox backend. In api
// mode it deploys and invokes through a running platform's REST API. It runs on the untrusted host.
package harness
