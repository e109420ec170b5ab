// Package kafka is the invoker's Kafka plumbing: OpenWhisk topic names, a tuned
// sarama configuration, a synchronous producer, a consumer-group feed with a
// commit watermark, topic creation, and an embedded single-broker Kafka
// (kfake) for running on one machine.
//
// It runs on the untrusted host side of the trust boundary. Everything it
// carries is opaque bytes to it; parsing and validating the OpenWhisk
// messages is the caller's job.
//
// It speaks the real Kafka protocol over TCP in every mode: the embedded
// broker is a protocol-level broker listening on loopback, and production
// points the same code at real brokers. It imports nothing else from this
// module so that the invoker, the controller adapter and the tools can all
// share it.
//
// Credentials: every client can authenticate with SASL (SCRAM-SHA-512 by default, see Config.SASL)
// and use TLS. The embedded broker accepts only the users it is given, each limited to its
// Grants (ControllerGrants, InvokerGrants); deploy/kafka/README.md lists the same grants as
// kafka-acls commands for real brokers.
//
// Delivery: OpenWhisk's invoker commits a record's offset as soon as it has
// peeked it (at most once). This package offers that as
// ConsumerOptions.AtMostOnce, and defaults to at least once: an offset is
// committed only when every record below it has been marked Done, so a crash
// redelivers unfinished work and the caller de-duplicates by activation id.
//
// CPU: the clients are tuned so that an idle platform costs next to nothing. A
// consumer lets the broker hold an empty fetch for 500 ms (a record answers it
// at once), and lets the marks of 250 ms join one offset commit; sarama's own
// client metrics are off (discardMetrics). BenchmarkHop and
// TestConsumer_IdleCPU measure it.
package kafka
