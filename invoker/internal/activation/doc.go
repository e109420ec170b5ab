// Package activation owns one activation from the moment its ActivationMessage is parsed until its
// slot-freeing acknowledgement is on Kafka: de-duplication, the staleness check, fetching the action,
// handing it to an Executor, building the WhiskActivation record, storing it and sending the acks in the
// order OpenWhisk's ContainerProxy does. The invoker is the only writer of activation records (as
// OpenWhisk's invoker writes its activations database); every record is stored before the ack that
// frees its slot (or, when the store cannot take it, kept in the journal's outbox), and an ack too
// large for Kafka goes out as the activation id alone, the controller then reading the record from
// the store (see Handler.sendAcks).
//
// With a journal (invoker/internal/journal, through the Journal interface in durable.go) what was
// started and answered survives a restart of the invoker: an answered activation is answered again
// byte for byte, one interrupted mid-run is answered as a whisk error and not run twice, and a
// record the store could not take is delivered from the journal's outbox by one background
// goroutine. It runs on the untrusted host: it sees activation metadata, and (unless the client
// encrypts them to the enclave) parameters and results.
//
// The decisions (which acks, stale or not, what a failure becomes) are pure functions in plan.go and
// are tested with tables; Handler in handler.go is the I/O around them.
package activation
