// Package stats holds the bench's pure statistics: percentiles, summaries of latency samples and the
// geometric mean used to combine functions. It is host-side tooling outside the trust boundary.
package stats
