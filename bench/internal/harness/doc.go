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
// REST API. The drain scenario (RunDrain) starts two such platforms in turn, each with two
// in-process invokers (daemon.Start), and takes the first invoker out of service under an
// open-loop load, by the controller's drain route or by the invoker's /disable, reading the
// switch, the owner starts and the state transfer from the components' logs. It runs on the
// untrusted host.
package harness
