package mountinfo

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Mount is one line of mountinfo: the fields the invoker reads, unescaped.
type Mount struct {
	Root   string   // field 4: the root of the mount within its filesystem ("/" unless a bind or a container's view)
	Point  string   // field 5: the mount point
	FSType string   // after the " - " separator, e.g. "cgroup", "cgroup2", "tmpfs"
	Source string   // the mount source
	Super  []string // the super block's options, e.g. ["rw", "cpu", "cpuacct"] for a cgroup v1 hierarchy
}

// HasOption says whether the super block's options include o (a cgroup v1 controller's name, for one).
func (m Mount) HasOption(o string) bool { return slices.Contains(m.Super, o) }

// Self reads this process's mounts.
func Self() ([]Mount, error) { return Read("/proc/self/mountinfo") }

// Read reads a mountinfo file; lines it cannot make sense of are skipped.
func Read(path string) ([]Mount, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return Parse(string(b)), nil
}

// Parse parses mountinfo text.
func Parse(text string) []Mount {
	var out []Mount
	for _, line := range strings.Split(text, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		m := Mount{Root: unescape(f[3]), Point: unescape(f[4]), FSType: g[0], Source: unescape(g[1])}
		if len(g) > 2 {
			m.Super = strings.Split(g[2], ",")
		}
		out = append(out, m)
	}
	return out
}

// unescape undoes mountinfo's octal escapes (\040 for a space, \011, \012, \134).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
