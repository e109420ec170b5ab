// Package credentials owns the platform's own secrets on disk and the privacy of the directories
// that hold them: the controller-adapter's data directory and the invoker's state directory.
//
// Both daemons use it, so there is one rule for every secret: a secret is a file with mode 0600 in
// a directory with mode 0700, generated on first start and reused after a restart, and never a
// command-line flag (flags show in ps to every user of the host). It also reads the Kafka client
// settings (SASL credentials, TLS) from a file or the environment for real brokers.
//
// It runs on the untrusted host. What it protects is the platform's channels (Kafka, the admin
// and internal HTTP endpoints) from other users of the same host, not anything from root.
package credentials
