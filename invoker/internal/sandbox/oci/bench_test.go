package oci

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/teemate/platform/invoker/internal/reap"
	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/sandboxtest"
	"github.com/teemate/platform/invoker/internal/sandbox/startconf"
)

// benchStart measures Create (pool acquire, per-use configuration, `runc start`) on the teemate
// image; waiting for the exit and destroying are outside the timer, as they are off the
// activation's critical path.
func benchStart(b *testing.B, poolSize int) {
	key := PoolKey{Image: "teemate", MemoryMB: 64}
	var prewarm []PoolKey
	if poolSize > 0 {
		prewarm = []PoolKey{key}
	}
	rt := newRuntime(b, Config{PoolSize: poolSize, Prewarm: prewarm})
	ctx := context.Background()
	dir := b.TempDir()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if poolSize > 0 {
			b.StopTimer()
			p := rt.poolFor(rt.normalise(key))
			for len(p.ready) < poolSize { // let the refill catch up: steady state, not a burst
				<-sleepTick()
			}
			b.StartTimer()
		}
		t0 := time.Now()
		sb, err := rt.Create(ctx, sandbox.Spec{Name: fmt.Sprintf("wsk0_%d_bench", i), Rootfs: "teemate", MemoryMB: 64,
			Command: sandboxtest.StartStubCommand(),
			Mounts:  []sandbox.Mount{{HostPath: dir, GuestPath: "/run/teemate/proxy"}}})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		lat = append(lat, time.Since(t0))
		_, _ = sandboxtest.Drain(sb)
		<-sb.Exited()
		if err := sb.Destroy(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportPercentiles(b, lat)
}

// reportPercentiles adds p50 and p99 (in ms) to a benchmark's output.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(at(0.5), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkPoolAcquireStart: a pooled container, the backend's normal path.
func BenchmarkPoolAcquireStart(b *testing.B) { benchStart(b, 2) }

// BenchmarkColdCreateStart: no pool, create and start on the request path, for comparison.
func BenchmarkColdCreateStart(b *testing.B) { benchStart(b, -1) }

func sleepTick() <-chan time.Time { return time.After(5 * time.Millisecond) }

// BenchmarkCreateSteps times each step of Create on a pooled container, as the teemate executor
// uses it (two per-use mounts, one read-only): plan (checks, start configuration), acquire,
// prepare (per-use mounts, configuration file), start (release through the exec FIFO, until
// the stub exec'd). Each step's p50 and p99 are reported in ms.
func BenchmarkCreateSteps(b *testing.B) {
	key := PoolKey{Image: "teemate", MemoryMB: 64}
	rt := newRuntime(b, Config{PoolSize: 2, Prewarm: []PoolKey{key}})
	ctx := context.Background()
	proxyDir, gateDir := b.TempDir(), b.TempDir()
	steps := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := rt.poolFor(rt.normalise(key))
		for len(p.ready) < 2 {
			<-sleepTick()
		}
		b.StartTimer()
		spec := sandbox.Spec{Name: fmt.Sprintf("wsk0_%d_bench", i), Rootfs: "teemate", MemoryMB: 64,
			Command: []string{"/bin/teemate-shim"}, Env: map[string]string{"TEEMATE_PROXY_SOCKET": "/run/teemate/proxy/proxy.sock"},
			Mounts: []sandbox.Mount{{HostPath: proxyDir, GuestPath: "/run/teemate/proxy"},
				{HostPath: gateDir, GuestPath: "/run/teemate/gate", ReadOnly: true}}}
		t0 := time.Now()
		k, conf, err := rt.plan(spec)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		bx, err := rt.acquire(ctx, k)
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := bx.prepare(spec.Mounts, conf); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		if err := rt.start(ctx, bx); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		b.StopTimer()
		steps["plan"] = append(steps["plan"], t1.Sub(t0))
		steps["acquire"] = append(steps["acquire"], t2.Sub(t1))
		steps["prepare"] = append(steps["prepare"], t3.Sub(t2))
		steps["start"] = append(steps["start"], t4.Sub(t3))
		steps["total"] = append(steps["total"], t4.Sub(t0))
		if err := bx.Destroy(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	for name, lat := range steps {
		slices.Sort(lat)
		at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / 1e6 }
		b.ReportMetric(at(0.5), name+"-p50-ms")
		b.ReportMetric(at(0.99), name+"-p99-ms")
	}
}

// BenchmarkPerUseMount compares the two ways of mounting one per-use directory into a shared
// slot with nosuid,nodev,ro: the detached tree of the new mount API (open_tree, mount_setattr,
// move_mount) and the staged bind (bind, remount, bind, unmount).
func BenchmarkPerUseMount(b *testing.B) {
	needRuntime(b)
	for _, c := range []struct {
		name string
		bind func(host, target, stage string) error
	}{
		{"detached", func(h, t, _ string) error { return bindDetached(h, t, true) }},
		{"staged", func(h, t, s string) error { return bindStaged(h, t, true, s) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			dir, host := b.TempDir(), b.TempDir()
			slot := filepath.Join(dir, "slot")
			if err := os.Mkdir(slot, 0o755); err != nil {
				b.Fatal(err)
			}
			if err := unix.Mount(slot, slot, "", unix.MS_BIND, ""); err != nil {
				b.Fatal(err)
			}
			defer unix.Unmount(slot, unix.MNT_DETACH)
			if err := unix.Mount("", slot, "", unix.MS_SHARED, ""); err != nil {
				b.Fatal(err)
			}
			target := filepath.Join(slot, "gate")
			if err := os.Mkdir(target, 0o755); err != nil {
				b.Fatal(err)
			}
			stage := filepath.Join(dir, "stage")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.bind(host, target, stage); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkStartStub is what the start stub adds to a command's start: the stub reading its
// configuration and exec'ing /bin/true, against /bin/true run directly (both fork+exec from here).
func BenchmarkStartStub(b *testing.B) {
	stub := buildStub(b)
	conf, err := startconf.Config{Path: "/bin/true", Args: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin", "A=1"}, Cwd: "/"}.Encode()
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), StartConfigName)
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		argv []string
	}{{"direct", []string{"/bin/true"}}, {"stub", []string{stub, path}}} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if out, err := exec.Command(c.argv[0], c.argv[1:]...).CombinedOutput(); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
			}
		})
	}
}

