package reap

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testtool.Missing(t, "mounts and cgroups need root")
	}
}

// startGroup starts sleep as the leader of a process group of its own, with a child in the group.
func startGroup(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "sleep 60 & exec sleep 60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // ours; gone already is fine
		_ = cmd.Wait()                                      // its status says nothing here
	})
	return cmd
}

func waitExit(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // killed: the status says nothing
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("process %d still runs", cmd.Process.Pid)
	}
}

// A recorded group is killed (leader and member) and its record removed; a record whose pid now
// belongs to another process (another start time) only goes, the process lives.
func TestKill_RecordedGroupsOnly(t *testing.T) {
	dir := t.TempDir()
	ours := startGroup(t)
	if err := Record(dir, "ours", ours.Process.Pid); err != nil {
		t.Fatal(err)
	}
	bystander := startGroup(t)
	st, err := StartTime(bystander.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	forged := strconv.Itoa(bystander.Process.Pid) + " " + strconv.FormatUint(st+1, 10) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "reused.pid"), []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "torn.pid"), []byte("12"), 0o600); err != nil {
		t.Fatal(err)
	}
	skipped := startGroup(t)
	if err := Record(dir, "skipped", skipped.Process.Pid); err != nil {
		t.Fatal(err)
	}
	n, err := Kill(dir, func(name string) bool { return name == "skipped" })
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("killed %d, want 1", n)
	}
	waitExit(t, ours)
	if syscall.Kill(bystander.Process.Pid, 0) != nil || syscall.Kill(skipped.Process.Pid, 0) != nil {
		t.Fatal("a process not ours (or skipped) was killed")
	}
	left, err := Records(dir)
	if err != nil || len(left) != 1 || left[0].Name != "skipped" || !left[0].Alive() {
		t.Fatalf("records left: %+v %v, want the skipped one", left, err)
	}
	if err := Forget(dir, "skipped"); err != nil {
		t.Fatal(err)
	}
	if err := Record(dir, "../x", 1); err == nil {
		t.Fatal("a record name with a slash must be refused")
	}
}

// Mounts below a directory are detached deepest first, stacked ones too; RemoveTree then removes
// the directory and never descends into what was mounted.
func TestRemoveTree_DetachesMountsFirst(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "tree")
	for _, d := range []string{"a/b", "c d"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mount := func(src, target string) {
		t.Helper()
		if err := syscall.Mount(src, target, "", syscall.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
	}
	mount(outside, filepath.Join(tree, "a"))
	if err := syscall.Mount("tmpfs", filepath.Join(tree, "a"), "tmpfs", 0, "size=1m"); err != nil { // stacked
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(tree, "a", "b"), 0o700); err != nil {
		t.Fatal(err)
	}
	mount(outside, filepath.Join(tree, "a", "b"))
	mount(outside, filepath.Join(tree, "c d")) // mountinfo escapes the space
	t.Cleanup(func() { _, _ = Unmount(tree) }) // after a failure only
	n, err := RemoveTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("detached %d mounts, want 4", n)
	}
	if _, err := os.Stat(tree); !os.IsNotExist(err) {
		t.Fatalf("tree not removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Fatalf("the mounted directory's content was removed: %v", err)
	}
}

// A cgroup tree is removed depth first in every hierarchy, its processes killed first.
func TestRemoveCgroup_KillsAndRemoves(t *testing.T) {
	needRoot(t)
	roots, err := cgroupRoots()
	if err != nil || len(roots) == 0 {
		testtool.Missing(t, "no cgroup hierarchy mounted")
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	rel := "/teemate-reaptest-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { _, _ = RemoveCgroup(rel) }) // after a failure only
	leaf := filepath.Join(roots[0], rel, "inner", "leaf")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Skipf("cannot make a cgroup here: %v", err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		_ = cmd.Process.Kill() // ours
		t.Skipf("cannot move a process into a cgroup here: %v", err)
	}
	names, err := CgroupChildren(rel)
	if err != nil || len(names) != 1 || names[0] != "inner" {
		t.Errorf("children of %s: %v %v", rel, names, err)
	}
	n, err := RemoveCgroup(rel)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("removed %d cgroups, want 3", n)
	}
	waitExit(t, cmd)
	if _, err := os.Stat(filepath.Join(roots[0], rel)); !os.IsNotExist(err) {
		t.Fatalf("cgroup not removed: %v", err)
	}
	if _, err := RemoveCgroup("/"); err == nil {
		t.Fatal("removing the root cgroup must be refused")
	}
}

// RemoveUnmounted removes a tree (files, sockets, nested directories, symlinks, which it does not
// follow) and stops at a mount without touching what is mounted, wherever the mount is.
func TestRemoveUnmounted(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	build := func(t *testing.T) string {
		t.Helper()
		tree := filepath.Join(t.TempDir(), "bundle")
		for _, d := range []string{"slot/a/b", "slot/c d", "empty"} {
			if err := os.MkdirAll(filepath.Join(tree, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []string{"config.json", "slot/a/b/start", "slot/c d/x"} {
			if err := os.WriteFile(filepath.Join(tree, f), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		// What a container could leave in its slot: links to the host's files and directories.
		if err := os.Symlink(outside, filepath.Join(tree, "slot", "to-dir")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(outside, "keep"), filepath.Join(tree, "slot", "a", "to-file")); err != nil {
			t.Fatal(err)
		}
		return tree
	}

	t.Run("a plain tree goes, links not followed", func(t *testing.T) {
		tree := build(t)
		if err := RemoveUnmounted(tree); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(tree); !os.IsNotExist(err) {
			t.Fatalf("tree left: %v", err)
		}
		if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
			t.Fatalf("a link's target was removed: %v", err)
		}
		if err := RemoveUnmounted(tree); err != nil {
			t.Fatalf("a missing tree: %v", err)
		}
		if err := RemoveUnmounted("relative/path"); err == nil {
			t.Fatal("a relative path was accepted")
		}
	})

	for _, at := range []string{"slot/a/b", "slot", ""} {
		t.Run("a mount at "+strconv.Quote(at)+" stops it", func(t *testing.T) {
			needRoot(t)
			tree := build(t)
			target := filepath.Join(tree, at)
			if err := syscall.Mount(outside, target, "", syscall.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Unmount(target, syscall.MNT_DETACH) })
			err := RemoveUnmounted(tree)
			if !errors.Is(err, ErrMountedBelow) {
				t.Fatalf("got %v, want ErrMountedBelow", err)
			}
			if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
				t.Fatalf("the mounted directory's content was removed: %v", err)
			}
			if err := syscall.Unmount(target, syscall.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			if err := RemoveUnmounted(tree); err != nil {
				t.Fatalf("after the unmount: %v", err)
			}
		})
	}
}
