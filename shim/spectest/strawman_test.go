package spectest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startStrawman starts a strawman sandbox: teemate-strawman boots runtime (argv) on a gate socket
// of its own, then becomes the shim. The sandbox gets its own process group, as the process backend
// gives it.
func startStrawman(t *testing.T, gateSock string, runtime []string, env ...string) *sandbox {
	t.Helper()
	s := launch(t, append([]string{strawmanBin, shimBin}, runtime...), gateSock, nil, env...)
	return s
}

func init() {
	// launch starts commands in the test's process group; a strawman sandbox needs its own so a
	// test can destroy it the way the process backend does.
	launchHook = func(cmd *exec.Cmd) {
		if len(cmd.Args) > 1 && cmd.Args[0] == strawmanBin {
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		}
	}
}

func answers(sock string) bool {
	_, err := exchange(sock, `{"type":"ping"}`)
	return err == nil
}

func gone(t *testing.T, sock string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for answers(sock) {
		if time.Now().After(deadline) {
			t.Fatal("the strawman's runtime outlived its sandbox")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStrawman(t *testing.T) {
	needNode(t)
	dir := shortDir(t)
	sock := filepath.Join(dir, "g.sock")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	s := startStrawman(t, sock, append([]string{node}, ownerArgs(sock, 1, dir)...))
	s.ready(t, s.sock)
	r := s.do(t, post("/init", initBody(helloCode)))
	if r.Status != 200 || r.Outcome != "" {
		t.Fatalf("init %+v (stderr %s)", r, s.stderr.String())
	}
	if b := string(r.Timings["bootMs"]); b == "" || b == "0" {
		t.Fatalf("no boot time in %v", r.Timings)
	}
	o := observe(s, []reply{r, s.do(t, post("/run", runBody(`{"name":"Ann"}`)))})
	wantStatuses("200/ 200/success")(t, o)
	bodyHas(1, "hi Ann")(t, o)
	textsAre("hello Ann\n"+sentinel, "to stderr <&>\n"+sentinel)(t, o)
	// The runtime lived only for this activation.
	gone(t, sock)
}

// A sandbox is destroyed by killing its process group (process backend) or its pid namespace:
// nobody stops the runtime, which must die with the group all the same.
func TestStrawmanDiesWithTheSandboxGroup(t *testing.T) {
	needNode(t)
	dir := shortDir(t)
	sock := filepath.Join(dir, "g.sock")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	s := startStrawman(t, sock, append([]string{node}, ownerArgs(sock, 1, dir)...))
	s.ready(t, s.sock)
	if r := s.do(t, post("/init", initBody(helloCode))); r.Status != 200 {
		t.Fatalf("init %+v (stderr %s)", r, s.stderr.String())
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !s.waitExit(5 * time.Second) {
		t.Fatal("the shim survived its group")
	}
	gone(t, sock)
}

// A runtime that does not come up: the shim still answers /init, with a platform (gate) failure
// that says why and shows the runtime's last output.
func TestStrawmanRuntimeFails(t *testing.T) {
	sock := filepath.Join(shortDir(t), "g.sock")
	for _, tc := range []struct {
		name    string
		runtime []string
		env     []string
		want    []string
		slow    bool
	}{
		{"exits", []string{"/bin/sh", "-c", "echo broken runtime; echo more >&2; exit 3"}, nil,
			[]string{"The enclave runtime did not start: /bin/sh exited with status 3 before its gate answered; its output: broken runtime\nmore"}, false},
		{"cannot be started", []string{"/nonexistent/runtime"}, nil,
			[]string{"/nonexistent/runtime exited with status 127", "exec /nonexistent/runtime: No such file or directory"}, false},
		{"never answers", []string{"/bin/sh", "-c", "echo waiting; exec sleep 60"}, []string{"TEEMATE_TIMEOUT_MS=100"},
			[]string{"gate " + sock + " did not answer within 5100 ms", "the runtime's output: waiting"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			s := startStrawman(t, sock, tc.runtime, tc.env...)
			s.ready(t, s.sock)
			o := observe(s, []reply{s.do(t, post("/init", initBody(helloCode)))})
			wantStatuses("502/gate")(t, o)
			for _, w := range tc.want {
				if !strings.Contains(jsonUnescape(o.Replies[0].Body), w) {
					t.Errorf("reply %s lacks %q", o.Replies[0].Body, w)
				}
			}
			if el := time.Since(start); tc.slow != (el > 5*time.Second) {
				t.Errorf("answered after %v", el)
			}
			if o.Stdout != sentinel || o.StderrLogs != sentinel {
				t.Errorf("output %q %q", o.Stdout, o.StderrLogs)
			}
		})
	}
}

func TestStrawmanUsage(t *testing.T) {
	for _, args := range [][]string{{}, {shimBin}} {
		cmd := exec.Command(strawmanBin, args...)
		cmd.Env = []string{"TEEMATE_GATE=/g"}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "usage: teemate-strawman SHIM RUNTIME") {
			t.Errorf("%v: %v %s", args, err, out)
		}
	}
	cmd := exec.Command(strawmanBin, shimBin, "/bin/true")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "TEEMATE_GATE must be set") {
		t.Errorf("no gate: %v %s", err, out)
	}
}
