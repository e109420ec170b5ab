// Package svg writes the bench's plots (grouped and stacked bar charts) as self-contained SVG with no
// dependencies. It is host-side tooling outside the trust boundary.
package svg
