package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/internal/reap"
	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/sandboxtest"
)

// waitPool waits until the key's pool holds n containers (the refill runs in the background).
func waitPool(t *testing.T, rt *Runtime, key PoolKey, n int) {
	t.Helper()
	p := rt.poolFor(rt.normalise(key))
	deadline := time.Now().Add(30 * time.Second)
	for len(p.ready) < n {
		if time.Now().After(deadline) {
			t.Fatalf("pool %+v holds %d containers, want %d", key, len(p.ready), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFreshPooledContainerPerUse(t *testing.T) {
	key := PoolKey{Image: "teemate", MemoryMB: 64}
	rt := newRuntime(t, Config{PoolSize: 2, Prewarm: []PoolKey{key}})
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		waitPool(t, rt, key, 2)
		pooled := listIDs(t, rt)
		sb, err := rt.Create(context.Background(), sandbox.Spec{Name: fmt.Sprintf("wsk0_%d_guest_a", i), Rootfs: "teemate", MemoryMB: 64,
			Command: sandboxtest.StartStubCommand()})
		if err != nil {
			t.Fatal(err)
		}
		if seen[sb.ID()] {
			t.Fatalf("container %s used twice", sb.ID())
		}
		seen[sb.ID()] = true
		if !slices.Contains(pooled, sb.ID()) {
			t.Errorf("container %s did not come from the pool %v", sb.ID(), pooled)
		}
		sandboxtest.CheckStartStubRun(t, sb)
		if slices.Contains(listIDs(t, rt), sb.ID()) {
			t.Fatalf("used container %s still listed", sb.ID())
		}
		if _, err := os.Stat(filepath.Join(rt.cfg.StateDir, sb.ID())); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("bundle of %s left: %v", sb.ID(), err)
		}
	}
}

// TestPerUseMountsEnvAndCommand checks the start-time configuration of a pooled container: the
// command, environment and bind mounts chosen at Create reach a container created before.
func TestPerUseMountsEnvAndCommand(t *testing.T) {
	key := PoolKey{Image: "native", MemoryMB: 128}
	rt := newRuntime(t, Config{PoolSize: 1, Prewarm: []PoolKey{key}})
	waitPool(t, rt, key, 1)
	rw, ro := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "in.txt"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `const fs=require('fs');
fs.writeFileSync('/run/teemate/proxy/out.txt', fs.readFileSync('/run/teemate/gate/in.txt','utf8') + ' ' + process.env.GREETING);
let roErr = 'none'; try { fs.writeFileSync('/run/teemate/gate/x', '1') } catch (e) { roErr = e.code }
let rootErr = 'none'; try { fs.writeFileSync('/etc/x', '1') } catch (e) { rootErr = e.code }
fs.writeFileSync('/tmp/t', 'tmp ok');
console.log(roErr, rootErr, fs.readFileSync('/tmp/t','utf8'), process.pid, Object.keys(require('os').networkInterfaces()).join(','));`
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_1_guest_mounts", Rootfs: "native", MemoryMB: 128,
		Command: []string{"/usr/bin/node", "-e", script}, Env: map[string]string{"GREETING": "hi"},
		Mounts: []sandbox.Mount{{HostPath: rw, GuestPath: "/run/teemate/proxy"}, {HostPath: ro, GuestPath: "/run/teemate/gate", ReadOnly: true}}})
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := sandboxtest.Drain(sb)
	sandboxtest.WaitExit(t, sb, 30*time.Second)
	if got := strings.TrimSpace(stdout()); got != "EROFS EROFS tmp ok 1 lo" {
		t.Errorf("stdout %q (stderr %q)", got, stderr())
	}
	b, err := os.ReadFile(filepath.Join(rw, "out.txt"))
	if err != nil || string(b) != "from the host hi" {
		t.Errorf("out.txt %q %v", b, err)
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The host directories survive the container, untouched by its removal.
	if _, err := os.Stat(filepath.Join(ro, "in.txt")); err != nil {
		t.Fatalf("host file gone: %v", err)
	}
}

func TestMemoryLimitOOMKills(t *testing.T) {
	rt := newRuntime(t, Config{PoolSize: -1})
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_2_guest_bomb", Rootfs: "native", MemoryMB: 64,
		Command: sandboxtest.MemoryBombCommand()})
	if err != nil {
		t.Fatal(err)
	}
	sandboxtest.CheckOOMKilled(t, sb)
}