// BenchmarkSustained is Create under a sequential stream of activations that do not wait for
// the pool: each sandbox lives 5 ms (an activation's own work) and is destroyed in the
// background, as the executor does, then the next Create follows at once. It shows whether the
// pool's refill keeps up (p50 near the pooled case) or drains (p50 near a cold create).
func BenchmarkSustained(b *testing.B) {
	for _, c := range []struct{ pool, workers int }{{2, 1}, {8, 1}, {8, 2}} {
		b.Run(fmt.Sprintf("pool%d-workers%d", c.pool, c.workers), func(b *testing.B) {
			key := PoolKey{Image: "teemate", MemoryMB: 64}
			rt := newRuntime(b, Config{PoolSize: c.pool, RefillWorkers: c.workers, Prewarm: []PoolKey{key}})
			p := rt.poolFor(rt.normalise(key))
			for len(p.ready) < c.pool {
				<-sleepTick()
			}
			ctx := context.Background()
			var lat []time.Duration
			var wg sync.WaitGroup
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				sb, err := rt.Create(ctx, sandbox.Spec{Name: fmt.Sprintf("wsk0_%d_sustained", i), Rootfs: "teemate", MemoryMB: 64,
					Command: sandboxtest.StartStubCommand()})
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				time.Sleep(5 * time.Millisecond)
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _ = sandboxtest.Drain(sb)
					if err := sb.Destroy(ctx); err != nil {
						b.Error(err)
					}
				}()
			}
			b.StopTimer()
			wg.Wait()
			reportPercentiles(b, lat)
		})
	}
}

