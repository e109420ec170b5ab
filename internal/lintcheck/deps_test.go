package lintcheck

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
// which depguard (.golangci.yml) cannot see: it checks one import at a time. A new I/O-free core
// (such as the enclave pool) belongs in this table with the backends denied.
func TestDependencyDirection(t *testing.T) {
	for _, c := range []struct {
		pkg    string
		stdlib bool     // only the standard library besides the package itself
		deny   []string // import path prefixes the package must not reach
	}{
		{pkg: "invoker/whisk", stdlib: true},
		{pkg: "invoker/attest", stdlib: true},
		{pkg: "invoker/internal/gate", stdlib: true},
		{pkg: "invoker/internal/sandbox", stdlib: true},
		{pkg: "invoker/internal/sandbox/startconf", stdlib: true},
		{pkg: "invoker/internal/enclave", deny: backends},
		{pkg: "invoker/internal/activation", deny: backends[4:]},
		{pkg: "controller-adapter/internal/api", deny: append([]string{"github.com/docker/"}, backends[4:]...)},
		{pkg: "controller-adapter/internal/balancer", deny: append([]string{"github.com/docker/", "modernc.org/sqlite"}, backends[4:]...)},
	} {
		deps := goListDeps(t, c.pkg)
		for _, d := range deps {
			if d.path == module+c.pkg {
				continue
			}
			if c.stdlib && !d.standard {
				t.Errorf("%s reaches %s: it is shared by every side and imports only the standard library", c.pkg, d.path)
			}
			for _, p := range c.deny {
				if strings.HasPrefix(d.path, p) {
					t.Errorf("%s reaches %s: only the composition root (invoker/daemon) reaches backends and their SDKs", c.pkg, d.path)
					break
				}
			}
		}
	}
}

type dep struct {
	path     string
	standard bool
}

func goListDeps(t *testing.T, pkg string) []dep {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", "./"+pkg)
	cmd.Dir = repoRoot(t)
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

// repoRoot is the directory above this package's that holds go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if parent := filepath.Dir(dir); parent != dir {
			dir = parent
			continue
		}
		t.Fatal("no go.mod above the test directory")
		return ""
	}
}
