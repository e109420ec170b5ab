package reap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountInfo is one line of /proc/self/mountinfo, the fields this package reads.
type mountInfo struct {
	point  string // field 5, unescaped
	fstype string // after the " - " separator
}

func readMountInfo() ([]mountInfo, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var out []mountInfo
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		m := mountInfo{point: unescape(f[4])}
		for i := 5; i+1 < len(f); i++ {
			if f[i] == "-" {
				m.fstype = f[i+1]
				break
			}
		}
		out = append(out, m)
	}
	return out, nil
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

// below reports whether p is dir or lies below it.
func below(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// MountsBelow lists the mount points at or below dir (an absolute, clean path), in mountinfo's
// order (a mount stacked on another comes after it).
func MountsBelow(dir string) ([]string, error) {
	ms, err := readMountInfo()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if below(m.point, dir) {
			out = append(out, m.point)
		}
	}
	return out, nil
}

// Unmount detaches every mount at or below dir, deepest first (and, at one path, the last
// stacked first), lazily (MNT_DETACH: a mount still in use by a dying process goes once it is
// free). It returns how many it detached; one already gone with its parent is not counted.
func Unmount(dir string) (int, error) {
	if !filepath.IsAbs(dir) {
		return 0, fmt.Errorf("unmount below %q: not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	points, err := MountsBelow(dir)
	if err != nil {
		return 0, err
	}
	order := make([]int, len(points))
	for i := range order {
		order[i] = i
	}
	// Deepest first; of equal depth, the later in mountinfo (stacked on the earlier) first.
	sort.SliceStable(order, func(a, b int) bool {
		da, db := strings.Count(points[order[a]], "/"), strings.Count(points[order[b]], "/")
		if da != db {
			return da > db
		}
		return order[a] > order[b]
	})
	n := 0
	var errs []error
	for _, i := range order {
		err := unix.Unmount(points[i], unix.MNT_DETACH)
		switch {
		case err == nil:
			n++
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT):
			// Detached with its parent already, or its mount point went with it.
		default:
			errs = append(errs, fmt.Errorf("unmount %s: %w", points[i], err))
		}
	}
	return n, errors.Join(errs...)
}

// RemoveTree unmounts everything at or below dir, then removes dir with everything in it. It
// refuses to remove anything while a mount is left below dir, since RemoveAll would descend into
// the mounted directory (a host directory that is not ours). A missing dir is not an error.
func RemoveTree(dir string) (unmounted int, err error) {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	n, err := Unmount(dir)
	if err != nil {
		return n, err
	}
	left, err := MountsBelow(filepath.Clean(dir))
	if err != nil {
		return n, err
	}
	if len(left) > 0 {
		return n, fmt.Errorf("remove %s: still mounted below it: %s", dir, strings.Join(left, ", "))
	}
	if err := os.RemoveAll(dir); err != nil {
		return n, fmt.Errorf("remove %s: %w", dir, err)
	}
	return n, nil
}
