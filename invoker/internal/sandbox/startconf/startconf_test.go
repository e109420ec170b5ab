package startconf

import (
	"strings"
	"testing"
)

func TestEncodeTable(t *testing.T) {
	long := strings.Repeat("x", MaxBytes)
	many := make([]string, MaxItems+1)
	for i := range many {
		many[i] = "a"
	}
	for _, c := range []struct {
		name string
		conf Config
		want string // with NULs shown as |
		err  string
	}{
		{"plain", Config{Path: "/bin/shim", Args: []string{"shim", "-v"}, Env: []string{"A=1", "B=x=y"}, Cwd: "/"},
			"teemate-start/1|/bin/shim|/|2|shim|-v|2|A=1|B=x=y|", ""},
		{"no env, empty arg", Config{Path: "/a", Args: []string{""}, Cwd: "/tmp"}, "teemate-start/1|/a|/tmp|1||0|", ""},
		{"empty value", Config{Path: "/a", Args: []string{"a"}, Env: []string{"A="}, Cwd: "/"}, "teemate-start/1|/a|/|1|a|1|A=|", ""},
		{"relative path", Config{Path: "a", Args: []string{"a"}, Cwd: "/"}, "", "must be absolute"},
		{"relative cwd", Config{Path: "/a", Args: []string{"a"}, Cwd: "tmp"}, "", "must be absolute"},
		{"no args", Config{Path: "/a", Cwd: "/"}, "", "arguments"},
		{"too many args", Config{Path: "/a", Args: many, Cwd: "/"}, "", "arguments"},
		{"too many env", Config{Path: "/a", Args: []string{"a"}, Env: many, Cwd: "/"}, "", "arguments"},
		{"NUL in arg", Config{Path: "/a", Args: []string{"a\x00b"}, Cwd: "/"}, "", "NUL"},
		{"NUL in path", Config{Path: "/a\x00", Args: []string{"a"}, Cwd: "/"}, "", "NUL"},
		{"NUL in env", Config{Path: "/a", Args: []string{"a"}, Env: []string{"A=\x00"}, Cwd: "/"}, "", "NUL"},
		{"env without =", Config{Path: "/a", Args: []string{"a"}, Env: []string{"A"}, Cwd: "/"}, "", "NAME=value"},
		{"env without name", Config{Path: "/a", Args: []string{"a"}, Env: []string{"=1"}, Cwd: "/"}, "", "NAME=value"},
		{"too large", Config{Path: "/a", Args: []string{long}, Cwd: "/"}, "", "bytes"},
	} {
		b, err := c.conf.Encode()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := strings.ReplaceAll(string(b), "\x00", "|"); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
