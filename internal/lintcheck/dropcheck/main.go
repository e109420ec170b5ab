// Command dropcheck fails on an error assigned to the blank identifier (`_ = f()`, `v, _ = g()`)
// in non-test Go code unless a comment on the same line, or alone on the line above, says why the
// error may be dropped. errcheck (in .golangci.yml) covers calls whose error is ignored outright;
// it cannot see comments, so this rule has its own check.
//
// Usage: go run ./internal/lintcheck/dropcheck [packages]   (default ./...)
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	flag.Parse()
	patterns := flag.Args()
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	drops, err := check(patterns)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dropcheck:", err)
		os.Exit(2)
	}
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dropcheck:", err)
		os.Exit(2)
	}
	for _, d := range drops {
		rel, err := filepath.Rel(wd, d.File)
		if err != nil {
			rel = d.File
		}
		fmt.Printf("%s:%d: %s\n", rel, d.Line, d.What)
	}
	if len(drops) > 0 {
		fmt.Printf("dropcheck: %d errors dropped with `_ =` and no comment saying why (fix them, or say why on the line or the line above)\n", len(drops))
		os.Exit(1)
	}
}

// Drop is one error assigned to the blank identifier without a justifying comment.
type Drop struct {
	File string
	Line int
	What string
}

// listed is the part of `go list -json` this check reads.
type listed struct {
	ImportPath string
	Dir        string
	Export     string
	GoFiles    []string
	DepOnly    bool
	Incomplete bool
	Error      *struct{ Err string }
}

// check type-checks the non-test files of the packages matching patterns against the compiler's
// export data of their imports (the way go vet does) and returns the unjustified drops.
func check(patterns []string) ([]Drop, error) {
	args := append([]string{"list", "-e", "-export", "-deps", "-json=ImportPath,Dir,Export,GoFiles,DepOnly,Incomplete,Error"}, patterns...)
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	exports := map[string]string{}
	var targets []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list output: %w", err)
		}
		if p.Error != nil {
			return nil, fmt.Errorf("package %s: %s", p.ImportPath, p.Error.Err)
		}
		exports[p.ImportPath] = p.Export
		if !p.DepOnly {
			targets = append(targets, p)
		}
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok || file == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(file)
	})
	var drops []Drop
	for _, p := range targets {
		d, err := checkPackage(fset, imp, p)
		if err != nil {
			return nil, err
		}
		drops = append(drops, d...)
	}
	sort.Slice(drops, func(i, j int) bool {
		if drops[i].File != drops[j].File {
			return drops[i].File < drops[j].File
		}
		return drops[i].Line < drops[j].Line
	})
	return drops, nil
}

func checkPackage(fset *token.FileSet, imp types.Importer, p listed) ([]Drop, error) {
	var files []*ast.File
	for _, name := range p.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
		files = append(files, f)
	}
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}}
	conf := types.Config{Importer: imp}
	if _, err := conf.Check(p.ImportPath, fset, files, info); err != nil {
		return nil, fmt.Errorf("type-check %s: %w", p.ImportPath, err)
	}
	var drops []Drop
	for _, f := range files {
		if ast.IsGenerated(f) {
			continue
		}
		justified := commentLines(fset, f)
		report := func(blank ast.Expr, rhs ast.Expr) {
			line := fset.Position(blank.Pos()).Line
			if justified(line) {
				return
			}
			drops = append(drops, Drop{File: fset.Position(blank.Pos()).Filename, Line: line,
				What: "error from " + describe(fset, rhs) + " dropped without a comment saying why"})
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch s := n.(type) {
			case *ast.AssignStmt:
				checkAssign(info, s.Lhs, s.Rhs, report)
			case *ast.ValueSpec:
				lhs := make([]ast.Expr, len(s.Names))
				for i, name := range s.Names {
					lhs[i] = name
				}
				checkAssign(info, lhs, s.Values, report)
			}
			return true
		})
	}
	return drops, nil
}

var errorType = types.Universe.Lookup("error").Type().Underlying().(*types.Interface)

func isError(t types.Type) bool {
	return t != nil && types.Implements(t, errorType)
}

func isBlank(e ast.Expr) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == "_"
}

// checkAssign reports each blank on the left that receives an error: `_ = f()`, `_ = err`,
// `v, _ = g()`.
func checkAssign(info *types.Info, lhs, rhs []ast.Expr, report func(blank, rhs ast.Expr)) {
	switch {
	case len(lhs) == len(rhs):
		for i, l := range lhs {
			if isBlank(l) && isError(info.TypeOf(rhs[i])) {
				report(l, rhs[i])
			}
		}
	case len(rhs) == 1:
		tuple, ok := info.TypeOf(rhs[0]).(*types.Tuple)
		if !ok || tuple.Len() != len(lhs) {
			return
		}
		for i, l := range lhs {
			if isBlank(l) && isError(tuple.At(i).Type()) {
				report(l, rhs[0])
			}
		}
	}
}

// commentLines tells whether line has a comment on it, or a comment alone on the line above it
// (not the trailing comment of the statement before).
func commentLines(fset *token.FileSet, f *ast.File) func(line int) bool {
	on, above := map[int]bool{}, map[int]bool{}
	for _, g := range f.Comments {
		for _, c := range g.List {
			if strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(c.Text, "//"), "/*")) == "" {
				continue
			}
			start := fset.Position(c.Pos())
			on[start.Line] = true
			if ownLine(fset, f, c) {
				above[fset.Position(c.End()).Line+1] = true
			}
		}
	}
	return func(line int) bool { return on[line] || above[line] }
}

// ownLine reports whether only blanks precede comment c on its line.
func ownLine(fset *token.FileSet, f *ast.File, c *ast.Comment) bool {
	pos := fset.Position(c.Pos())
	tf := fset.File(c.Pos())
	lineStart := tf.LineStart(pos.Line)
	src, err := os.ReadFile(pos.Filename)
	if err != nil {
		return false
	}
	before := src[tf.Offset(lineStart):pos.Offset]
	return len(bytes.TrimSpace(before)) == 0
}

// describe names the right-hand side briefly: the called function, or the expression.
func describe(fset *token.FileSet, e ast.Expr) string {
	if call, ok := e.(*ast.CallExpr); ok {
		e = call.Fun
	}
	var b strings.Builder
	if err := printExpr(&b, e); err != nil {
		return "expression at " + fset.Position(e.Pos()).String()
	}
	return b.String()
}

func printExpr(b *strings.Builder, e ast.Expr) error {
	switch x := e.(type) {
	case *ast.Ident:
		b.WriteString(x.Name)
	case *ast.SelectorExpr:
		if err := printExpr(b, x.X); err != nil {
			return err
		}
		b.WriteString("." + x.Sel.Name)
	case *ast.CallExpr:
		if err := printExpr(b, x.Fun); err != nil {
			return err
		}
		b.WriteString("()")
	case *ast.IndexExpr:
		if err := printExpr(b, x.X); err != nil {
			return err
		}
		b.WriteString("[…]")
	case *ast.ParenExpr:
		return printExpr(b, x.X)
	case *ast.StarExpr:
		b.WriteString("*")
		return printExpr(b, x.X)
	default:
		return errors.New("unprintable")
	}
	return nil
}
