package oci

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/sandboxtest"
)

// TestNativeImageActionProxyFromPool runs the native image's action proxy in a pooled container:
// it accepts on the socket the backend bound at create time (TEEMATE_PROXY_FD), reached from the
// host at the sandbox's ProxySocket, not at the spec's.
func TestNativeImageActionProxyFromPool(t *testing.T) {
	key := PoolKey{Image: "native", MemoryMB: 128}
	rt := newRuntime(t, Config{PoolSize: 1, Prewarm: []PoolKey{key}})
	waitPool(t, rt, key, 1)
	dir := t.TempDir()
	sb, err := rt.Create(context.Background(), sandbox.Spec{Name: "wsk0_5_guest_native", Rootfs: "native", MemoryMB: 128,
		Env:         map[string]string{"TEEMATE_PROXY_SOCKET": "/run/teemate/proxy/proxy.sock"},
		Mounts:      []sandbox.Mount{{HostPath: dir, GuestPath: "/run/teemate/proxy"}},
		ProxySocket: filepath.Join(dir, "proxy.sock")})
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := sandboxtest.Drain(sb)
	if sb.ProxySocket() == filepath.Join(dir, "proxy.sock") {
		t.Fatalf("ProxySocket %s: the spec's path, not the pre-bound socket", sb.ProxySocket())
	}
	post := sandboxtest.ProxyPoster(t, sb.ProxySocket())
	if code, body := post("/run", `{"value":{}}`); code != 403 || !strings.Contains(body, "System not initialized.") {
		t.Fatalf("/run before /init: %d %s", code, body)
	}
	if code, body := post("/init", `{"value":{"main":"main","code":"function main(p){ console.log('hello ' + p.name); return {n: p.n * 2} }"}}`); code != 200 {
		t.Fatalf("/init: %d %s", code, body)
	}
	if code, body := post("/run", `{"value":{"name":"Bob","n":21}}`); code != 200 || body != `{"n":42}` {
		t.Fatalf("/run: %d %s", code, body)
	}
	if err := sb.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	const sentinel = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n"
	if got := stdout(); got != sentinel+"hello Bob\n"+sentinel {
		t.Errorf("stdout %q", got)
	}
	if got := stderr(); got != sentinel+sentinel {
		t.Errorf("stderr %q", got)
	}
}
