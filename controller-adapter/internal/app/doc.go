// Package app assembles the controller-adapter: the store, the load balancer on Kafka and the
// REST API, and in standalone mode also the embedded Kafka broker and one in-process invoker, so
// that one command runs the whole platform on one machine. It chooses the invoker's backends
// from what the machine offers, seeds the well-known namespaces, and shuts everything down in
// order on a signal.
//
// It runs on the untrusted host.
package app
