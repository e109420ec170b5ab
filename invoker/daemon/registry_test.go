package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/teemate/platform/invoker/internal/sandbox/oci"
)

// fakeHost describes a machine for the probes: which paths exist and which programs are on PATH.
func fakeHost(root bool, present ...string) Host {
	return Host{
		Repo:   "/repo",
		Exists: func(p string) bool { return slices.Contains(present, p) },
		OnPath: func(n string) bool { return slices.Contains(present, "PATH:"+n) },
		Root:   root,
	}
}

var (
	images   = filepath.Join("/repo", ".state", "images", "teemate", "image.json")
	launcher = filepath.Join("/repo", "bin", "teemate-launch")
)

// withRuntime is h with the oci runtime named as --oci-runtime names it.
func withRuntime(h Host, rt string) Host {
	h.OCIRuntime = rt
	return h
}

func TestChooseBackends(t *testing.T) {
	bare := fakeHost(false, "PATH:node")
	rich := fakeHost(true, "/var/run/docker.sock", "PATH:runc", launcher, "/dev/sgx_enclave", "/dev/teemate", "PATH:gramine-sgx", "PATH:node", images)
	noCgroupV1 := fakeHost(true, "PATH:runc", launcher, "PATH:node", images)
	noCgroupV1.LaunchBlocked = func() string { return "no cgroup v1 memory controller" }
	hybrid := fakeHost(true, "PATH:crun", "PATH:node", images)
	hybrid.CrunBlocked = func() string { return "crun refuses this hybrid cgroup host" }
	tests := []struct {
		name                    string
		sandbox, enclave, model string
		host                    Host
		want                    Choice
		wantErr                 error
		wantMsg                 string
	}{
		{name: "auto on a bare machine", sandbox: "auto", enclave: "auto", host: bare, want: Choice{"process", "direct", "teemate"}},
		{name: "empty means auto", host: bare, want: Choice{"process", "direct", "teemate"}},
		{name: "oci preferred: same isolation, pooled starts", host: rich, want: Choice{"oci", "sgx", "teemate"}},
		{name: "docker when the launcher is not built", host: fakeHost(true, "/var/run/docker.sock", "PATH:runc", "PATH:node", images), want: Choice{"docker", "direct", "teemate"}},
		{name: "the launcher needs no runc or crun", host: fakeHost(true, launcher, "PATH:node", images), want: Choice{"oci", "direct", "teemate"}},
		{name: "runc when chosen", host: withRuntime(fakeHost(true, "PATH:runc", "PATH:node", images), "runc"), want: Choice{"oci", "direct", "teemate"}},
		{name: "chosen runc needs runc", host: withRuntime(fakeHost(true, launcher, "/var/run/docker.sock", "PATH:node", images), "runc"), want: Choice{"docker", "direct", "teemate"}},
		{name: "crun will do", host: withRuntime(fakeHost(true, "PATH:crun", "PATH:node", images), "crun"), want: Choice{"oci", "direct", "teemate"}},
		{name: "oci needs root", host: fakeHost(false, "PATH:runc", launcher, "PATH:node", images), want: Choice{"process", "direct", "teemate"}},
		{name: "containers need the images", host: fakeHost(true, "/var/run/docker.sock", "PATH:runc", "PATH:node"), want: Choice{"process", "direct", "teemate"}},
		{name: "no enclave without node", host: fakeHost(false), wantErr: ErrNotAvailable,
			wantMsg: "no enclave backend (sgx: missing /dev/sgx_enclave, /dev/teemate, gramine-sgx on PATH; direct: node is not on PATH"},
		{name: "none needs nothing", sandbox: "none", enclave: "none", host: fakeHost(false), want: Choice{"none", "none", "teemate"}},
		{name: "explicit process on a rich machine", sandbox: "process", host: rich, want: Choice{"process", "sgx", "teemate"}},
		{name: "explicit none", sandbox: "none", enclave: "none", model: "native", host: bare, want: Choice{"none", "none", "native"}},
		{name: "explicit docker not on the machine", sandbox: "docker", host: bare, wantErr: ErrNotAvailable, wantMsg: "/var/run/docker.sock"},
		{name: "explicit docker without images", sandbox: "docker", host: fakeHost(true, "/var/run/docker.sock"), wantErr: ErrNotAvailable, wantMsg: "make images"},
		{name: "explicit oci as a user", sandbox: "oci", host: fakeHost(false, launcher, images), wantErr: ErrNotAvailable, wantMsg: "root"},
		{name: "explicit oci, launcher not built", sandbox: "oci", host: fakeHost(true, "PATH:runc", images), wantErr: ErrNotAvailable,
			wantMsg: "oci runtime teemate-launch: missing /repo/bin/teemate-launch (make build; or --oci-runtime runc)"},
		{name: "explicit oci, launcher without cgroup v1", sandbox: "oci", host: noCgroupV1, wantErr: ErrNotAvailable, wantMsg: "no cgroup v1 memory controller"},
		{name: "explicit oci, runc missing", sandbox: "oci", host: withRuntime(fakeHost(true, launcher, images), "runc"), wantErr: ErrNotAvailable,
			wantMsg: "oci runtime runc: missing runc on PATH (apt-get install runc)"},
		{name: "explicit oci, crun on a hybrid host without its wrapper", sandbox: "oci", host: withRuntime(hybrid, "crun"), wantErr: ErrNotAvailable,
			wantMsg: "missing /repo/bin/teemate-crun (make build): crun refuses this hybrid cgroup host"},
		{name: "explicit oci, a runtime path that is not there", sandbox: "oci", host: withRuntime(fakeHost(true, images), "/opt/rt/runc"), wantErr: ErrNotAvailable,
			wantMsg: "missing /opt/rt/runc"},
		{name: "explicit sgx without hardware", enclave: "sgx", host: fakeHost(false, "/dev/teemate"), wantErr: ErrNotAvailable,
			wantMsg: "missing /dev/sgx_enclave, gramine-sgx on PATH"},
		{name: "unknown sandbox", sandbox: "kvm", host: rich, wantErr: ErrUnknownBackend, wantMsg: `sandbox "kvm" (known: oci, docker, process, none)`},
		{name: "unknown enclave", enclave: "tdx", host: rich, wantErr: ErrUnknownBackend, wantMsg: "known: sgx, direct, none"},
		{name: "unknown model", model: "fast", host: rich, wantErr: ErrUnknownBackend, wantMsg: "known: teemate, native, strawman"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChooseBackends(tt.sandbox, tt.enclave, tt.model, tt.host)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ChooseBackends: %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Every name the invoker's flags accept is registered once, and an unknown one is refused before
// anything is built, naming the known ones.
func TestRegistry_NamesAndUnknown(t *testing.T) {
	for what, names := range map[string][]string{"sandbox": SandboxNames(), "enclave": EnclaveNames(), "model": ModelNames()} {
		seen := map[string]bool{}
		for _, n := range names {
			if seen[n] {
				t.Errorf("%s %q registered twice", what, n)
			}
			seen[n] = true
		}
	}
	for _, b := range []Backends{{Sandbox: "kvm"}, {Enclave: "tdx"}, {Model: "fast"}, {Sandbox: "none", Model: "fast"}} {
		err := b.validate()
		if !errors.Is(err, ErrUnknownBackend) || !strings.Contains(err.Error(), "known: ") {
			t.Errorf("%+v: %v", b, err)
		}
		if _, _, err := buildExecutor(zapTest(t), 0, b); !errors.Is(err, ErrUnknownBackend) && b.Sandbox != "none" {
			t.Errorf("buildExecutor %+v: %v", b, err)
		}
	}
	if err := (Backends{}).validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, mode := range []string{"none", "tenant"} {
		if err := (Backends{IsolateReuse: mode}).validate(); err != nil {
			t.Errorf("isolate reuse %q: %v", mode, err)
		}
	}
	if err := (Backends{IsolateReuse: "always"}).validate(); err == nil || !strings.Contains(err.Error(), "want none or tenant") {
		t.Errorf("isolate reuse \"always\": %v", err)
	}
	for _, mb := range []int{0, 16, 4096} {
		if err := (Backends{PagePoolMB: &mb}).validate(); err != nil {
			t.Errorf("page pool %d MiB: %v", mb, err)
		}
	}
	for _, mb := range []int{-2, 4097} {
		if err := (Backends{PagePoolMB: &mb}).validate(); err == nil || !strings.Contains(err.Error(), "want 0 (off) to 4096") {
			t.Errorf("page pool %d MiB: %v", mb, err)
		}
	}
}

func TestOCIRuntime(t *testing.T) {
	repo, empty := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(repo, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"teemate-launch", "teemate-crun"} {
		if err := os.WriteFile(filepath.Join(repo, "bin", b), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	crun := "crun"
	if oci.CrunBlocked() != "" {
		crun = filepath.Join(repo, "bin", "teemate-crun")
	}
	for _, c := range []struct {
		repo, name, want string
		wantErr          error
	}{
		{repo: repo, name: "", want: filepath.Join(repo, "bin", "teemate-launch")},
		{repo: empty, name: "", wantErr: ErrNotAvailable},
		{repo: repo, name: "runc", want: "runc"},
		{repo: repo, name: "crun", want: crun},
		{repo: repo, name: "teemate-launch", want: filepath.Join(repo, "bin", "teemate-launch")},
		{repo: empty, name: "teemate-launch", wantErr: ErrNotAvailable},
		{repo: repo, name: "/opt/runtime/bin/runc", want: "/opt/runtime/bin/runc"},
		{repo: repo, name: "gvisor", wantErr: ErrUnknownBackend},
	} {
		got, err := ociRuntime(c.repo, c.name)
		if c.wantErr != nil {
			if !errors.Is(err, c.wantErr) {
				t.Errorf("%q in %s: %q %v, want %v", c.name, c.repo, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %q %v, want %q", c.name, got, err, c.want)
		}
	}
}
