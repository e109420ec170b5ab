// Package lintcheck holds the project's own lint checks, the house rules no linter in .golangci.yml
// knows: the dependency direction through all imports (deps_test.go, `go list -deps`) and dropped
// errors without a reason (the dropcheck command, run by `make lint`). It is build tooling: it runs
// on the developer's and CI's machine, never in the invoker or the controller, outside any trust
// boundary.
package lintcheck
