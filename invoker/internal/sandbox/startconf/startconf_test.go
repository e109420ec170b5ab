package startconf

import (
	"strings"
	"testing"
)

func TestEncode(t *testing.T) {
	ok := Config{Path: "/bin/teemate-shim", Args: []string{"teemate-shim", "-v"}, Env: []string{"A=1", "B="}, Cwd: "/"}
	b, err := ok.Encode()
	if err != nil {
		t.Fatal(err)
	}
	want := "teemate-start/1\x00/bin/teemate-shim\x00/\x002\x00teemate-shim\x00-v\x002\x00A=1\x00B=\x00"
	if string(b) != want {
		t.Fatalf("encoded %q, want %q", b, want)
	}
	for name, c := range map[string]Config{
		"relative path": {Path: "shim", Args: []string{"shim"}, Cwd: "/"},
		"relative cwd":  {Path: "/shim", Args: []string{"shim"}, Cwd: "tmp"},
		"no args":       {Path: "/shim", Cwd: "/"},
		"env no name":   {Path: "/shim", Args: []string{"shim"}, Env: []string{"=x"}, Cwd: "/"},
		"env no equals": {Path: "/shim", Args: []string{"shim"}, Env: []string{"X"}, Cwd: "/"},
		"nul in arg":    {Path: "/shim", Args: []string{"a\x00b"}, Cwd: "/"},
		"too many args": {Path: "/shim", Args: make([]string, MaxItems+1), Cwd: "/"},
		"too big":       {Path: "/shim", Args: []string{strings.Repeat("x", MaxBytes)}, Cwd: "/"},
	} {
		if _, err := c.Encode(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
