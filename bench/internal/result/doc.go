// Package result is the bench's output: the JSON document (schema "teemate-bench/1", documented in
// bench/README.md), the summary and ratios computed from it, the markdown report and the SVG plots.
// Everything here is a pure function of the recorded samples. It is host-side tooling outside the
// trust boundary.
package result
