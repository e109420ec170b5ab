package startconf

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Config is what the stub execs.
type Config struct {
	Path string   // absolute path of the executable as the sandbox sees it (the stub does no PATH search)
	Args []string // argv, Args[0] included
	Env  []string // NAME=value
	Cwd  string   // absolute working directory
}

// Limits of the format; the stub enforces the same.
const (
	Tag      = "teemate-start/1"
	MaxBytes = 1 << 20
	MaxItems = 4096 // entries per list (argv, env)
)

// Encode makes the stub's input: NUL-terminated fields (tag, path, cwd, argc, argv..., envc,
// env...), a format a few lines of C parse without a library. Anything the stub would refuse is
// refused here first, with the reason.
func (c Config) Encode() ([]byte, error) {
	if !filepath.IsAbs(c.Path) || !filepath.IsAbs(c.Cwd) {
		return nil, fmt.Errorf("start configuration: command path %q and working directory %q must be absolute", c.Path, c.Cwd)
	}
	if len(c.Args) == 0 || len(c.Args) > MaxItems || len(c.Env) > MaxItems {
		return nil, fmt.Errorf("start configuration: %d arguments and %d environment entries (want 1..%d and 0..%d)",
			len(c.Args), len(c.Env), MaxItems, MaxItems)
	}
	fields := make([]string, 0, 5+len(c.Args)+len(c.Env))
	fields = append(fields, Tag, c.Path, c.Cwd, strconv.Itoa(len(c.Args)))
	fields = append(fields, c.Args...)
	fields = append(fields, strconv.Itoa(len(c.Env)))
	for _, kv := range c.Env {
		if i := strings.IndexByte(kv, '='); i <= 0 {
			return nil, fmt.Errorf("start configuration: environment entry %q is not NAME=value", kv)
		}
	}
	fields = append(fields, c.Env...)
	n := 0
	for _, f := range fields {
		if strings.IndexByte(f, 0) >= 0 {
			return nil, fmt.Errorf("start configuration: %q contains a NUL byte", f)
		}
		n += len(f) + 1
	}
	if n > MaxBytes {
		return nil, fmt.Errorf("start configuration: %d bytes, more than %d", n, MaxBytes)
	}
	b := make([]byte, 0, n)
	for _, f := range fields {
		b = append(b, f...)
		b = append(b, 0)
	}
	return b, nil
}
