package pool

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The core stays a pure decision function (raft's RawNode rule): it reaches no backend, no SDK and
// no package that does I/O, however indirectly. fmt pulls in os, so os itself cannot be banned
// from the dependencies; TestPool_NoClockNoGoroutines checks the source for what remains.
func TestPool_Dependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	banned := []string{"os/exec", "net", "net/http", "os/signal", "syscall/js", "database/sql", "log/slog"}
	bannedPrefixes := []string{
		"github.com/teemate/platform/", // backends, gate, sandbox: the core imports nothing of ours
		"github.com/docker/", "github.com/twmb/franz-go", "github.com/IBM/sarama", "go.uber.org/zap",
		"modernc.org/", "github.com/opencontainers/",
	}
	self := "github.com/teemate/platform/invoker/internal/enclave/pool"
	deps := strings.Fields(string(out))
	if len(deps) < 5 {
		t.Fatalf("go list -deps printed too little: %q", out)
	}
	for _, d := range deps {
		if d == self {
			continue
		}
		for _, b := range banned {
			if d == b {
				t.Errorf("the pool core depends on %s", d)
			}
		}
		for _, b := range bannedPrefixes {
			if strings.HasPrefix(d, b) {
				t.Errorf("the pool core depends on %s", d)
			}
		}
	}
}

// No goroutines, no clock, no files in the core's own source: time only as values it is given.
func TestPool_NoClockNoGoroutines(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	banned := map[string]bool{"time.Now": true, "time.Since": true, "time.Until": true, "time.Sleep": true,
		"time.After": true, "time.AfterFunc": true, "time.NewTimer": true, "time.NewTicker": true, "time.Tick": true}
	fset := token.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range file.Imports {
			if p := strings.Trim(imp.Path.Value, `"`); p == "os" || p == "io" || p == "sync" {
				t.Errorf("%s imports %s", f, p)
			}
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				t.Errorf("%s: a go statement", fset.Position(n.Pos()))
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && banned[x.Name+"."+n.Sel.Name] {
					t.Errorf("%s: %s.%s reads the clock", fset.Position(n.Pos()), x.Name, n.Sel.Name)
				}
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("no source checked")
	}
}
