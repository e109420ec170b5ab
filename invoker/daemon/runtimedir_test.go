package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// One state directory and id give one runtime directory, at every start and under any spelling;
// another state directory or id another. A second invoker on the same state directory and id is
// refused while the first holds it, and starts once the first has gone.
func TestRuntimeDir_StableAndLocked(t *testing.T) {
	state := t.TempDir()
	other := t.TempDir()
	a, err := openRuntimeDir(state, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer a.remove(zap.NewNop())
	if !strings.HasPrefix(filepath.Base(a.path), "tm-") || !strings.HasSuffix(a.path, "-3") || len(a.path) > len(os.TempDir())+20 {
		t.Errorf("runtime dir %s: want TMPDIR/tm-<8 hex>-3", a.path)
	}
	same, err := RuntimeDir(state+"/./", 3)
	if err != nil || same != a.path {
		t.Errorf("RuntimeDir of another spelling: %s %v, want %s", same, err, a.path)
	}
	for _, c := range []struct {
		state string
		id    int
	}{{other, 3}, {state, 4}} {
		if d, err := RuntimeDir(c.state, c.id); err != nil || d == a.path {
			t.Errorf("RuntimeDir(%s, %d) = %s %v: must differ from %s", c.state, c.id, d, err, a.path)
		}
	}
	if _, err := openRuntimeDir(state, 3); !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), "held by pid") {
		t.Fatalf("second invoker on the same state dir and id: %v, want ErrAlreadyRunning with the holder", err)
	}
	b, err := openRuntimeDir(state, 4) // another id on the same state dir is another invoker
	if err != nil {
		t.Fatal(err)
	}
	b.remove(zap.NewNop())
	a.remove(zap.NewNop())
	if _, err := os.Stat(a.path); !os.IsNotExist(err) {
		t.Errorf("runtime dir left after remove: %v", err)
	}
	again, err := openRuntimeDir(state, 3)
	if err != nil {
		t.Fatalf("after the first stopped: %v", err)
	}
	again.remove(zap.NewNop())
}

// A runtime directory that someone else made (its name is predictable in a shared /tmp) is refused.
func TestRuntimeDir_RefusesForeignDirectory(t *testing.T) {
	state := t.TempDir()
	path, err := RuntimeDir(state, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), path); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	if _, err := openRuntimeDir(state, 0); err == nil || !strings.Contains(err.Error(), "not a private directory") {
		t.Fatalf("a symlink at the runtime dir: %v, want a refusal", err)
	}
	// The lock was released with the refusal.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	d, err := openRuntimeDir(state, 0)
	if err != nil {
		t.Fatal(err)
	}
	d.remove(zap.NewNop())
}

// The bundles' and proxies' directories become tmpfs mounts of their own, once: a directory
// already on tmpfs, or holding leftovers a mount would hide from Reap, is left as it is, and
// remove unmounts them with the rest.
func TestRuntimeDir_FilesOnTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	d, err := openRuntimeDir(t.TempDir(), 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.remove(zap.NewNop()) })
	isTmpfs := func(dir string) bool {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		return st.Type == unix.TMPFS_MAGIC
	}
	o := filepath.Join(d.path, "o")
	if mounted, err := onTmpfs(o); err != nil || !mounted || !isTmpfs(o) {
		t.Fatalf("onTmpfs(%s) = %v, %v; tmpfs %v", o, mounted, err, isTmpfs(o))
	}
	if mounted, err := onTmpfs(o); err != nil || mounted {
		t.Fatalf("a second onTmpfs mounted again: %v, %v", mounted, err)
	}
	s := filepath.Join(d.path, "s")
	if err := os.MkdirAll(filepath.Join(s, "left"), 0o700); err != nil {
		t.Fatal(err)
	}
	if mounted, err := onTmpfs(s); err != nil || mounted || isTmpfs(s) {
		t.Fatalf("onTmpfs over leftovers = %v, %v: it would hide them", mounted, err)
	}
	d.remove(zap.NewNop())
	if _, err := os.Stat(d.path); !os.IsNotExist(err) {
		t.Errorf("runtime dir left after remove: %v", err)
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(mounts), d.path) {
		t.Errorf("a mount below %s is left after remove (%v)", d.path, err)
	}
}
