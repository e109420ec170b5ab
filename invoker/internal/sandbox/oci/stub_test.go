package oci

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/sandbox/startconf"
)

var (
	stubOnce sync.Once
	stubBin  string
	stubErr  error
)

// buildStub compiles shim/start/teemate-start.c as deploy/images/build.sh does.
func buildStub(t testing.TB) string {
	t.Helper()
	stubOnce.Do(func() {
		if _, err := exec.LookPath("gcc"); err != nil {
			stubErr = err
			return
		}
		dir, err := os.MkdirTemp("", "stub")
		if err != nil {
			stubErr = err
			return
		}
		stubBin = filepath.Join(dir, "teemate-start")
		out, err := exec.Command("gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", stubBin, filepath.Join("..", "..", "..", "..", "shim", "start", "teemate-start.c")).CombinedOutput()
		if err != nil {
			stubErr = errors.New(string(out))
		}
	})
	if stubErr != nil {
		testtool.Missing(t, fmt.Sprintf("building the start stub: %v", stubErr))
	}
	return stubBin
}

// runStub runs the stub on config bytes and returns its stdout, stderr and exit code.
func runStub(t *testing.T, conf []byte, extra ...*os.File) (string, string, int) {
	t.Helper()
	stub := buildStub(t)
	path := filepath.Join(t.TempDir(), "start.conf")
	if err := os.WriteFile(path, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(stub, path)
	cmd.Env = []string{"LEAK=stub env"} // must not reach the command
	cmd.ExtraFiles = extra
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func encodeOK(t *testing.T, c startconf.Config) []byte {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStartStubExecs: the stub execs exactly the configured file with the configured argv,
// environment and working directory, and nothing of its own environment.
func TestStartStubExecs(t *testing.T) {
	dir := t.TempDir()
	out, errOut, code := runStub(t, encodeOK(t, startconf.Config{Path: "/bin/sh",
		Args: []string{"sh", "-c", `echo "$0|$1|$GREETING|$EMPTY|${LEAK-unset}|${TEEMATE_PROXY_FD-unset}|$(pwd)"`, "zero", "arg one"},
		Env:  []string{"GREETING=hello world", "EMPTY=", "PATH=/usr/bin:/bin"}, Cwd: dir}))
	want := "zero|arg one|hello world||unset|unset|" + dir + "\n"
	if code != 0 || out != want {
		t.Fatalf("exit %d stdout %q stderr %q, want %q", code, out, errOut, want)
	}
}

// TestStartStubProxyFD: a listening socket as descriptor 3 stays open across the exec and is
// announced as TEEMATE_PROXY_FD=3, replacing a stale value; any other descriptor 3 is not.
func TestStartStubProxyFD(t *testing.T) {
	conf := encodeOK(t, startconf.Config{Path: "/bin/sh", Args: []string{"sh", "-c", `echo "${TEEMATE_PROXY_FD-unset}"; readlink /proc/self/fd/3 || true`},
		Env: []string{"TEEMATE_PROXY_FD=9", "PATH=/usr/bin:/bin"}, Cwd: "/"})
	sock := filepath.Join(t.TempDir(), "p.sock")
	lf, err := listenProxy(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	out, errOut, code := runStub(t, conf, lf)
	if code != 0 || !strings.HasPrefix(out, "3\nsocket:[") {
		t.Fatalf("exit %d stdout %q stderr %q", code, out, errOut)
	}
	// Any other descriptor 3 is left alone.
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, errOut, code = runStub(t, conf, f)
	if code != 0 || !strings.HasPrefix(out, "9\n/dev/null") {
		t.Fatalf("non-socket fd 3: exit %d stdout %q stderr %q", code, out, errOut)
	}
}

// TestStartStubRefuses: malformed configurations, missing files and commands end with a clear
// message and a distinct exit code, before anything runs.
func TestStartStubRefuses(t *testing.T) {
	good := "teemate-start/1\x00/bin/true\x00/\x001\x00true\x001\x00A=1\x00"
	for _, c := range []struct {
		name, conf string
		code       int
		msg        string
	}{
		{"empty", "", 125, "not a teemate-start/1 file"},
		{"wrong tag", strings.Replace(good, "teemate-start/1", "teemate-start/2", 1), 125, "not a teemate-start/1 file"},
		{"json", `{"args":["/bin/true"]}`, 125, "not a teemate-start/1 file"},
		{"no final NUL", strings.TrimSuffix(good, "\x00"), 125, "fewer environment entries than counted"},
		{"trailing bytes", good + "X=1\x00", 125, "trailing bytes"},
		{"relative path", strings.Replace(good, "/bin/true", "true", 1), 125, "command path is not absolute"},
		{"relative cwd", strings.Replace(good, "\x00/\x00", "\x00tmp\x00", 1), 125, "working directory is not absolute"},
		{"zero args", "teemate-start/1\x00/bin/true\x00/\x000\x000\x00", 125, "bad argument count"},
		{"negative count", "teemate-start/1\x00/bin/true\x00/\x00-1\x00", 125, "bad argument count"},
		{"leading zero", "teemate-start/1\x00/bin/true\x00/\x0001\x00true\x000\x00", 125, "bad argument count"},
		{"huge count", "teemate-start/1\x00/bin/true\x00/\x0099999999999999999999\x00", 125, "bad argument count"},
		{"missing args", "teemate-start/1\x00/bin/true\x00/\x003\x00true\x00", 125, "fewer arguments than counted"},
		{"no env count", "teemate-start/1\x00/bin/true\x00/\x001\x00true\x00", 125, "no environment count"},
		{"bad env", strings.Replace(good, "A=1", "A1", 1), 125, "not NAME=value"},
		{"env without name", strings.Replace(good, "A=1", "=1", 1), 125, "not NAME=value"},
		{"no such cwd", strings.Replace(good, "\x00/\x00", "\x00/no/such/dir\x00", 1), 125, "working directory /no/such/dir: no such directory"},
		{"no such command", strings.Replace(good, "/bin/true", "/no/such/cmd", 1), 127, "exec /no/such/cmd: no such file"},
		{"not executable", strings.Replace(good, "/bin/true", "/etc/passwd", 1), 126, "exec /etc/passwd: cannot execute"},
		{"oversize", "teemate-start/1\x00" + strings.Repeat("a", startconf.MaxBytes), 125, "larger than 1 MiB"},
	} {
		out, errOut, code := runStub(t, []byte(c.conf))
		if code != c.code || out != "" || !strings.HasPrefix(errOut, "teemate-start: ") || !strings.Contains(errOut, c.msg) {
			t.Errorf("%s: exit %d stdout %q stderr %q, want exit %d and %q", c.name, code, out, errOut, c.code, c.msg)
		}
	}
	// An unreadable configuration (what sandboxtest.StartStubCommand relies on).
	stub := buildStub(t)
	out, err := exec.Command(stub, "/no/config").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 127 || !strings.Contains(string(out), "teemate-start: read the start configuration /no/config") {
		t.Errorf("missing file: %v %q", err, out)
	}
	if out, err := exec.Command(stub, "a", "b").CombinedOutput(); err == nil || !strings.Contains(string(out), "usage") {
		t.Errorf("two arguments: %v %q", err, out)
	}
}
