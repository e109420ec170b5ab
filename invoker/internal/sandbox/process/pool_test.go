package process

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/sandbox"
)

// buildStub compiles the start stub the pool runs (the oci backend's, from its C source).
func buildStub(t *testing.T) string {
	t.Helper()
	testtool.Require(t, "gcc")
	src, err := filepath.Abs(filepath.Join("..", "..", "..", "..", "shim", "start", "teemate-start.c"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "teemate-start")
	if b, err := exec.Command("gcc", "-static", "-O2", "-o", out, src).CombinedOutput(); err != nil {
		t.Fatalf("build the start stub: %v\n%s", err, b)
	}
	return out
}

func newPooled(t *testing.T, stub, dir string) *Runtime {
	t.Helper()
	rt, err := New(Config{StateDir: dir, StartStub: stub, PoolSize: 2, IDPrefix: "wsk9_"}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close(context.Background()) })
	return rt
}

// waitPooled waits until the pool holds n created sandboxes.
func waitPooled(t *testing.T, rt *Runtime, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(rt.pool.ready) < n {
		if time.Now().After(deadline) {
			t.Fatalf("pool holds %d sandboxes, want %d", len(rt.pool.ready), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPoolStartsTheCommandInAPrecreatedSandbox(t *testing.T) {
	stub := buildStub(t)
	rt := newPooled(t, stub, t.TempDir())
	waitPooled(t, rt, 2)
	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		waitPooled(t, rt, 1) // an empty pool falls back to starting a process, which binds the spec's socket
		spec := sandbox.Spec{Name: "wsk9_1_guest_pool", ProxySocket: "/nonexistent/p.sock",
			Command: []string{"sh", "-c", `echo "fd=$TEEMATE_PROXY_FD a=$A cwd=$(pwd)"; [ -S /proc/self/fd/3 ] || [ -e /proc/self/fd/3 ] && echo has3; exec sleep 30`},
			Env:     map[string]string{"A": "x y", "PATH": "/usr/bin:/bin"}}
		sb, err := rt.Create(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		if seen[sb.ID()] {
			t.Fatalf("sandbox %s handed out twice", sb.ID())
		}
		seen[sb.ID()] = true
		want := "fd=3 a=x y cwd=/\nhas3\n"
		got, _ := io.ReadAll(io.LimitReader(sb.Stdout(), int64(len(want))))
		if string(got) != want {
			t.Fatalf("sandbox printed %q, want %q", got, want)
		}
		// The socket was bound when the sandbox was created, in the pool's directory.
		if !strings.HasPrefix(sb.ProxySocket(), filepath.Join(rt.cfg.StateDir, "pool")) {
			t.Fatalf("proxy socket %s is not the pooled one", sb.ProxySocket())
		}
		c, err := net.DialTimeout("unix", sb.ProxySocket(), time.Second)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		c.Close()
		if err := sb.Destroy(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Dir(sb.ProxySocket())); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the pooled sandbox's directory outlived it: %v", err)
		}
	}
}

func TestPoolBadCommandAndLeftovers(t *testing.T) {
	stub := buildStub(t)
	dir := t.TempDir()
	rt := newPooled(t, stub, dir)
	waitPooled(t, rt, 2)
	// A command that is not there: the stub reports it on stderr and exits 127.
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk9_2_guest_bad", Command: []string{"/no/such/command"}})
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(sb.Stderr())
	if !strings.Contains(string(msg), "/no/such/command") {
		t.Fatalf("stub said %q", msg)
	}
	select {
	case <-sb.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("the sandbox did not exit")
	}
	sb.Destroy(context.Background())
	// A new runtime on the same state directory (a restarted invoker) removes the pooled stubs
	// of the one before, which never got to Close. That one's refiller is stopped first, as a
	// crash stops it: otherwise a stub it is starting meanwhile may or may not be counted.
	waitPooled(t, rt, 2)
	rt.pool.close()
	var pids []int
	rt.mu.Lock()
	for b := range rt.live {
		pids = append(pids, b.pgid)
	}
	rt.mu.Unlock()
	rt2, err := New(Config{StateDir: dir, IDPrefix: "wsk9_"}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	got, err := rt2.Reap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.Processes != len(pids) {
		t.Errorf("reaped %+v, want %d processes", got, len(pids))
	}
	for _, pid := range pids {
		waitGone(t, pid)
	}
}

func TestPoolMissingStub(t *testing.T) {
	_, err := New(Config{StateDir: t.TempDir(), StartStub: "/no/such/stub"}, zap.NewNop())
	if !errors.Is(err, sandbox.ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
}
