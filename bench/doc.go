// Package bench is the benchmark runner (bin/bench): it reproduces the TeeMate evaluation (latency,
// per-phase breakdown, throughput, peak memory) for the teemate, native and strawman models. The code
// lives in bench/internal/...; see bench/README.md. Host-side tooling, outside the trust boundary.
package bench
