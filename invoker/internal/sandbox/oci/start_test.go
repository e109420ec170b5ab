package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/sandboxtest"
)

// runcStatus is `runc state <id>`'s status.
func runcStatus(t *testing.T, rt *Runtime, id string) string {
	t.Helper()
	out, err := rt.runtime(context.Background(), "state", id)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("runc state: %v: %s", err, out)
	}
	return st.Status
}

// niceOf reads a process's nice value from /proc/<pid>/stat.
func niceOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])) // after the command name
	n, err := strconv.Atoi(f[16])                                  // field 19 of proc_pid_stat(5)
	if err != nil {
		t.Fatalf("stat %q: %v", b, err)
	}
	return n
}

// acceptOnFD3 is a command of the native image that serves one line per connection on the
// inherited descriptor 3: its TEEMATE_PROXY_FD and pid, then whatever the client sent.
var acceptOnFD3 = []string{"/usr/bin/node", "-e", `require('net').createServer(c => {
  c.once('data', d => c.end(process.env.TEEMATE_PROXY_FD + ' ' + process.pid + ' ' + d));
}).listen({fd: Number(process.env.TEEMATE_PROXY_FD)});`}

// TestStartReleasesCreatedContainer: Create starts a pooled container through its exec FIFO:
// runc sees it go from created to running, the command gets the pre-bound socket as descriptor
// 3, and a client that connects at once, before the command listens, is served from the backlog.
func TestStartReleasesCreatedContainer(t *testing.T) {
	key := PoolKey{Image: "native", MemoryMB: 128}
	rt := newRuntime(t, Config{PoolSize: 1, Prewarm: []PoolKey{key}})
	waitPool(t, rt, key, 1)
	pooled := listIDs(t, rt) // the pool's and maybe one the refill holds, ready for it
	for _, id := range pooled {
		if rt.kind == kindLaunch {
			break // no runtime state to ask: the launcher's containers are its children
		}
		if st := runcStatus(t, rt, id); st != "created" {
			t.Fatalf("pooled %s is %s", id, st)
		}
	}
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_6_guest_fd", Rootfs: "native", MemoryMB: 128,
		Command: acceptOnFD3, Env: map[string]string{"TEEMATE_PROXY_FD": "7"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.Background())
	if !slices.Contains(pooled, sb.ID()) {
		t.Fatalf("started %s, pooled %v", sb.ID(), pooled)
	}
	if rt.kind != kindLaunch {
		if st := runcStatus(t, rt, sb.ID()); st != "running" {
			t.Errorf("runc state after Create: %s", st)
		}
	}
	// The pool refill runs at a low priority; the activation must not inherit it.
	if n := niceOf(t, sb.(*box).pid); n != 0 {
		t.Errorf("the sandbox's process runs at nice %d", n)
	}
	if _, err := os.Stat(filepath.Join(rt.cfg.RuntimeRoot, sb.ID(), execFifo)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("exec fifo still there: %v", err)
	}
	c, err := net.Dial("unix", sb.ProxySocket()) // node is still starting: the backlog holds it
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(b) != "3 1 ping" {
		t.Fatalf("reply %q %v (want the stub's TEEMATE_PROXY_FD=3 and pid 1)", b, err)
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Only the container held the socket: with it gone, a connect is refused at once.
	if _, err := os.Stat(sb.ProxySocket()); err == nil {
		if c, err := net.Dial("unix", sb.ProxySocket()); err == nil {
			c.Close()
			t.Error("connect to a destroyed sandbox's socket succeeded")
		}
	}
}

// TestDeadSandboxRefusesConnects: the host keeps no copy of the listening socket, so when the
// sandbox's process has exited a connect fails instead of waiting in a backlog nobody serves.
func TestDeadSandboxRefusesConnects(t *testing.T) {
	rt := newRuntime(t, Config{PoolSize: -1})
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_7_guest_dead", Rootfs: "native",
		Command: []string{"/usr/bin/node", "-e", "0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.Background())
	select {
	case <-sb.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("no exit")
	}
	_, err = net.Dial("unix", sb.ProxySocket())
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("connect after the exit: %v, want ECONNREFUSED", err)
	}
}

// TestStartFallsBackToRuntimeBinary: without the FIFO (an unknown runtime, or a container that
// is no longer created) start runs `runc start`, which starts a created container and refuses
// one already started.
func TestStartFallsBackToRuntimeBinary(t *testing.T) {
	rt := newRuntime(t, Config{PoolSize: -1})
	if rt.kind == kindLaunch {
		t.Skip("the launcher has no runtime binary to fall back to")
	}
	rt.kind = "" // as for a runtime whose FIFO protocol is unknown
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_8_guest_bin", Rootfs: "native",
		Command: acceptOnFD3})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.Background())
	b := sb.(*box)
	if st := runcStatus(t, rt, b.id); st != "running" {
		t.Errorf("runc state: %s", st)
	}
	rt.kind = runtimeKind(rt.bin)
	err = rt.start(context.Background(), b)
	if err == nil || !strings.Contains(err.Error(), filepath.Base(rt.bin)+" start") {
		t.Fatalf("second start: %v, want the runtime's refusal", err)
	}
}

