// Package embed runs the controller-adapter's controller inside another Go program: the store
// (SQLite), the load balancer (OpenWhisk's Kafka protocol, invoker health) and the HTTP API (the
// OpenWhisk REST API, web actions, and the /internal endpoints the invokers read actions from and
// store activation records through). It is the same code bin/controller-adapter runs, wired for
// tools that bring their own broker and invokers: the bench starts one in-process invoker per
// execution model against it, so what it measures is the platform's own controller path, not a
// stand-in.
//
// Start takes the brokers (the caller runs them, e.g. kafka.StartEmbedded) and a data directory,
// and serves the API on a loopback port. AddNamespace creates a tenant, the invokers get APIHost
// and InvokerToken, WaitInvoker waits for one to turn healthy, and Invoke runs a blocking
// activation the way POST .../actions/{name}?blocking=true does, without the HTTP round trip.
// Deploying actions goes through the REST API at APIHost, as any client does.
//
// Activation records follow the platform's one rule: the invoker stores each record through the
// internal API before its slot-freeing ack; the controller reads it from the ack, or from the store
// when the ack carried only the id (see controller-adapter/internal/balancer).
//
// It runs on the untrusted host, with the controller-adapter's trust rules: tenants authenticate
// with their API keys, invokers with the invoker token.
package embed
