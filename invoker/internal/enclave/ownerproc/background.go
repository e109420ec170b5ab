package ownerproc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/teemate/platform/invoker/internal/mountinfo"
)

// An owner started ahead of its traffic (a drain's prepare, issue #20) should not slow the owners
// that serve now: on one host its start (a Node process, about half a second of CPU here) takes
// CPU from the activations of the invoker being drained. Such an owner runs in a cpu cgroup of its
// own until Foreground moves it back where it was started: its threads get the CPU the others
// leave, and all of them (the ones it makes later too) move at once, which a per-thread nice value
// cannot do without racing the threads being created.
//
// The group is an idle group (cpu.idle, Linux 5.15+, v1 and v2) where the kernel has one: its
// threads are scheduled like SCHED_IDLE ones, so a serving thread that wakes preempts them at once
// instead of waiting out their slice. A low weight alone (below) shares the CPU the same way on
// average, but not at wakeup: measured, the source's answers still slowed by 40-70 ms during the
// prepare with any weight. Without cpu.idle the weight is what there is.
//
// On a host whose serving threads keep every CPU busy an idle group gets almost nothing (an idle
// weight is 3 against a task's 1024), and a prepare would wait as long as the load lasts. So the
// background ends after bgLimit whether or not a lease came: a prepare then slows the others, as
// before this existed, instead of never finishing.

const (
	// bgPrefix names a background group at the cpu hierarchy's root: bgPrefix + the owner's pid.
	bgPrefix = "teemate-bg-"
	// bgSharesV1 is cpu.shares (default 1024): an eighth of a default group or nice-0 task, about
	// what nice 9 weighs.
	bgSharesV1 = "128"
	// bgWeightV2 is cpu.weight (default 100), the same ratio.
	bgWeightV2 = "12"
	// bgIdleFile makes the group an idle one where the kernel has it (see above).
	bgIdleFile = "cpu.idle"
)

// bgLimit is the longest an owner stays in the background (see above): about ten times a
// direct-backend owner's start on a loaded host. A variable for the tests.
var bgLimit = 5 * time.Second

// errNoCPUController: neither a cgroup v1 cpu hierarchy nor a cgroup v2 one with the cpu
// controller available to its children is mounted.
var errNoCPUController = errors.New("no cpu cgroup controller to run the owner at background priority")

// cpuHierarchy is where the cpu controller's groups are: the mount point, the mount's root within
// the hierarchy (not "/" inside a container), and whether it is cgroup v2.
type cpuHierarchy struct {
	mount, root string
	v2          bool
}

// findCPUHierarchy picks, from mountinfo (package mountinfo), a cgroup v1 mount whose options name
// the cpu controller; otherwise a cgroup2 mount whose root delegates cpu to its children.
func findCPUHierarchy(mountinfoPath string) (cpuHierarchy, error) {
	ms, err := mountinfo.Read(mountinfoPath)
	if err != nil {
		return cpuHierarchy{}, fmt.Errorf("%w: %w", errNoCPUController, err)
	}
	var v2 *cpuHierarchy
	for _, m := range ms {
		h := cpuHierarchy{mount: m.Point, root: m.Root}
		switch m.FSType {
		case "cgroup":
			if m.HasOption("cpu") {
				return h, nil
			}
		case "cgroup2":
			if v2 == nil && h.root == "/" && hasWord(filepath.Join(h.mount, "cgroup.subtree_control"), "cpu") {
				h.v2 = true
				v2 = &h
			}
		}
	}
	if v2 != nil {
		return *v2, nil
	}
	return cpuHierarchy{}, errNoCPUController
}

func hasWord(path, word string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, w := range strings.Fields(string(data)) {
		if w == word {
			return true
		}
	}
	return false
}

// groupOf returns the directory of pid's group in h, from /proc/PID/cgroup.
func (h cpuHierarchy) groupOf(pid int) (string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		match := false
		if h.v2 {
			match = parts[0] == "0" && parts[1] == ""
		} else {
			for _, c := range strings.Split(parts[1], ",") {
				match = match || c == "cpu"
			}
		}
		if !match {
			continue
		}
		rel := parts[2]
		if h.root != "/" {
			rel = strings.TrimPrefix(rel, h.root)
		}
		return filepath.Join(h.mount, filepath.Clean("/"+rel)), nil
	}
	return "", fmt.Errorf("%w: pid %d has no group in %s", errNoCPUController, pid, h.mount)
}

// cpuHierarchyOnce is findCPUHierarchy of this host, read once: mounts do not move under a
// running invoker.
var cpuHierarchyOnce = sync.OnceValues(func() (cpuHierarchy, error) {
	return findCPUHierarchy("/proc/self/mountinfo")
})

// bgGroup is one owner's background group and the group it came from.
type bgGroup struct {
	dir, from string
}

// moveToBackground makes the background group of pid (a new owner, which has not started threads
// of its own worth moving yet; any it has move with it) and moves pid into it.
func moveToBackground(h cpuHierarchy, pid int) (*bgGroup, error) {
	from, err := h.groupOf(pid)
	if err != nil {
		return nil, err
	}
	sweepBackground(h)
	dir := filepath.Join(h.mount, bgPrefix+strconv.Itoa(pid))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("background cpu group: %w", err)
	}
	file, value := "cpu.shares", bgSharesV1
	if h.v2 {
		file, value = "cpu.weight", bgWeightV2
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return nil, errors.Join(fmt.Errorf("background cpu group: %w", err), os.Remove(dir))
	}
	if _, err := os.Stat(filepath.Join(dir, bgIdleFile)); err == nil {
		if err := os.WriteFile(filepath.Join(dir, bgIdleFile), []byte("1"), 0); err != nil {
			return nil, errors.Join(fmt.Errorf("background cpu group: idle: %w", err), os.Remove(dir))
		}
	}
	if err := writeProcs(dir, pid); err != nil {
		return nil, errors.Join(fmt.Errorf("background cpu group: %w", err), os.Remove(dir))
	}
	return &bgGroup{dir: dir, from: from}, nil
}

// foreground moves every process of the group back to where the owner came from and removes the
// group. A process that exited meanwhile is no error.
func (g *bgGroup) foreground() error {
	data, err := os.ReadFile(filepath.Join(g.dir, "cgroup.procs"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("foreground: %w", err)
	}
	var errs []error
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if err := writeProcs(g.from, pid); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("foreground: %w", err))
		}
	}
	if err := g.remove(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// remove removes the (empty) group; one already gone is no error.
func (g *bgGroup) remove() error {
	if err := os.Remove(g.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove background cpu group: %w", err)
	}
	return nil
}

func writeProcs(dir string, pid int) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

// sweepBackground removes the groups of owners that no longer run, left by an invoker that
// crashed before it could (a live owner's group is never removed: its pid still runs, and a
// group with processes in it refuses rmdir anyway).
func sweepBackground(h cpuHierarchy) {
	dirs, _ := filepath.Glob(filepath.Join(h.mount, bgPrefix+"*")) // only a malformed pattern fails
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), bgPrefix))
		if err != nil || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		_ = os.Remove(d) // EBUSY: something runs in it after all; leave it
	}
}
