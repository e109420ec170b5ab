// Package cli is bin/bench's command line: flags and profiles, the idle check, the clean environment,
// running the harness and writing the JSON, markdown and SVG outputs. It is host-side tooling outside
// the trust boundary.
package cli
