package reap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/teemate/platform/invoker/internal/mountinfo"
)

// cgroupRoots are the mount points of every cgroup hierarchy (v1 controllers, named v1
// hierarchies, the v2 unified one).
func cgroupRoots() ([]string, error) {
	ms, err := mountinfo.Self()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		if (m.FSType == "cgroup" || m.FSType == "cgroup2") && !seen[m.Point] {
			seen[m.Point] = true
			out = append(out, m.Point)
		}
	}
	return out, nil
}

// cleanRel checks a cgroup path relative to the hierarchies' roots ("/teemate/x"): absolute, clean
// and not the root itself.
func cleanRel(rel string) (string, error) {
	c := filepath.Clean("/" + rel)
	if c == "/" || strings.Contains(rel, "..") {
		return "", fmt.Errorf("cgroup path %q: want a path below the root", rel)
	}
	return c, nil
}

// CgroupChildren lists the names of the cgroups directly below rel, in any hierarchy.
func CgroupChildren(rel string) ([]string, error) {
	rel, err := cleanRel(rel)
	if err != nil {
		return nil, err
	}
	roots, err := cgroupRoots()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range roots {
		entries, err := os.ReadDir(filepath.Join(r, rel))
		if err != nil {
			continue // not in this hierarchy
		}
		for _, e := range entries {
			if e.IsDir() && !seen[e.Name()] {
				seen[e.Name()] = true
				out = append(out, e.Name())
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// RemoveCgroup removes the cgroup rel (relative to the hierarchies' roots, e.g.
// "/teemate/tm-1a2b3c4d-0") with every cgroup below it, depth first, in every hierarchy. The
// processes still in them are killed first (they are ours: they are in our cgroup). It returns
// how many cgroup paths it removed (one path counts once, whatever the number of hierarchies).
func RemoveCgroup(rel string) (int, error) {
	rel, err := cleanRel(rel)
	if err != nil {
		return 0, err
	}
	roots, err := cgroupRoots()
	if err != nil {
		return 0, err
	}
	// Every directory at or below rel, in any hierarchy, deepest first.
	type dir struct{ root, rel string }
	var dirs []dir
	for _, r := range roots {
		base := filepath.Join(r, rel)
		// WalkDir's errors: a hierarchy without the cgroup, or one that went meanwhile.
		_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			sub, rerr := filepath.Rel(r, p)
			if rerr == nil {
				dirs = append(dirs, dir{r, "/" + sub})
			}
			return nil
		})
	}
	if len(dirs) == 0 {
		return 0, nil
	}
	sort.SliceStable(dirs, func(a, b int) bool {
		return strings.Count(dirs[a].rel, "/") > strings.Count(dirs[b].rel, "/")
	})
	var errs []error
	for _, d := range dirs {
		killCgroupProcs(filepath.Join(d.root, d.rel))
	}
	removed := map[string]bool{}
	for _, d := range dirs {
		p := filepath.Join(d.root, d.rel)
		if err := rmdirRetry(p, 2*time.Second); err != nil {
			errs = append(errs, err)
			continue
		}
		removed[d.rel] = true
	}
	return len(removed), errors.Join(errs...)
}

// killCgroupProcs sends SIGKILL to every process listed in the cgroup.procs of the given cgroup
// directories.
func killCgroupProcs(paths ...string) {
	for _, p := range paths {
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			continue // gone, or not a cgroup directory any more
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				// ESRCH: it exited meanwhile; anything else leaves it for rmdir to report.
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// rmdirRetry removes an (empty of children) cgroup directory, retrying while the processes just
// killed leave it (EBUSY). A directory already gone is not an error.
func rmdirRetry(p string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		err := syscall.Rmdir(p)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", p, err)
		}
		killCgroupProcs(p)
		time.Sleep(10 * time.Millisecond)
	}
}
