package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/sandboxtest"
)

// prefix returns a per-test container name prefix, so tests (and parallel packages) never touch
// each other's containers.
func prefix(t *testing.T) string {
	return fmt.Sprintf("wsktest%d_%d_", os.Getpid()%100000, time.Now().UnixNano()%1000000)
}

// names lists the containers (running or not) whose name starts with p.
func names(t *testing.T, rt *Runtime, p string) []string {
	t.Helper()
	list, err := rt.cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", p))})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range list {
		if hasNamePrefix(c.Names, p) {
			out = append(out, c.Names...)
		}
	}
	return out
}

func TestFreshContainerPerUse(t *testing.T) {
	rt := needEngine(t)
	p := prefix(t)
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		// The start stub's output must come back through the attach stream.
		sb, err := rt.Create(context.Background(), sandbox.Spec{Name: fmt.Sprintf("%s%d_guest_a", p, i), Rootfs: "teemate",
			Command: sandboxtest.StartStubCommand(), MemoryMB: 64})
		if err != nil {
			t.Fatal(err)
		}
		if seen[sb.ID()] {
			t.Fatalf("container %s reused", sb.ID())
		}
		seen[sb.ID()] = true
		sandboxtest.CheckStartStubRun(t, sb)
	}
	if left := names(t, rt, p); len(left) != 0 {
		t.Fatalf("containers left: %v", left)
	}
}

func TestMemoryLimitOOMKills(t *testing.T) {
	rt := needEngine(t)
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: prefix(t) + "bomb", Rootfs: "native", MemoryMB: 64,
		Command: sandboxtest.MemoryBombCommand()})
	if err != nil {
		t.Fatal(err)
	}
	sandboxtest.CheckOOMKilled(t, sb)
}

func TestNetworkOnlyLoopbackByDefault(t *testing.T) {
	rt := needEngine(t)
	ifaces := func(network bool) string {
		sb, err := rt.Create(context.Background(), sandbox.Spec{Name: prefix(t) + "net", Rootfs: "native", Network: network,
			Command: []string{"/usr/bin/node", "-e", "console.log(Object.keys(require('os').networkInterfaces()).sort().join(','))"}})
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Destroy(context.Background())
		stdout, _ := sandboxtest.Drain(sb)
		sandboxtest.WaitExit(t, sb, 30*time.Second)
		return strings.TrimSpace(stdout())
	}
	if got := ifaces(false); got != "lo" {
		t.Fatalf("interfaces without network: %q, want lo", got)
	}
	if got := ifaces(true); !strings.Contains(got, "eth0") {
		t.Fatalf("interfaces with network: %q, want eth0 among them", got)
	}
}

func TestReapRemovesLeftovers(t *testing.T) {
	rt := needEngine(t)
	p := prefix(t)
	rt.cfg.IDPrefix, rt.cfg.Owner = p, "owner-"+p
	ctx := context.Background()
	// Leftovers of an "earlier run": created directly, never started: unlabelled with the prefix
	// (an older invoker), labelled with this invoker's owner under any name. A container that
	// only contains the prefix, one of another owner with the prefix, and one live sandbox of
	// this runtime must all survive.
	keep := map[string]bool{}
	for _, c := range []struct {
		name, owner string
		survives    bool
	}{{p + "1_guest_a", "", false}, {"y" + p + "labelled", rt.cfg.Owner, false},
		{"x" + p + "keep", "", true}, {p + "2_other_owner", "another", true}} {
		cc := &container.Config{Image: "teemate/teemate:latest"}
		if c.owner != "" {
			cc.Labels = map[string]string{OwnerLabel: c.owner}
		}
		created, err := rt.cli.ContainerCreate(ctx, cc, &container.HostConfig{NetworkMode: "none"}, nil, nil, c.name)
		if err != nil {
			t.Fatal(err)
		}
		if c.survives {
			keep[created.ID] = true
			defer rt.cli.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true})
		}
	}
	live, err := rt.Create(ctx, sandbox.Spec{Name: p + "3_live", Rootfs: "native", Command: []string{"/usr/bin/node", "-e", "setTimeout(()=>{}, 60000)"}})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Destroy(ctx)
	got, err := rt.Reap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Containers != 2 {
		t.Errorf("reaped %+v, want 2 containers", got)
	}
	left := names(t, rt, p)
	if len(left) != 2 || !slices.Contains(left, "/"+p+"3_live") || !slices.Contains(left, "/"+p+"2_other_owner") {
		t.Fatalf("after the reap: %v, want the live sandbox and the other owner's", left)
	}
	for id := range keep {
		if _, err := rt.cli.ContainerInspect(ctx, id); err != nil {
			t.Fatalf("a container that is not a leftover of this invoker was removed: %v", err)
		}
	}
	// Destroy kills a running container.
	if err := live.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	sandboxtest.WaitExit(t, live, 10*time.Second)
	if got := names(t, rt, p); slices.Contains(got, "/"+p+"3_live") {
		t.Fatalf("left after destroy: %v", got)
	}
}

