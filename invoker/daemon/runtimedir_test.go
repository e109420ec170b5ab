package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
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
