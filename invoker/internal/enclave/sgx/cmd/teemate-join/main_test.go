package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/teemate/platform/invoker/internal/enclave/sgx/attach"
	"github.com/teemate/platform/invoker/internal/enclave/sgx/teemate"
	"github.com/teemate/platform/invoker/internal/gate"
	"github.com/teemate/platform/invoker/internal/wire"
)

// The real binary, started the way a shim would start it: the gate on fd 3 of a unix socketpair,
// the ticket in the environment. There is no /dev/teemate here, so the join fails, and the shim must
// learn why from an error frame.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "teemate-join")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func start(t *testing.T, bin string, env []string, args ...string) (*exec.Cmd, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	shim, child := os.NewFile(uintptr(fds[0]), "shim"), os.NewFile(uintptr(fds[1]), "child")
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{child} // fd 3
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := child.Close(); err != nil { // the child holds its own copy
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("kill: %v", err)
			}
			_ = cmd.Wait() // reaping only; the test already failed or passed on its own checks
		}
		_ = shim.Close() // may be closed by the test already
	})
	return cmd, shim
}

func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", err)
	return -1
}

func TestJoinBinary(t *testing.T) {
	bin := build(t)
	tk := attach.Ticket{ShareID: 9, Token: teemate.Token{7}}
	env := append([]string{"PATH=" + os.Getenv("PATH")}, tk.Env()...)

	t.Run("no ticket", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "TEEMATE_SHARE_ID is not set") {
			t.Fatalf("exit %v, output %q", err, out)
		}
	})

	t.Run("gate fd not open", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = append(append([]string(nil), env...), attach.EnvGateFD+"=9")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "descriptor 9") {
			t.Fatalf("exit %v, output %q", err, out)
		}
	})

	t.Run("shim leaves before a frame", func(t *testing.T) {
		cmd, shim := start(t, bin, env, "-device", filepath.Join(t.TempDir(), "no-teemate"))
		if err := shim.Close(); err != nil {
			t.Fatal(err)
		}
		if code := exitCode(t, cmd); code != 0 {
			t.Fatalf("exit %d, want 0 (no frame, no join)", code)
		}
	})

	t.Run("no device: the shim gets the reason", func(t *testing.T) {
		dev := filepath.Join(t.TempDir(), "no-teemate")
		cmd, shim := start(t, bin, env, "-device", dev)
		if err := gate.WriteFrame(shim, map[string]any{"type": "hello", "version": 1}, wire.MaxOtherFrame); err != nil {
			t.Fatal(err)
		}
		body, err := gate.ReadFrame(shim, wire.MaxReplyFrame)
		if err != nil {
			t.Fatal(err)
		}
		var e gate.Error
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatal(err)
		}
		if e.Class != gate.ClassInternal || !strings.Contains(e.Message, dev) || !strings.Contains(e.Message, "no such file") {
			t.Fatalf("reply %s", body)
		}
		if code := exitCode(t, cmd); code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
	})
}
