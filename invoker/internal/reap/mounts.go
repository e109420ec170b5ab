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

// ErrMountedBelow is returned by RemoveUnmounted for a tree with a mount in it.
var ErrMountedBelow = errors.New("still mounted below it")

// RemoveUnmounted removes dir and everything below it, for a caller that has unmounted what it
// mounted there: it never crosses into a mount, since a directory that is the root of one
// (statx's STATX_ATTR_MOUNT_ROOT) stops it with ErrMountedBelow before anything in it is touched,
// so a host directory still bound below dir is never emptied. Symlinks are removed, not followed,
// and every step is relative to its parent's descriptor. Unlike RemoveTree it reads no mount
// table, so its cost does not grow with the host's mounts (a pool of containers has many); on a
// kernel without the attribute (before 5.8) it checks the mount table first. A dir that does
// not exist is no error.
func RemoveUnmounted(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("remove %q: not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	if dir == "/" {
		return errors.New("remove /: refused")
	}
	parent, err := unix.Open(filepath.Dir(dir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	defer func() { _ = unix.Close(parent) }() // read-only directory descriptor: nothing to flush
	var stx unix.Statx_t
	if err := unix.Statx(parent, "", unix.AT_EMPTY_PATH, unix.STATX_TYPE, &stx); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		if mps, err := MountsBelow(dir); err != nil || len(mps) > 0 {
			return fmt.Errorf("remove %s: %w: %q %w", dir, ErrMountedBelow, mps, err)
		}
		return os.RemoveAll(dir)
	}
	return removeAt(parent, filepath.Base(dir), dir)
}

// removeAt removes entry name of directory fd (path, for messages), depth first, refusing to
// enter a mount. A name already gone is no error.
func removeAt(fd int, name, path string) error {
	var stx unix.Statx_t
	if err := unix.Statx(fd, name, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, &stx); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", path, err)
	}
	if stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return fmt.Errorf("remove %s: %w (a mount point)", path, ErrMountedBelow)
	}
	if stx.Mode&unix.S_IFMT == unix.S_IFDIR {
		sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		err = removeChildren(sub, path)
		_ = unix.Close(sub) // read-only directory descriptor: nothing to flush
		if err != nil {
			return err
		}
	}
	flags := 0
	if stx.Mode&unix.S_IFMT == unix.S_IFDIR {
		flags = unix.AT_REMOVEDIR
	}
	if err := unix.Unlinkat(fd, name, flags); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// removeChildren removes what directory fd (at path) holds.
func removeChildren(fd int, path string) error {
	// Listed through a duplicate: the *os.File owns (and closes) its descriptor, fd stays ours.
	dup, err := unix.Dup(fd)
	if err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	f := os.NewFile(uintptr(dup), path)
	names, err := f.Readdirnames(-1)
	_ = f.Close() // read-only directory descriptor: nothing to flush
	if err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	for _, name := range names {
		if err := removeAt(fd, name, filepath.Join(path, name)); err != nil {
			return err
		}
	}
	return nil
}
