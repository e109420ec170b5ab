package docker

import (
	"reflect"
	"strings"
	"testing"

	"github.com/teemate/platform/invoker/internal/sandbox"
)

func TestImageRef(t *testing.T) {
	for _, c := range []struct{ prefix, image, want string }{
		{"teemate/", "teemate", "teemate/teemate:latest"},
		{"teemate/", "native", "teemate/native:latest"},
		{"teemate/", "busybox:1.36", "busybox:1.36"},
		{"teemate/", "registry.local/x/y", "registry.local/x/y"},
		{"", "native", "native:latest"},
	} {
		if got := ImageRef(c.prefix, c.image); got != c.want {
			t.Errorf("ImageRef(%q, %q) = %q, want %q", c.prefix, c.image, got, c.want)
		}
	}
}

func TestContainerConfigs(t *testing.T) {
	cfg := Config{}.withDefaults()
	cc, hc, err := containerConfigs(cfg, sandbox.Spec{
		Name: "wsk0_12_guest_hello", Rootfs: "teemate", Command: []string{"/bin/teemate-shim"},
		Env:      map[string]string{"B": "2", "A": "x=y"},
		MemoryMB: 256,
		Mounts: []sandbox.Mount{{HostPath: "/tmp/p/", GuestPath: "/run/teemate/proxy"},
			{HostPath: "/tmp/g", GuestPath: "/run/teemate/gate", ReadOnly: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cc.Image != "teemate/teemate:latest" || !reflect.DeepEqual([]string(cc.Cmd), []string{"/bin/teemate-shim"}) {
		t.Errorf("image %q cmd %v", cc.Image, cc.Cmd)
	}
	if !reflect.DeepEqual(cc.Env, []string{"A=x=y", "B=2"}) {
		t.Errorf("env %v", cc.Env)
	}
	if hc.Memory != 256<<20 || hc.MemorySwap != hc.Memory {
		t.Errorf("memory %d swap %d", hc.Memory, hc.MemorySwap)
	}
	if hc.PidsLimit == nil || *hc.PidsLimit != 1024 {
		t.Errorf("pids limit %v", hc.PidsLimit)
	}
	if hc.NetworkMode != "none" {
		t.Errorf("network %q", hc.NetworkMode)
	}
	if !reflect.DeepEqual([]string(hc.CapDrop), []string{"NET_RAW", "NET_ADMIN"}) {
		t.Errorf("cap drop %v", hc.CapDrop)
	}
	if !reflect.DeepEqual(hc.Binds, []string{"/tmp/p:/run/teemate/proxy", "/tmp/g:/run/teemate/gate:ro"}) {
		t.Errorf("binds %v", hc.Binds)
	}

	// Network, explicit pids limit, no memory limit, image command kept.
	cc, hc, err = containerConfigs(cfg, sandbox.Spec{Name: "a1", Rootfs: "native", Network: true, PidsLimit: 7})
	if err != nil {
		t.Fatal(err)
	}
	if hc.NetworkMode != "bridge" || *hc.PidsLimit != 7 || hc.Memory != 0 || cc.Cmd != nil {
		t.Errorf("network %q pids %d memory %d cmd %v", hc.NetworkMode, *hc.PidsLimit, hc.Memory, cc.Cmd)
	}
}

func TestContainerConfigsRejectsBadInput(t *testing.T) {
	cfg := Config{}.withDefaults()
	ok := sandbox.Spec{Name: "wsk0_1_guest_a", Rootfs: "teemate"}
	for name, c := range map[string]struct {
		mut  func(*sandbox.Spec)
		want string
	}{
		"empty name":     {func(s *sandbox.Spec) { s.Name = "" }, "sandbox name"},
		"dash in name":   {func(s *sandbox.Spec) { s.Name = "wsk0-1" }, "sandbox name"},
		"slash in name":  {func(s *sandbox.Spec) { s.Name = "a/b" }, "sandbox name"},
		"leading _":      {func(s *sandbox.Spec) { s.Name = "_a" }, "sandbox name"},
		"overlong name":  {func(s *sandbox.Spec) { s.Name = strings.Repeat("a", 201) }, "sandbox name"},
		"no image":       {func(s *sandbox.Spec) { s.Rootfs = "" }, "no image"},
		"negative mem":   {func(s *sandbox.Spec) { s.MemoryMB = -1 }, "negative"},
		"env key with =": {func(s *sandbox.Spec) { s.Env = map[string]string{"A=B": "1"} }, "environment"},
		"env NUL value":  {func(s *sandbox.Spec) { s.Env = map[string]string{"A": "\x00"} }, "environment"},
		"relative host":  {func(s *sandbox.Spec) { s.Mounts = []sandbox.Mount{{HostPath: "p", GuestPath: "/p"}} }, "absolute"},
		"colon in path":  {func(s *sandbox.Spec) { s.Mounts = []sandbox.Mount{{HostPath: "/a:b", GuestPath: "/p"}} }, "absolute"},
	} {
		s := ok
		c.mut(&s)
		if _, _, err := containerConfigs(cfg, s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
	}
}

func TestHasNamePrefix(t *testing.T) {
	for _, c := range []struct {
		names []string
		want  bool
	}{
		{[]string{"/wsk0_1_guest_a"}, true},
		{[]string{"/other_wsk0_1"}, false},
		{[]string{"/x", "/wsk0_2"}, true},
		{nil, false},
	} {
		if got := hasNamePrefix(c.names, "wsk0_"); got != c.want {
			t.Errorf("hasNamePrefix(%v) = %v", c.names, got)
		}
	}
}
