// Package journal is the invoker's durable memory of activations: one SQLite file per invoker id in
// the invoker's state directory, so that what the invoker did survives its own crash. It keeps, by
// activation id, how far the invoker got:
//
//   - Started: written just before the activation is handed to the executor, so before the action's
//     code can run. An id found Started after a restart was interrupted mid-run.
//   - Finished: the activation's record and its ack plan, written before the first ack goes out, so
//     a redelivery after a crash answers with the same record the caller may already have seen.
//   - Answered: the acknowledgements exactly as they went onto Kafka, so a redelivery is answered
//     again byte for byte without running.
//
// The same rows are the records outbox: a record the activation store has not confirmed stays
// pending (with its attempt count and next try) until a Delivered mark. What the rows mean for
// OpenWhisk (which acks, when to run) is decided by invoker/internal/activation; this package only
// keeps bytes, opaque to it, and prunes answered rows by age, count and size (Prune).
//
// Durability: the file is in WAL mode with synchronous=NORMAL. A committed write survives a crash of
// the process (kill -9: it is in the WAL, in the kernel's page cache); after a power loss or a crash
// of the kernel the last writes before it may be missing (never a corrupt file: SQLite recovers the
// WAL up to the last complete commit). At that level nothing waits for the disk: a lookup and the
// three writes of one activation take about 0.2 ms of CPU (BenchmarkJournal_OneActivation); see
// ARCHITECTURE.md, "Delivery guarantees".
//
// One process at a time: Open takes an exclusive lock (flock on the file beside the database) so two
// invokers with the same id and state directory cannot share a journal. It runs on the untrusted
// host; a record holds an activation's result and logs (ciphertext when the client sealed them).
package journal
