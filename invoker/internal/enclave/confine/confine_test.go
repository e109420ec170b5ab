package confine_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/internal/enclave/confine"
	"github.com/teemate/platform/invoker/internal/enclave/confine/confinetest"
)

func TestParseEgressAllow(t *testing.T) {
	got, err := confine.ParseEgressAllow(" 127.0.0.1:3233, localhost:9000,[::1]:80,example.com:443,")
	if err != nil {
		t.Fatal(err)
	}
	want := []confine.HostPort{{"127.0.0.1", 3233}, {"localhost", 9000}, {"::1", 80}, {"example.com", 443}}
	if !slices.Equal(got, want) {
		t.Fatalf("%v", got)
	}
	var loop []bool
	for _, h := range got {
		loop = append(loop, h.Loopback())
	}
	if !slices.Equal(loop, []bool{true, true, true, false}) {
		t.Fatalf("loopback %v", loop)
	}
	for _, bad := range []string{"nohost", ":80", "h:0", "h:70000", "h:x"} {
		if _, err := confine.ParseEgressAllow(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if got, err := confine.ParseEgressAllow(""); err != nil || got != nil {
		t.Fatalf("empty: %v %v", got, err)
	}
}

func TestURLEndpoint(t *testing.T) {
	for in, want := range map[string]confine.HostPort{
		"http://127.0.0.1:3233": {"127.0.0.1", 3233}, "https://api.example.com": {"api.example.com", 443}, "http://[::1]/x": {"::1", 80},
	} {
		if got, err := confine.URLEndpoint(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	if _, err := confine.URLEndpoint("ftp://"); err == nil {
		t.Error("no host accepted")
	}
}

// pasta never maps the gateway to the host, forwards nothing inbound, and forwards to the host's
// loopback only the allow-listed loopback ports.
func TestPastaArgs(t *testing.T) {
	a := strings.Join(confine.PastaArgs("/x/ns", []confine.HostPort{{"127.0.0.1", 3233}, {"example.com", 443}, {"localhost", 3233}, {"::1", 9}}), " ")
	for _, want := range []string{"--no-map-gw", "--tcp-ports none", "--udp-ports none", "--udp-ns none", "--tcp-ns 3233,9", "--netns /x/ns", "--foreground", "--config-net"} {
		if !strings.Contains(a, want) {
			t.Errorf("pasta args %q lack %q", a, want)
		}
	}
	if a := strings.Join(confine.PastaArgs("/n", nil), " "); !strings.Contains(a, "--tcp-ns none") {
		t.Errorf("no allow-list must forward nothing (pasta's default is auto): %q", a)
	}
}

func TestCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		c := confine.Config{Launcher: "/bin/true"}
		if err := c.Check(); err == nil || !strings.Contains(err.Error(), "needs root") {
			t.Fatalf("not root: %v", err)
		}
		return
	}
	for _, c := range []confine.Config{{}, {Launcher: "/nonexistent"}, {Launcher: "/etc/passwd"}, {Launcher: "/bin/true", ReadOnly: []string{"rel"}}} {
		if err := c.Check(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	c := confine.Config{Launcher: "/bin/true"}
	if err := c.Check(); err != nil || c.UID != confine.DefaultUID || c.GID != confine.DefaultGID || c.TmpSizeMB != confine.DefaultTmpSizeMB {
		t.Fatalf("%+v %v", c, err)
	}
}

// A launcher that cannot do a step says which one, and runs nothing.
func TestLauncherNamesTheFailedStep(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	_, launcher, err := confinetest.Launcher()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Without the namespaces (started as a plain child).
	out, err := exec.Command(launcher, "--root", filepath.Join(dir, "r"), "--uid", "64000", "--gid", "64000", "--", "/bin/true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "teemate-confine: pid namespace: not pid 1") {
		t.Fatalf("%v: %s", err, out)
	}
	// A writable path that does not exist, inside the namespaces.
	c := confine.Config{Launcher: launcher, Pasta: "-"}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	j, err := c.NewJail(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Release()
	cmd := j.Command("/nonexistent/prog", nil, nil)
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "teemate-confine: exec: /nonexistent/prog: No such file or directory") {
		t.Fatalf("%v: %s", err, out)
	}
	if st, err := os.Stat(j.StateDir()); err != nil || st.Sys() == nil {
		t.Fatal(err)
	}
}

// StartEgress never attaches pasta to the invoker's own network namespace (a reused pid could
// lead there).
func TestEgressRefusesHostNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	testtool.Require(t, "pasta")
	c := confine.Config{Launcher: "/bin/true"}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	j, err := c.NewJail(filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Release()
	if _, err := j.StartEgress(context.Background(), os.Getpid(), nil); err == nil || !strings.Contains(err.Error(), "not in a network namespace of its own") {
		t.Fatalf("pasta attached to the host's namespace: %v", err)
	}
}