func TestRefusedSpecs(t *testing.T) {
	rt := newRuntime(t, Config{PoolSize: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, spec := range map[string]sandbox.Spec{
		"bad command":      {Name: "wsk0_3_a", Rootfs: "teemate", Command: []string{"/no/such/binary"}},
		"bare bad command": {Name: "wsk0_3_b", Rootfs: "teemate", Command: []string{"nosuchbinary"}},
		"network":          {Name: "wsk0_3_c", Rootfs: "teemate", Network: true},
		"no image":         {Name: "wsk0_3_d", Rootfs: "nosuchimage"},
		"image path":       {Name: "wsk0_3_e", Rootfs: "../teemate"},
		"bad name":         {Name: "bad-name", Rootfs: "teemate"},
		"mount outside":    {Name: "wsk0_3_f", Rootfs: "teemate", Mounts: []sandbox.Mount{{HostPath: "/tmp", GuestPath: "/etc"}}},
		"relative mount":   {Name: "wsk0_3_g", Rootfs: "teemate", Mounts: []sandbox.Mount{{HostPath: "tmp", GuestPath: "/run/teemate/x"}}},
		"bad env":          {Name: "wsk0_3_h", Rootfs: "teemate", Env: map[string]string{"A=B": "c"}},
	} {
		if _, err := rt.Create(ctx, spec); !errors.Is(err, sandbox.ErrStartFailed) {
			t.Errorf("%s: %v, want ErrStartFailed", name, err)
		}
	}
	if ids := listIDs(t, rt); len(ids) != 0 {
		t.Fatalf("refused specs left containers: %v", ids)
	}
}

func TestReapRemovesLeftovers(t *testing.T) {
	needRuntime(t)
	state, err := os.MkdirTemp("", "oci")
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after the runtime's Close (t.Cleanup is last in, first out).
	t.Cleanup(func() { os.RemoveAll(state) })
	parent := "/teemate/" + filepath.Base(state)
	// An "earlier run" that crashed: a created container and a started one, never destroyed.
	old := newRuntimeNoClose(t, Config{StateDir: state, PoolSize: -1, IDPrefix: "wsk7_", CgroupParent: parent, OwnCgroupParent: true})
	created, err := old.createContainer(context.Background(), PoolKey{Image: "teemate", PidsLimit: 16})
	if err != nil {
		t.Fatal(err)
	}
	started, err := old.Create(context.Background(), sandbox.Spec{Name: "wsk7_1_guest_a", Rootfs: "native",
		Command: []string{"/usr/bin/node", "-e", "setTimeout(()=>{}, 60000)"}})
	if err != nil {
		t.Fatal(err)
	}
	oldPids := []int{created.pid, started.(*box).pid}
	oldCgroups := []string{created.cgroup, started.(*box).cgroup}
	old.cancel() // its refillers; nothing else of it is closed, as after a SIGKILL
	rt := newRuntime(t, Config{StateDir: state, PoolSize: 1, IDPrefix: "wsk7_", CgroupParent: parent, OwnCgroupParent: true,
		Prewarm: []PoolKey{{Image: "teemate"}}})
	waitPool(t, rt, PoolKey{Image: "teemate"}, 1)
	before := listIDs(t, rt)
	got, err := rt.Reap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.Containers != 2 || got.Files != 2 || got.Mounts < 2 {
		t.Errorf("reaped %+v, want 2 containers, 2 bundles and their mounts", got)
	}
	ours := "wsk7_" + rt.run + "_"
	left := listIDs(t, rt)
	for _, id := range before {
		if !strings.HasPrefix(id, ours) && slices.Contains(left, id) {
			t.Errorf("leftover %s survived the reap", id)
		}
	}
	for _, id := range left {
		if !strings.HasPrefix(id, ours) {
			t.Errorf("leftover %s survived the reap", id)
		}
	}
	if len(left) == 0 {
		t.Error("the reap removed this runtime's own pooled containers")
	}
	for _, b := range bundles(t, rt) {
		if !strings.HasPrefix(b, ours) {
			t.Errorf("bundle %s survived the reap", b)
		}
	}
	for _, pid := range oldPids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(b), ") Z ") {
				t.Errorf("process %d of a leftover container still runs", pid)
			}
		}
	}
	for _, cg := range oldCgroups {
		if m, _ := filepath.Glob("/sys/fs/cgroup/*" + cg); len(m) > 0 {
			t.Errorf("cgroup of a leftover container survived: %v", m)
		}
	}
	// Slot mounts of this runtime's containers only, nothing of the leftovers (the refill may
	// have made another container since left was listed).
	mps, err := reap.MountsBelow(state)
	if err != nil || len(mps) < len(left) {
		t.Errorf("mounts below the state dir: %v (%v), want the %d slots of this runtime's containers", mps, err, len(left))
	}
	for _, m := range mps {
		if !strings.HasPrefix(m, filepath.Join(state, ours)) {
			t.Errorf("mount %s of a leftover survived the reap", m)
		}
	}
	if err := rt.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob("/sys/fs/cgroup/*" + parent); len(m) > 0 {
		t.Errorf("Close left the runtime's cgroup parent: %v", m)
	}
}

func TestConcurrentCreateDestroy(t *testing.T) {
	key := PoolKey{Image: "teemate", MemoryMB: 32}
	rt := newRuntime(t, Config{PoolSize: 4, Prewarm: []PoolKey{key}})
	seen := sandboxtest.CreateDestroyConcurrently(t, 64, true, func(ctx context.Context, i int) (sandbox.Sandbox, error) {
		return rt.Create(ctx, sandbox.Spec{Name: fmt.Sprintf("wsk0_%d_guest_c", i), Rootfs: "teemate", MemoryMB: 32,
			Command: sandboxtest.StartStubCommand()})
	})
	for _, id := range listIDs(t, rt) {
		if seen[id] {
			t.Errorf("used container %s still listed", id)
		}
	}
}
