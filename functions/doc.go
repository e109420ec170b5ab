// Package functions holds the nine functions the platform is evaluated with, as OpenWhisk Node.js
// actions, together with their inputs and validators:
//
//   - SeBS: dynamic-html, sleep, uploader
//   - SunSpider 1.0.2: binary-search (access-binary-trees), crypto-aes, crypto-md5, partial-sums
//     (math-partial-sums), regexp-dna, validate-input (string-validate-input)
//
// Each action is <name>/index.js (written for this project, Node built-ins only) and <name>/inputs.json
// (sizes "test", "small", "large"); both are embedded here. Validate checks an activation result against
// a value recomputed in Go from the input, and for the "small" inputs also against the published
// SunSpider/SeBS check values, so a wrong result is never mistaken for a fast one.
//
// The action code is user code: it runs inside the enclave (in a fresh isolate per activation) in the
// teemate and strawman models, and in a plain container in the native model. This Go package itself is
// tooling on the untrusted host side (used by the benchmark runner and tests); it holds no secrets.
package functions
