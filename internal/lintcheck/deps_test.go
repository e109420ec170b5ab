package lintcheck

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/teemate/platform/internal/testtool"
)

const module = "github.com/teemate/platform/"

// Backends and the SDKs behind them: only the composition root (invoker/daemon) reaches them.
var backends = []string{
	"github.com/docker/",
	"github.com/IBM/sarama",
	"github.com/twmb/franz-go",
	"modernc.org/sqlite",
	module + "invoker/internal/enclave/direct",
	module + "invoker/internal/enclave/sgx",
	module + "invoker/internal/sandbox/docker",
	module + "invoker/internal/sandbox/oci",
	module + "invoker/internal/sandbox/process",
}

// TestDependencyDirection checks what packages reach through all their imports (`go list -deps`),
// which depguard (.golangci.yml) cannot see: it checks one import at a time.
func TestDependencyDirection(t *testing.T) {
	const (
		leaf     = "it is shared by every side and imports only the standard library"
		root     = "only the composition root (invoker/daemon) reaches backends and their SDKs"
		ioFree   = "the pool core is I/O-free: the enclave manager's loop does its I/O"
		sandboxd = "the sgx join runs inside every sgx sandbox: the gate protocol and /dev/teemate, nothing of the host's invoker"
	)
	wire := module + "invoker/internal/wire"
	gate := module + "invoker/internal/gate"
	teemate := module + "invoker/internal/enclave/sgx/teemate"
	attach := module + "invoker/internal/enclave/sgx/attach"
	for _, c := range []struct {
		pkg    string
		stdlib bool     // only the standard library besides the package itself and ours
		ours   []string // when set, the only packages of ours it may reach
		deny   []string // packages it must not reach (a path, or a prefix of its subpackages)
		why    string
	}{
		{pkg: "invoker/whisk", stdlib: true, why: leaf},
		{pkg: "invoker/internal/wire", stdlib: true, why: leaf},
		{pkg: "internal/lograte", ours: []string{}, deny: []string{"github.com/IBM/", "github.com/twmb/"}, why: leaf},
		{pkg: "internal/httpstop", stdlib: true, why: leaf},
		{pkg: "invoker/attest", stdlib: true, why: leaf},
		{pkg: "invoker/internal/gate", stdlib: true, ours: []string{wire}, why: "it imports only invoker/internal/wire of ours"},
		{pkg: "invoker/internal/sandbox", stdlib: true, why: leaf},
		{pkg: "invoker/internal/sandbox/startconf", stdlib: true, why: leaf},
		{pkg: "invoker/internal/enclave/pool", stdlib: true, deny: []string{"os/exec", "net", "os/signal", "database/sql"}, why: ioFree},
		{pkg: "invoker/internal/enclave", deny: backends, why: root},
		{pkg: "invoker/internal/activation", deny: backends[4:], why: root},
		{pkg: "invoker/internal/enclave/sgx/attach", ours: []string{wire, gate, teemate}, deny: []string{"go.uber.org/zap"}, why: sandboxd},
		{pkg: "invoker/internal/enclave/sgx/cmd/teemate-join", ours: []string{wire, gate, teemate, attach}, deny: []string{"go.uber.org/zap"}, why: sandboxd},
		{pkg: "controller-adapter/internal/api", deny: append([]string{"github.com/docker/"}, backends[4:]...), why: root},
		{pkg: "controller-adapter/internal/balancer", deny: append([]string{"github.com/docker/", "modernc.org/sqlite"}, backends[4:]...), why: root},
		{pkg: "controller-adapter/embed", deny: append([]string{"github.com/docker/"}, backends[4:]...), why: root},
	} {
		deps := goListDeps(t, c.pkg)
		for _, d := range deps {
			if d.path == module+c.pkg {
				continue
			}
			if c.ours != nil && strings.HasPrefix(d.path, module) && !slices.Contains(c.ours, d.path) {
				t.Errorf("%s reaches %s: %s", c.pkg, d.path, c.why)
			} else if c.stdlib && !d.standard && !slices.Contains(c.ours, d.path) {
				t.Errorf("%s reaches %s: %s", c.pkg, d.path, c.why)
			}
			for _, p := range c.deny {
				if d.path == p || strings.HasPrefix(d.path, strings.TrimSuffix(p, "/")+"/") {
					t.Errorf("%s reaches %s: %s", c.pkg, d.path, c.why)
					break
				}
			}
		}
	}
}

// TestDirectImports checks who imports what directly, for the rules that a transitive view cannot
// state: only the composition root (invoker/daemon) imports a backend (a backend's own tree and
// tests aside), and bench reaches the controller-adapter through controller-adapter/embed and
// controller-adapter/client only (embed itself reaches the rest).
func TestDirectImports(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}} | {{join .TestImports \" \"}} {{join .XTestImports \" \"}}", "./...")
	cmd.Dir = testtool.Root(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v\n%s", err, stderr.String())
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := strings.TrimPrefix(fields[0], module), fields[1:]
		checked++
		test := false // past the "|": imported by the package's tests, which may drive a backend
		for _, imp := range imports {
			if imp == "|" {
				test = true
			}
			if !strings.HasPrefix(imp, module) {
				continue
			}
			rel := strings.TrimPrefix(imp, module)
			for _, b := range backends[4:] {
				b = strings.TrimPrefix(b, module)
				inBackend := rel == b || strings.HasPrefix(rel, b+"/")
				inOwnTree := pkg == b || strings.HasPrefix(pkg, b+"/")
				if inBackend && !inOwnTree && !test && pkg != "invoker/daemon" && !strings.HasPrefix(pkg, "invoker/daemon/") {
					t.Errorf("%s imports %s: only the composition root (invoker/daemon) chooses a backend", pkg, rel)
				}
			}
			if (pkg == "bench" || strings.HasPrefix(pkg, "bench/")) && strings.HasPrefix(rel, "controller-adapter/") &&
				rel != "controller-adapter/embed" && !strings.HasPrefix(rel, "controller-adapter/client") {
				t.Errorf("%s imports %s: bench uses the controller-adapter through controller-adapter/embed and /client only", pkg, rel)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("go list printed too little: %q", out)
	}
}

type dep struct {
	path     string
	standard bool
}

func goListDeps(t *testing.T, pkg string) []dep {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", "./"+pkg)
	cmd.Dir = testtool.Root(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.String())
	}
	var deps []dep
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, std, _ := strings.Cut(line, " ")
		deps = append(deps, dep{path: path, standard: std == "true"})
	}
	return deps
}
