package confine_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/enclave/confine"
	"github.com/teemate/platform/invoker/internal/enclave/confine/confinetest"
)

const (
	securityBegin = "<!-- escapes:os:begin -->"
	securityEnd   = "<!-- escapes:os:end -->"
)

// attempt is one row of the table: what was tried, and what was observed.
type attempt struct{ what, observed string }

// capSysNiceOnly is a capability set holding CAP_SYS_NICE (23) and nothing else.
const capSysNiceOnly = "0000000000800000"

// want are the facts a confined owner must show in /proc/self/status (attack.c prints them).
var wantStatus = map[string]string{
	"status Uid":        "64000 64000 64000 64000",
	"status Gid":        "64000 64000 64000 64000",
	"status Groups":     "",
	"status CapInh":     "0000000000000000",
	"status CapPrm":     "0000000000000000",
	"status CapEff":     "0000000000000000",
	"status CapBnd":     "0000000000000000",
	"status CapAmb":     "0000000000000000",
	"status NoNewPrivs": "1",
	"status Seccomp":    "2",
}

// TestOwnerEscapesRefused runs an attack program (testdata/attack.c, native code as an isolate
// escape would have) and a Node script under lockdown.js (testdata/attack-lockdown.js) through the
// very confinement an owner gets, asserts every attempt on the host was refused, and checks the
// table of what it observed against SECURITY.md (TEEMATE_UPDATE_SECURITY=1 rewrites it).
func TestOwnerEscapesRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("confinement needs root")
	}
	testtool.Require(t, "gcc")
	repo, launcher, err := confinetest.Launcher()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The attack program lives in a directory of its own, mounted read-only like the runtime files.
	binDir := filepath.Join(dir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	attack := filepath.Join(binDir, "attack")
	if out, err := exec.Command("gcc", "-static", "-O1", "-Wall", "-Werror", "-I", filepath.Join(repo, "node-isolate-patch", "src"),
		"-o", attack, "testdata/attack.c").CombinedOutput(); err != nil {
		t.Fatalf("build attack.c: %v\n%s", err, out)
	}
	// A secret in a data dir outside the owner's state, readable by everyone on the host: only the
	// mount namespace keeps it out of reach.
	secret := filepath.Join(dir, "data", "controller.db")
	if err := os.MkdirAll(filepath.Dir(secret), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte("guest-key=123zO3xZ"), 0o644); err != nil {
		t.Fatal(err)
	}
	victim := exec.Command("sleep", "120")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = victim.Process.Kill(); _ = victim.Wait() })

	refused := listen(t, "127.0.0.1:0")
	allowed := listen(t, "127.0.0.1:0")
	onHostAddr := listen(t, "0.0.0.0:0")
	hostAddr := "192.0.2.254"
	if addrs, err := confine.HostAddrs(); err == nil {
		for _, a := range addrs {
			if ip := net.ParseIP(a); ip != nil && ip.To4() != nil {
				hostAddr = a
				break
			}
		}
	}
	_, pastaErr := exec.LookPath("pasta")
	// A second host address (as docker0's would be): pasta's NAT reaches it, and with it every host
	// service bound to all addresses, unless the owner's namespace makes it unreachable.
	const extraAddr = "198.51.100.7"
	if out, err := exec.Command("ip", "addr", "add", extraAddr+"/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("add %s to lo: %v %s", extraAddr, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "addr", "del", extraAddr+"/32", "dev", "lo").CombinedOutput(); err != nil {
			t.Errorf("remove %s from lo: %v %s", extraAddr, err, out)
		}
	})
	deny, err := confine.HostAddrs()
	if err != nil || !slices.Contains(deny, extraAddr) {
		t.Fatalf("host addresses %v %v", deny, err)
	}

	cfg := confine.Config{Launcher: launcher, ReadOnly: []string{binDir}, DenyAddrs: deny,
		EgressAllow: []confine.HostPort{{Host: "127.0.0.1", Port: port(allowed)}}}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	out, stderr := runConfined(t, cfg, state, pastaErr == nil, attack, secret, state, strconv.Itoa(os.Getpid()),
		strconv.Itoa(victim.Process.Pid), strconv.Itoa(port(refused)), hostAddr, extraAddr, strconv.Itoa(port(onHostAddr)), strconv.Itoa(port(allowed)))

	// The same confinement with node, the runtime's files and the lockdown.
	node, err := exec.LookPath("node")
	if err != nil {
		testtool.Missing(t, "node is not installed")
	}
	node, _ = filepath.EvalSymlinks(node)
	testdata, _ := filepath.Abs("testdata")
	ncfg := confine.Config{Launcher: launcher, Pasta: "-", ReadOnly: []string{filepath.Join(repo, "enclave-runtime"),
		filepath.Join(repo, "node-isolate-patch", "build"), testdata}}
	if err := ncfg.Check(); err != nil {
		t.Fatal(err)
	}
	nout, nerr := runConfined(t, ncfg, filepath.Join(dir, "nstate"), false, node, "--zero-fill-buffers",
		filepath.Join(testdata, "attack-lockdown.js"), filepath.Join(repo, "enclave-runtime", "trusted", "lockdown.js"),
		strconv.Itoa(victim.Process.Pid))

	rows := append(parse(t, out, stderr), parse(t, nout, nerr)...)
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.what] = true
		if w, ok := wantStatus[r.what]; ok {
			// Where the launcher cannot raise RLIMIT_NICE (no CAP_SYS_RESOURCE, as on this kind of
			// machine) the owner keeps CAP_SYS_NICE alone, narrowed by seccomp (rows below).
			if strings.HasPrefix(r.what, "status Cap") && w == "0000000000000000" && r.observed == capSysNiceOnly {
				continue
			}
			if r.observed != w {
				t.Errorf("%s = %q, want %q", r.what, r.observed, w)
			}
			continue
		}
		switch {
		case strings.HasPrefix(r.observed, "refused"), strings.HasPrefix(r.observed, "allowed (expected)"),
			r.what == "processes visible in /proc" && r.observed == "1 (itself only)",
			r.what == "node: lockdown.js apply()" && r.observed == "Seccomp 2, 2 filters (launcher's + lockdown's)",
			strings.HasPrefix(r.what, "node: Buffer.allocUnsafe") && strings.HasPrefix(r.observed, "yes"):
		default:
			t.Errorf("NOT REFUSED: %s: %s", r.what, r.observed)
		}
	}
	for _, must := range []string{"read /etc/shadow", "fork", "execve /bin/sh after lockdown", "node: child_process.execSync after lockdown",
		"connect to a listener on the host's 127.0.0.1", "kill a host pid (SIGKILL)", "status Seccomp"} {
		if !seen[must] {
			t.Errorf("attempt %q did not report", must)
		}
	}
	if pastaErr == nil && !seen["connect to an allow-listed host port via 127.0.0.1"] {
		t.Error("the allow-listed port was not tried")
	}
	// What the attempts were aimed at is unharmed.
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the host process the owner tried to kill is gone: %v", err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "guest-key=123zO3xZ" {
		t.Errorf("the secret changed: %q", b)
	}
	if t.Failed() {
		return
	}
	if pastaErr != nil {
		t.Logf("pasta is not installed: the table in SECURITY.md (made with pasta) is not compared")
		return
	}
	checkSecurityMD(t, repo, table(rows))
}

