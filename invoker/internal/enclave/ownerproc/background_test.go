package ownerproc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/internal/testtool"
)

func TestFindCPUHierarchy(t *testing.T) {
	v2Delegating := t.TempDir()
	if err := os.WriteFile(filepath.Join(v2Delegating, "cgroup.subtree_control"), []byte("cpuset cpu io memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v2Not := t.TempDir()
	if err := os.WriteFile(filepath.Join(v2Not, "cgroup.subtree_control"), []byte("memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, mountinfo string
		want            cpuHierarchy
		err             bool
	}{
		{"v1 hybrid (this host)", `30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
40 30 0:35 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
`, cpuHierarchy{mount: "/sys/fs/cgroup/cpu", root: "/"}, false},
		{"v1 joint, in a container", `31 30 0:28 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct
`, cpuHierarchy{mount: "/sys/fs/cgroup/cpu,cpuacct", root: "/docker/abc"}, false},
		{"v1 cpuacct and cpuset only", `32 30 0:29 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
33 30 0:30 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
`, cpuHierarchy{}, true},
		{"v2 delegating cpu", "40 30 0:35 / " + v2Delegating + " rw - cgroup2 cgroup2 rw\n",
			cpuHierarchy{mount: v2Delegating, root: "/", v2: true}, false},
		{"v2 not delegating cpu", "40 30 0:35 / " + v2Not + " rw - cgroup2 cgroup2 rw\n", cpuHierarchy{}, true},
		{"escaped mount point", `31 30 0:28 / /sys/fs/cgroup/my\040cpu rw - cgroup cgroup rw,cpu
`, cpuHierarchy{mount: "/sys/fs/cgroup/my cpu", root: "/"}, false},
		{"malformed lines", "garbage\n1 2 3 - cgroup\n", cpuHierarchy{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "mountinfo")
			if err := os.WriteFile(f, []byte(c.mountinfo), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := findCPUHierarchy(f)
			if c.err {
				if !errors.Is(err, errNoCPUController) {
					t.Fatalf("got %+v, %v; want errNoCPUController", got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

// hostHierarchy is this host's cpu hierarchy for the tests that move real processes: they need
// root and the controller (skipped without, failed under CI=true, whose machines have both).
func hostHierarchy(t *testing.T) cpuHierarchy {
	t.Helper()
	if os.Geteuid() != 0 {
		testtool.Missing(t, "moving processes between cpu cgroups needs root")
	}
	h, err := cpuHierarchyOnce()
	if err != nil {
		testtool.Missing(t, err.Error())
	}
	return h
}

func startBackground(t *testing.T, args ...string) *Proc {
	t.Helper()
	p, err := Start(exec.Command(args[0], args[1:]...), Options{ID: "o-bg", GateSocket: filepath.Join(t.TempDir(), "gate.sock"),
		StopTimeout: 100 * time.Millisecond, Log: zap.NewNop(), Background: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	return p
}

// An owner started in the background runs in a group of its own with a low weight, with the
// threads it starts later; Foreground moves it back where it came from and removes the group.
func TestBackgroundUntilForeground(t *testing.T) {
	h := hostHierarchy(t)
	home, err := h.groupOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	p := startBackground(t, "sleep", "60")
	if !p.Background() {
		t.Fatal("not in the background")
	}
	dir := filepath.Join(h.mount, bgPrefix+strconv.Itoa(p.Pid()))
	if g, err := h.groupOf(p.Pid()); err != nil || g != dir {
		t.Fatalf("owner's group %q (%v), want %q", g, err, dir)
	}
	file, want := "cpu.shares", bgSharesV1
	if h.v2 {
		file, want = "cpu.weight", bgWeightV2
	}
	if _, err := os.Stat(filepath.Join(dir, bgIdleFile)); err == nil {
		// An idle group (the kernel then reports the idle weight, not ours).
		file, want = bgIdleFile, "1"
	} else if os.Getenv("CI") == "true" {
		t.Errorf("no %s on this kernel (CI machines have Linux 5.15+): %v", bgIdleFile, err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, file)); err != nil || strings.TrimSpace(string(got)) != want {
		t.Fatalf("%s = %q (%v), want %s", file, got, err, want)
	}

	if err := p.Foreground(); err != nil {
		t.Fatal(err)
	}
	if g, err := h.groupOf(p.Pid()); err != nil || g != home {
		t.Fatalf("owner's group after Foreground %q (%v), want the invoker's %q", g, err, home)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("background group left: %v", err)
	}
	if p.Background() {
		t.Fatal("still in the background")
	}
	if err := p.Foreground(); err != nil {
		t.Fatalf("second Foreground: %v", err)
	}
}

// An owner that exits in the background takes its group with it; a group left by an owner whose
// invoker crashed is swept when the next one is made.
func TestBackgroundGroupRemovedOnExit(t *testing.T) {
	h := hostHierarchy(t)
	// A stale group: the pid of a process that has been reaped.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(h.mount, bgPrefix+strconv.Itoa(gone.Process.Pid))
	if err := os.Mkdir(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(stale) })

	p := startBackground(t, "sleep", "60")
	dir := filepath.Join(h.mount, bgPrefix+strconv.Itoa(p.Pid()))
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale group was not swept: %v", err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("background group left after the owner exited: %v", err)
	}
}

// The point of it: on a busy CPU, the owner in the background gets a small share. Two busy loops
// pinned to one CPU, one of them in the background, for a second: the background one must get
// well under half of what the other gets (its weight is an eighth; an idle group's far less).
func TestBackgroundGetsTheSmallerShare(t *testing.T) {
	hostHierarchy(t)
	testtool.Require(t, "taskset")
	loop := []string{"taskset", "-c", "0", "sh", "-c", "while :; do :; done"}
	bg := startBackground(t, loop...)
	fg, err := Start(exec.Command(loop[0], loop[1:]...), Options{ID: "o-fg", GateSocket: filepath.Join(t.TempDir(), "gate.sock"),
		StopTimeout: 100 * time.Millisecond, Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fg.Stop(context.Background()) })
	time.Sleep(100 * time.Millisecond) // taskset has exec'd the loop
	b0, f0 := cpuTicks(t, bg.Pid()), cpuTicks(t, fg.Pid())
	time.Sleep(time.Second)
	b, f := cpuTicks(t, bg.Pid())-b0, cpuTicks(t, fg.Pid())-f0
	if f == 0 || float64(b) > 0.5*float64(f) {
		t.Fatalf("CPU ticks in a second on one CPU: background %d, normal %d; want background < half", b, f)
	}
	t.Logf("CPU ticks in a second on one CPU: background %d, normal %d", b, f)
}

// cpuTicks is a process's utime + stime in clock ticks (proc(5)).
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.Atoi(fields[11]) // utime is field 14, the 12th after the command's ")"
	st, _ := strconv.Atoi(fields[12])
	return u + st
}

// A helper of the owner (its egress) joins the owner's background group and leaves it with the
// owner on Foreground; after that, joining is a no-op.
func TestHelperJoinsTheBackground(t *testing.T) {
	h := hostHierarchy(t)
	home, err := h.groupOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	p := startBackground(t, "sleep", "60")
	helper := exec.Command("sleep", "60")
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = helper.Process.Kill(); _ = helper.Wait() })
	if err := p.JoinBackground(helper.Process.Pid); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.mount, bgPrefix+strconv.Itoa(p.Pid()))
	if g, err := h.groupOf(helper.Process.Pid); err != nil || g != dir {
		t.Fatalf("helper's group %q (%v), want the owner's %q", g, err, dir)
	}
	if err := p.Foreground(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{p.Pid(), helper.Process.Pid} {
		if g, err := h.groupOf(pid); err != nil || g != home {
			t.Fatalf("pid %d's group after Foreground %q (%v), want %q", pid, g, err, home)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("background group left: %v", err)
	}
	if err := p.JoinBackground(helper.Process.Pid); err != nil {
		t.Fatalf("joining after Foreground: %v", err)
	}
	if g, _ := h.groupOf(helper.Process.Pid); g != home {
		t.Fatalf("a helper joined a group that is gone: %q", g)
	}
}

// An idle group can starve on a host whose CPUs stay busy: the background ends after bgLimit even
// without a lease, and the owner runs on where it came from.
func TestBackgroundEndsAfterTheLimit(t *testing.T) {
	h := hostHierarchy(t)
	home, err := h.groupOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	old := bgLimit
	bgLimit = 200 * time.Millisecond
	t.Cleanup(func() { bgLimit = old })
	p := startBackground(t, "sleep", "60")
	if !p.Background() {
		t.Fatal("not in the background")
	}
	dir := filepath.Join(h.mount, bgPrefix+strconv.Itoa(p.Pid()))
	deadline := time.Now().Add(5 * time.Second)
	for p.Background() {
		if time.Now().After(deadline) {
			t.Fatal("still in the background 5 s after a 200 ms limit")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if g, err := h.groupOf(p.Pid()); err != nil || g != home {
		t.Fatalf("owner's group after the limit %q (%v), want %q", g, err, home)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("background group left: %v", err)
	}
}
