package process

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/teemate/platform/invoker/internal/sandbox"
)

func newRuntime(t *testing.T, dir string) (*Runtime, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	rt, err := New(Config{StateDir: dir}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	return rt, logs
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 200; i++ {
		// A killed child of this test process stays a zombie until reaped; check its state too.
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d still alive", pid)
}

func TestCreateOutputEnvDestroy(t *testing.T) {
	rt, logs := newRuntime(t, t.TempDir())
	if rt.Name() != "process" || rt.Capabilities() != (sandbox.Capabilities{}) {
		t.Fatalf("name %s caps %+v", rt.Name(), rt.Capabilities())
	}
	if logs.FilterMessageSnippet("NO isolation").Len() != 1 {
		t.Fatal("the backend did not warn that it gives no isolation")
	}
	t.Setenv("NODE_EXTRA_CA_CERTS", "/leak")
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_1_guest_env",
		Command: []string{"/bin/sh", "-c", `echo "out:$A:${NODE_EXTRA_CA_CERTS:-none}"; echo err >&2; sleep 30 & wait`},
		Env:     map[string]string{"A": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(rt.cfg.StateDir, "wsk0_1_guest_env.pid")); err != nil {
		t.Fatalf("no pid file: %v", err)
	}
	// Each reader reports once the shell's line is there (so the destroy below cannot come before
	// the output, however loaded the machine), then reads to the end of its pipe.
	outC, errC := make(chan string, 1), make(chan string, 1)
	started := make(chan struct{}, 2)
	readAll := func(r io.Reader, c chan<- string) {
		br := bufio.NewReader(r)
		first, _ := br.ReadString('\n')
		started <- struct{}{}
		rest, _ := io.ReadAll(br)
		c <- first + string(rest)
	}
	go readAll(sb.Stdout(), outC)
	go readAll(sb.Stderr(), errC)
	<-started
	<-started
	pid := sb.(*box).pgid
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatalf("second destroy: %v", err)
	}
	select {
	case <-sb.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("Exited not closed")
	}
	// The sleep in the background was in the same group and died with it: the pipes reach EOF.
	if got := <-outC; got != "out:1:none\n" {
		t.Fatalf("stdout %q", got)
	}
	if got := <-errC; got != "err\n" {
		t.Fatalf("stderr %q", got)
	}
	waitGone(t, pid)
	if sb.OOMKilled() {
		t.Fatal("OOMKilled must be false")
	}
	if _, err := os.Stat(filepath.Join(rt.cfg.StateDir, "wsk0_1_guest_env.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid file left: %v", err)
	}
}

func TestExitedWhenProcessEnds(t *testing.T) {
	rt, _ := newRuntime(t, t.TempDir())
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "quick", Command: []string{"/bin/sh", "-c", "sleep 0.05"}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sb.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("Exited not closed after the process ended")
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCreateRejects(t *testing.T) {
	rt, _ := newRuntime(t, t.TempDir())
	for name, spec := range map[string]sandbox.Spec{
		"no command":   {Name: "a"},
		"bad name":     {Name: "../x", Command: []string{"/bin/true"}},
		"remap":        {Name: "b", Command: []string{"/bin/true"}, Mounts: []sandbox.Mount{{HostPath: "/tmp", GuestPath: "/run/x"}}},
		"missing file": {Name: "c", Command: []string{"/nonexistent/binary"}},
	} {
		if _, err := rt.Create(context.Background(), spec); !errors.Is(err, sandbox.ErrStartFailed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := New(Config{}, zap.NewNop()); !errors.Is(err, sandbox.ErrUnavailable) {
		t.Errorf("no state dir: %v", err)
	}
}

func TestReapKillsLeftovers(t *testing.T) {
	dir := t.TempDir()
	// An earlier invoker run: it started sandboxes and crashed without destroying them.
	old, _ := newRuntime(t, dir)
	sb, err := old.Create(context.Background(), sandbox.Spec{Name: "wsk0_7_guest_left", Command: []string{"/bin/sleep", "30"}})
	if err != nil {
		t.Fatal(err)
	}
	pid := sb.(*box).pgid
	other, err := old.Create(context.Background(), sandbox.Spec{Name: "wsk1_7_guest_other", Command: []string{"/bin/sleep", "30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Destroy(context.Background())
	// A stale pid file whose pid now belongs to an unrelated process must not get it killed.
	bystander := exec.Command("/bin/sleep", "30")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { bystander.Process.Kill(); bystander.Wait() }()
	stale := filepath.Join(dir, "wsk0_9_guest_stale.pid")
	if err := os.WriteFile(stale, []byte(strconv.Itoa(bystander.Process.Pid)+" 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "wsk0_8_guest_bad.pid"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}

	fresh, err := New(Config{StateDir: dir, IDPrefix: "wsk0_"}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	got, err := fresh.Reap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.Processes != 1 || got.Files != 3 {
		t.Errorf("reaped %+v, want 1 process and 3 records", got)
	}
	waitGone(t, pid)
	if !alive(other.(*box).pgid) {
		t.Fatal("a sandbox of another prefix was killed")
	}
	if !alive(bystander.Process.Pid) {
		t.Fatal("an unrelated process with a reused pid was killed")
	}
	for _, f := range []string{"wsk0_7_guest_left.pid", "wsk0_9_guest_stale.pid", "wsk0_8_guest_bad.pid"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed: %v", f, err)
		}
	}
	if err := old.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// The proxy socket is bound before the command starts: a connect succeeds before the command
// accepts anything, the command finds the listener at TEEMATE_PROXY_FD, and the socket dies with it.
func TestProxySocketPrebound(t *testing.T) {
	rt, _ := newRuntime(t, t.TempDir())
	sock := filepath.Join(t.TempDir(), "p.sock")
	// The command only proves it holds fd 3 and was told so, then sleeps without accepting.
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_1_guest_fd", ProxySocket: sock,
		Command: []string{"/bin/sh", "-c", `echo "fd=$TEEMATE_PROXY_FD"; [ -e /proc/self/fd/3 ] && echo has3; exec sleep 30`}})
	if err != nil {
		t.Fatal(err)
	}
	if sb.ProxySocket() != sock {
		t.Fatalf("ProxySocket %q, want %q", sb.ProxySocket(), sock)
	}
	out, _ := io.ReadAll(io.LimitReader(sb.Stdout(), int64(len("fd=3\nhas3\n"))))
	if string(out) != "fd=3\nhas3\n" {
		t.Fatalf("sandbox saw %q", out)
	}
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		t.Fatalf("connect before anyone accepts: %v", err)
	}
	c.Close()
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		t.Fatal("the proxy socket still accepts connections after the sandbox was destroyed")
	}
}

func TestProxySocketBindFailure(t *testing.T) {
	rt, _ := newRuntime(t, t.TempDir())
	_, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_1_guest_nodir",
		ProxySocket: filepath.Join(t.TempDir(), "missing", "p.sock"), Command: []string{"/bin/true"}})
	if !errors.Is(err, sandbox.ErrStartFailed) {
		t.Fatalf("err %v, want ErrStartFailed", err)
	}
}