// runConfined runs prog confined as an owner would be (state dir, launcher, namespaces, pasta when
// egress), writes the go line once egress is up, and returns stdout and stderr. Everything it
// starts is gone when it returns or the test ends.
func runConfined(t *testing.T, cfg confine.Config, state string, egress bool, prog string, args ...string) (string, string) {
	t.Helper()
	jail, err := cfg.NewJail(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := jail.Release(); err != nil {
			t.Error(err)
		}
	})
	cmd := jail.Command(prog, args, []string{"PATH=/usr/bin:/bin"})
	cmd.SysProcAttr.Setpgid = true
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("the confined process did not die")
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if egress {
		if _, err := jail.StartEgress(ctx, cmd.Process.Pid, nil); err != nil && !errors.Is(err, confine.ErrNoPasta) {
			t.Fatalf("egress: %v (stderr %s)", err, stderr.String())
		}
	}
	_, _ = io.WriteString(stdin, "go\n")
	_ = stdin.Close()
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(prog), err, stdout.String(), stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("%s did not finish\nstdout:\n%s\nstderr:\n%s", filepath.Base(prog), stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

func parse(t *testing.T, out, stderr string) []attempt {
	t.Helper()
	var rows []attempt
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		what, observed, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			t.Errorf("unparsable line %q (stderr %s)", sc.Text(), stderr)
			continue
		}
		rows = append(rows, attempt{what, observed})
	}
	return rows
}

func table(rows []attempt) string {
	var b strings.Builder
	b.WriteString("Generated by `go test ./invoker/internal/enclave/confine/` (TestOwnerEscapesRefused, as root, with pasta):\n")
	b.WriteString("native code (`testdata/attack.c`) and a Node script under `lockdown.js` run through the very launcher,\n")
	b.WriteString("namespaces, uid, seccomp filters and pasta egress an owner gets.\n\n")
	b.WriteString("| attempt from inside the owner | observed |\n| --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s |\n", strings.ReplaceAll(r.what, "|", `\|`), strings.ReplaceAll(r.observed, "|", `\|`))
	}
	return b.String()
}

// checkSecurityMD compares SECURITY.md's generated section with got, or rewrites it when
// TEEMATE_UPDATE_SECURITY=1.
func checkSecurityMD(t *testing.T, repo, got string) {
	t.Helper()
	file := filepath.Join(repo, "SECURITY.md")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, securityBegin), strings.Index(s, securityEnd)
	if i < 0 || j < i {
		t.Fatalf("SECURITY.md lacks the markers %s ... %s", securityBegin, securityEnd)
	}
	have := s[i+len(securityBegin) : j]
	want := "\n" + got
	if have == want {
		return
	}
	if os.Getenv("TEEMATE_UPDATE_SECURITY") == "1" {
		if err := os.WriteFile(file, []byte(s[:i+len(securityBegin)]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the OS-level escape table in %s", file)
		return
	}
	t.Errorf("SECURITY.md's OS-level escape table differs from what was observed (rerun with TEEMATE_UPDATE_SECURITY=1):\nobserved:\n%s\nin the file:\n%s", want, have)
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi"))
			_ = c.Close()
		}
	}()
	return ln
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }
