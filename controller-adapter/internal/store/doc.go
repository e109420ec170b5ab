// Package store is the controller-adapter's entity, subject and activation
// store: OpenWhisk's three CouchDB databases (whisks, subjects, activations)
// folded into one embedded SQLite file (modernc.org/sqlite, pure Go).
//
// It owns namespaces with their API keys and their own throttles (limits.go: OpenWhisk's
// UserLimits, carried in every Identity the namespace authenticates as), packages and package bindings (a package's actions are
// the actions whose namespace is its path, "ns/pkg"; one holding actions is deleted only when
// forced, with them, in one transaction), actions with CouchDB-style revisions
// ("N-<hex>", N counting every write of the document, deletes included, so a
// recreated action never reuses a revision an invoker may have cached), and
// activation records; and the latest evidence of each image's enclave (its image key bound to its
// measurement, invoker/attest), one row per image, as an invoker published it: the evidence is
// public and self-verifying, the store only keeps it across restarts and serves it byte for byte.
// It also keeps, for a short while, the content of activations too large for a Kafka record
// (contents.go): from its publication until the invoker stores the activation's record, or
// ContentTTL at the latest; the invoker reads it by activation id (whisk.ContentRef).
//
// It also keeps triggers and rules (triggers.go; a rule's state lives in its trigger's document,
// as in OpenWhisk, and rule writes update both in one transaction) and the alarms feed's
// schedules (schedules.go), whose due times are claimed by a compare-and-set before each fire.
// And it keeps the operator's invoker drains (drains.go, issue #20), so that a restarted
// controller keeps an invoker under maintenance out of the routing; the load balancer is their
// one writer.
//
// Activation records have one writer each: the invoker, through the API's
// /internal/v1/activations endpoint, as OpenWhisk's invoker writes its
// activations database. It writes each record once, with its logs, before
// the ack that frees the activation's slot; the controller reads them (the
// REST API, and the load balancer when an ack carried only the id). The one
// exception is the record of a sequence or composition, which no invoker runs:
// the controller's runner writes it (controller-adapter/internal/api).
//
// Durability: the database runs in WAL mode with synchronous=FULL, so a write
// of an entity or a subject that returned survives a crash of the process or
// the machine. Activation records, written on every blocking invocation's
// critical path, commit with synchronous=NORMAL: they survive a crash of the
// process; a crash of the machine may lose the last few (never the database). All writes go
// through one connection (SQLite allows one writer at a time; serialising them
// in Go avoids SQLITE_BUSY); reads use a separate pool and run concurrently.
//
// The invoke path's two reads (the caller's key and the action) are cached in memory, stamped
// with a generation that every entity or subject write bumps in its own transaction and publishes
// to a file beside the database once committed, so a write through this package, from any
// process, is seen by the next read (cache.go).
//
// The schema is plain, portable SQL (TEXT/INTEGER columns, no SQLite-only
// types or upsert syntax in the schema) and is applied as numbered migrations
// recorded in schema_version, so a PostgreSQL backend can follow.
//
// Trust boundary: this is untrusted host code. It stores whatever the REST API
// hands it, including API keys in clear (as OpenWhisk's subjects database
// does: web actions run as their owner, and the invoker fetches the action
// with the key carried in the ActivationMessage, so the key must be
// recoverable). Confidential parameters are expected to arrive already
// encrypted to the enclave.
package store