func TestConcurrentCreateDestroy(t *testing.T) {
	rt := needEngine(t)
	p := prefix(t)
	sandboxtest.CreateDestroyConcurrently(t, 64, false, func(ctx context.Context, i int) (sandbox.Sandbox, error) {
		return rt.Create(ctx, sandbox.Spec{Name: fmt.Sprintf("%s%d", p, i), Rootfs: "teemate", MemoryMB: 32,
			Command: sandboxtest.StartStubCommand()})
	})
	if left := names(t, rt, p); len(left) != 0 {
		t.Fatalf("left: %v", left)
	}
}

func TestStartFailureIsReportedNotHung(t *testing.T) {
	rt := needEngine(t)
	p := prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := rt.Create(ctx, sandbox.Spec{Name: p + "bad", Rootfs: "teemate", Command: []string{"/no/such/binary"}})
	if !errors.Is(err, sandbox.ErrStartFailed) {
		t.Fatalf("bad command: %v, want ErrStartFailed", err)
	}
	_, err = rt.Create(ctx, sandbox.Spec{Name: p + "noimage", Rootfs: "no_such_image_here"})
	if !errors.Is(err, sandbox.ErrStartFailed) || !strings.Contains(err.Error(), "make images") {
		t.Fatalf("missing image: %v", err)
	}
	_, err = rt.Create(ctx, sandbox.Spec{Name: "bad-name", Rootfs: "teemate"})
	if !errors.Is(err, sandbox.ErrStartFailed) {
		t.Fatalf("bad name: %v", err)
	}
	if left := names(t, rt, p); len(left) != 0 {
		t.Fatalf("failed creations left containers: %v", left)
	}
}

func TestUnavailableEngine(t *testing.T) {
	_, err := New(context.Background(), Config{Host: "unix:///nonexistent/docker.sock"}, nopLogger())
	if !errors.Is(err, sandbox.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
}

// TestNativeImageActionProxy runs the native image's own action proxy on a bind-mounted unix
// socket, as the native model does: /init, /run, and the sentinels on both streams.
func TestNativeImageActionProxy(t *testing.T) {
	stdout, stderr := proxyRoundTrip(t, "native")
	const sentinel = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n"
	if stdout != "log line\n"+sentinel {
		t.Errorf("stdout %q", stdout)
	}
	if stderr != "err line\n"+sentinel {
		t.Errorf("stderr %q", stderr)
	}
}

// TestStrawmanImageBootsItsOwnRuntime runs the strawman image: the shim starts a fresh enclave
// runtime (node, owner.js, the isolate addon) inside the container and runs the action there.
func TestStrawmanImageBootsItsOwnRuntime(t *testing.T) {
	stdout, _ := proxyRoundTrip(t, "strawman")
	if !strings.Contains(stdout, "log line") || !strings.Contains(stdout, "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX") {
		t.Errorf("stdout %q", stdout)
	}
}

// proxyRoundTrip starts image with its action proxy on a unix socket in a bind-mounted
// directory, sends /init and /run, destroys the container and returns its output.
func proxyRoundTrip(t *testing.T, image string) (string, string) {
	rt := needEngine(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "proxy.sock")
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: prefix(t) + image, Rootfs: image, MemoryMB: 256,
		Env:         map[string]string{"TEEMATE_PROXY_SOCKET": "/run/teemate/proxy/proxy.sock", "TEEMATE_SANDBOX": "s1"},
		Mounts:      []sandbox.Mount{{HostPath: dir, GuestPath: "/run/teemate/proxy"}},
		ProxySocket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Destroy(context.Background())
	stdout, stderr := sandboxtest.Drain(sb)
	post := sandboxtest.ProxyPoster(t, sock)
	code, body := post("/init", `{"value":{"name":"hello","main":"main","code":"function main(p){ console.log('log line'); console.error('err line'); return {greeting: 'Hello ' + p.name} }"}}`)
	if code != 200 || body != `{"OK":true}` {
		t.Fatalf("/init: %d %s", code, body)
	}
	deadline := strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)
	code, body = post("/run", `{"value":{"name":"Bob"},"action_name":"/guest/hello","activation_id":"a1","deadline":"`+deadline+`"}`)
	if code != 200 || body != `{"greeting":"Hello Bob"}` {
		t.Fatalf("/run: %d %s", code, body)
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	return stdout(), stderr()
}
