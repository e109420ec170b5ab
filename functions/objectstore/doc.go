// Package objectstore is a small S3-style object store kept in memory and served over HTTP on
// loopback. The uploader function PUTs its object here, the benchmark runner starts one per run, and
// the uploader's validator asks it for the SHA-256 of what was really stored.
//
// It runs on the untrusted host side: it stands in for the remote storage of SeBS's uploader benchmark
// (MinIO there), not for anything inside the enclave. Memory is bounded per object and in total, so a
// runaway client gets an HTTP error instead of exhausting the host.
//
// Protocol: PUT /<bucket>/<key> stores the body and answers 200 with ETag "<sha256 hex>"; GET and HEAD
// return it; DELETE removes it (204). Bucket names are 1-63 characters of [a-z0-9.-] starting with a
// letter or digit; keys are 1-1024 bytes.
package objectstore
