package reap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/teemate/platform/invoker/internal/mountinfo"
)

// below reports whether p is dir or lies below it.
func below(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// MountsBelow lists the mount points at or below dir (an absolute, clean path), in mountinfo's
// order (a mount stacked on another comes after it).
func MountsBelow(dir string) ([]string, error) {
	ms, err := mountinfo.Self()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if below(m.Point, dir) {
			out = append(out, m.Point)
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