// cpuCgroup moves this process into a cpuacct cgroup of its own and returns the cgroup parent for
// the containers below it and a function reading the CPU the whole tree used (this process, the
// runtime's processes it forks, every container): cpuacct.usage is hierarchical.
func cpuCgroup(b *testing.B) (string, func() time.Duration) {
	b.Helper()
	rel := fmt.Sprintf("/teemate-bench-%d", os.Getpid())
	dir := filepath.Join("/sys/fs/cgroup/cpuacct", rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Skipf("no cgroup v1 cpuacct controller: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		// Back to the root, then the cgroup goes (the containers' below it went with Close).
		if err := os.WriteFile("/sys/fs/cgroup/cpuacct/cgroup.procs", []byte(fmt.Sprint(os.Getpid())), 0); err != nil {
			b.Error(err)
		}
		if _, err := reap.RemoveCgroup(rel); err != nil {
			b.Error(err)
		}
	})
	return rel + "/c", func() time.Duration {
		v, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage"))
		if err != nil {
			b.Fatal(err)
		}
		var ns int64
		if _, err := fmt.Sscan(string(v), &ns); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ns)
	}
}

// BenchmarkContainerCPU is one fresh container's whole life without a pool, create, start (the
// start stub execs and exits), wait, destroy, back to back: wall time and the CPU of every
// process involved (cpu-ms/op), whichever runtime OCI_TEST_RUNTIME names. state=disk keeps the
// bundles in a directory of the temporary directory's filesystem, state=tmpfs on a tmpfs of
// their own, as the invoker keeps them (daemon.onTmpfs).
func BenchmarkContainerCPU(b *testing.B) {
	b.Run("state=disk", func(b *testing.B) { benchContainerCPU(b, "") })
	b.Run("state=tmpfs", func(b *testing.B) {
		dir, err := os.MkdirTemp("", "ocitmpfs")
		if err != nil {
			b.Fatal(err)
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
			os.Remove(dir)
			b.Skipf("no tmpfs: %v", err)
		}
		b.Cleanup(func() {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				b.Errorf("unmount %s: %v", dir, err)
			}
			os.RemoveAll(dir)
		})
		benchContainerCPU(b, dir)
	})
}

func benchContainerCPU(b *testing.B, state string) {
	parent, usage := cpuCgroup(b)
	rt := newRuntime(b, Config{PoolSize: -1, CgroupParent: parent, StateDir: state})
	ctx := context.Background()
	spec := func(i int) sandbox.Spec {
		return sandbox.Spec{Name: fmt.Sprintf("wsk0_%d_cpu", i), Rootfs: "teemate", MemoryMB: 64, Command: sandboxtest.StartStubCommand()}
	}
	one := func(i int) {
		sb, err := rt.Create(ctx, spec(i))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = sandboxtest.Drain(sb)
		<-sb.Exited()
		if err := sb.Destroy(ctx); err != nil {
			b.Fatal(err)
		}
	}
	one(1 << 20) // the image's configuration is loaded once, outside the measure
	cpu0 := usage()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		one(i)
	}
	b.StopTimer()
	b.ReportMetric(float64(usage()-cpu0)/1e6/float64(b.N), "cpu-ms/op")
}

// BenchmarkRefillRate is how many fresh containers a second the pool hands out when nothing
// else holds it back: Create takes a pooled container (or makes one when the pool is empty) and
// the sandbox is destroyed in the background at once; the refill (2 workers, as the invoker
// runs it) makes the next ones meanwhile. containers/s is what the pool sustains.
func BenchmarkRefillRate(b *testing.B) {
	key := PoolKey{Image: "teemate", MemoryMB: 64}
	rt := newRuntime(b, Config{PoolSize: 8, RefillWorkers: 2, Prewarm: []PoolKey{key}})
	p := rt.poolFor(rt.normalise(key))
	for len(p.ready) < 8 {
		<-sleepTick()
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		sb, err := rt.Create(ctx, sandbox.Spec{Name: fmt.Sprintf("wsk0_%d_refill", i), Rootfs: "teemate", MemoryMB: 64,
			Command: sandboxtest.StartStubCommand()})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = sandboxtest.Drain(sb)
			<-sb.Exited()
			if err := sb.Destroy(ctx); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "containers/s")
}
