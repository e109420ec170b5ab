// Package lintcheck holds the project's own lint checks, the house rules that no linter in
// .golangci.yml knows (see dropcheck). It is build tooling: it runs on the developer's and CI's
// machine, never in the invoker or the controller, and is outside any trust boundary.
package lintcheck