// TestStartOfDeadInit: a created container whose init died is not "started": the FIFO release
// notices through the pidfd instead of waiting for a writer forever.
func TestStartOfDeadInit(t *testing.T) {
	rt := newRuntime(t, Config{PoolSize: -1})
	b, err := rt.createContainer(context.Background(), PoolKey{Image: "teemate"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy(context.Background())
	if err := syscall.Kill(b.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-b.exited
	if rt.kind == kindLaunch {
		if err := rt.start(context.Background(), b); err == nil {
			t.Fatal("start of a dead init succeeded")
		}
		return
	}
	fifo := filepath.Join(rt.cfg.RuntimeRoot, b.id, execFifo)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := releaseRunc(ctx, fifo, b.pidfd); err == nil || !strings.Contains(err.Error(), "exited before it was started") {
		t.Fatalf("release of a dead init: %v", err)
	}
}

// procStatus reads the fields of /proc/<pid>/status named in keys.
func procStatus(t *testing.T, pid int, keys ...string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if slices.Contains(keys, k) {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// TestPrestartedPool: with the launcher, a pool whose key names a prestarted command runs that
// command (the image's shim) from the container's creation, already confined, and its use hands
// it the use's environment: the spec's gate and sandbox name reach it through the start
// configuration, written after it started.
func TestPrestartedPool(t *testing.T) {
	if testRuntime() != kindLaunch {
		t.Skip("only the launcher prestarts; runc and crun start a container at its use")
	}
	key := PoolKey{Image: "teemate", MemoryMB: 64, Prestart: "/bin/teemate-shim"}
	rt := newRuntime(t, Config{PoolSize: 1, Prewarm: []PoolKey{key}})
	key = rt.normalise(key)
	waitPool(t, rt, key, 1)
	// The pool's container, and maybe one the refill holds ready for it.
	rt.mu.Lock()
	var waiting []*box
	for _, b := range rt.live {
		if b.key == key {
			waiting = append(waiting, b)
		}
	}
	rt.mu.Unlock()
	if len(waiting) == 0 {
		t.Fatal("no pooled container of the prestarted key")
	}
	var pooled []string
	for _, b := range waiting {
		pooled = append(pooled, b.id)
		// The exec may still be under way right after the ready report.
		deadline := time.Now().Add(10 * time.Second)
		for procStatus(t, b.pid, "Name")["Name"] != "teemate-waiting" { // the shim's name until its use
			if time.Now().After(deadline) {
				t.Fatalf("the pooled container runs %v, not the prestarted shim", procStatus(t, b.pid, "Name"))
			}
			time.Sleep(5 * time.Millisecond)
		}
		if st := procStatus(t, b.pid, "NoNewPrivs", "Seccomp"); st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" {
			t.Fatalf("the prestarted shim waits unconfined: %v", st)
		}
	}

	dir, err := os.MkdirTemp("", "pre")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	proxyDir, gateDir := filepath.Join(dir, "p"), filepath.Join(dir, "g")
	for _, d := range []string{proxyDir, gateDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	gate, err := net.Listen("unix", filepath.Join(gateDir, "gate.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Close()
	if err := os.Chmod(filepath.Join(gateDir, "gate.sock"), 0o777); err != nil {
		t.Fatal(err)
	}
	hello := make(chan []byte, 1)
	go func() {
		c, err := gate.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		b := make([]byte, 4096)
		n, _ := c.Read(b)
		hello <- b[:n]
	}()
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_8_guest_pre", Rootfs: "teemate", MemoryMB: 64,
		Command: []string{"/bin/teemate-shim"}, Prestart: true,
		Env:    map[string]string{"TEEMATE_GATE": "/run/teemate/gate/gate.sock", "TEEMATE_SANDBOX": "wsk0_8_guest_pre"},
		Mounts: []sandbox.Mount{{HostPath: proxyDir, GuestPath: "/run/teemate/proxy"}, {HostPath: gateDir, GuestPath: "/run/teemate/gate"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.Background())
	if !slices.Contains(pooled, sb.ID()) {
		t.Fatalf("Create gave %s, not a prestarted container of %v", sb.ID(), pooled)
	}
	// The gate hangs up after the hello, so /init is answered with the gate's failure.
	sandboxtest.ProxyPoster(t, sb.ProxySocket())("/init", `{"value":{"code":"function main(){return {}}","main":"main"}}`)
	select {
	case b := <-hello:
		if !bytes.Contains(b, []byte("wsk0_8_guest_pre")) {
			t.Fatalf("the gate's hello %q does not name the use's sandbox", b)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the prestarted shim never dialled the use's gate")
	}
}
