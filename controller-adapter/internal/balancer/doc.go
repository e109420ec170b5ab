// Package balancer is the controller's side of OpenWhisk's classic Kafka protocol: it puts
// ActivationMessages on invoker{N}, reads the acknowledgements on completed{C} and the invokers'
// pings on health, keeps one health state machine per invoker (OpenWhisk's InvokerSupervision)
// and places activations with the sharding container pool balancer's rules.
//
// The decisions are pure and tested with tables: Health (the per-invoker state machine: events
// and a clock in, state and actions out) and Schedule (which invoker gets an activation). Balancer
// is the thin concurrent shell around them: Kafka consumers, the memory-slot bookkeeping, forced
// completion timers and health test actions.
//
// It runs on the untrusted host. Everything it reads from Kafka is parsed with invoker/whisk and
// malformed records are logged and skipped.
package balancer
