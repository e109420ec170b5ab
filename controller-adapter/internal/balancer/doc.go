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
// Activation records: the balancer writes none. The invoker is the only writer of a record, as in
// OpenWhisk, where the invoker writes the activations database and the controller learns results
// from acks: it stores the record (logs included) before it sends the slot-freeing ack, so a
// slot-freeing ack normally means the record is in the store (when the store could not take it,
// the invoker's journal delivers it later, and a read after an id-only ack polls for it up to
// Config.RecordWait). A blocking caller is answered from the first
// ack that carries the record (Result or Combined); when the record was too large for Kafka, the
// invoker sent the id alone, a shrunk Result answers nobody, and the slot-freeing ack that follows
// the store makes the balancer read the record from Records. A forced completion reads it too (the
// invoker may have stored it and lost its ack). Reading, never writing, keeps the store write off
// the ack loop and off the blocking caller's path, and leaves one record per activation id.
//
// Drains (drain.go): an operator's drain moves an invoker's images away one by one, each once its
// destination has it warm and keyed; a destination that does not get there within
// Config.PrepareTimeout leaves the image on the source. The drains are saved through
// Config.Drains (the controller's store; drainsave.go) and restored at start.
//
// It runs on the untrusted host. Everything it reads from Kafka is parsed with invoker/whisk and
// malformed records are logged and skipped.
package balancer
