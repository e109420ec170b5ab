package sgx

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"go.uber.org/zap"
)

// gramineValues are what gramine-manifest (step 2, not installed here) puts in for the Jinja
// expressions the template leaves; the test does that substitution itself to parse the TOML.
var gramineValues = map[string]string{
	"{{ gramine.libos }}":        "/usr/lib/x86_64-linux-gnu/gramine/libsysdb.so",
	"{{ gramine.runtimedir() }}": "/usr/lib/x86_64-linux-gnu/gramine/runtime/glibc",
	"{{ arch_libdir }}":          "/lib/x86_64-linux-gnu",
}

// The manifest the backend itself generates (ensureManifest, the file it hands to
// gramine-manifest) states the owner's least privilege in Gramine's terms: no subprocesses, no host
// files beyond the trusted ones and the owner's own directory, strict file checks, a tmpfs scratch,
// no host argv or environment.
func TestGeneratedManifestIsLeastPrivilege(t *testing.T) {
	env := newTestEnv(t, "ok")
	b, err := New(env.cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	base, err := b.ensureManifest(context.Background(), "nodejs:20", 8)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(base + ".manifest.template")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for k, v := range gramineValues {
		text = strings.ReplaceAll(text, k, v)
	}
	if strings.Contains(text, "{{") || strings.Contains(text, "[[") {
		t.Fatalf("unexpanded expressions left:\n%s", text)
	}
	var m struct {
		Loader struct {
			Argv                []string          `toml:"argv"`
			Env                 map[string]string `toml:"env"`
			InsecureCmdlineArgv *bool             `toml:"insecure__use_cmdline_argv"`
			InsecureHostEnv     *bool             `toml:"insecure__use_host_env"`
			ArgvSrcFile         *string           `toml:"argv_src_file"`
			EnvSrcFile          *string           `toml:"env_src_file"`
		} `toml:"loader"`
		FS struct {
			Root   map[string]any   `toml:"root"`
			Mounts []map[string]any `toml:"mounts"`
		} `toml:"fs"`
		Sys struct {
			DisallowSubprocesses bool `toml:"disallow_subprocesses"`
		} `toml:"sys"`
		SGX struct {
			Debug           bool     `toml:"debug"`
			FileCheckPolicy string   `toml:"file_check_policy"`
			TrustedFiles    []string `toml:"trusted_files"`
			AllowedFiles    []string `toml:"allowed_files"`
			RPCThreads      int      `toml:"insecure__rpc_thread_num"`
		} `toml:"sgx"`
	}
	if err := toml.Unmarshal([]byte(text), &m); err != nil {
		t.Fatalf("the generated manifest is not TOML: %v\n%s", err, text)
	}
	if !m.Sys.DisallowSubprocesses {
		t.Error("sys.disallow_subprocesses is not true")
	}
	if m.SGX.FileCheckPolicy != "strict" {
		t.Errorf("sgx.file_check_policy = %q, want strict", m.SGX.FileCheckPolicy)
	}
	if m.SGX.Debug || m.SGX.RPCThreads != 0 {
		t.Errorf("debug %v, exitless rpc threads %d", m.SGX.Debug, m.SGX.RPCThreads)
	}
	if m.Loader.InsecureCmdlineArgv != nil || m.Loader.InsecureHostEnv != nil || m.Loader.ArgvSrcFile != nil || m.Loader.EnvSrcFile != nil {
		t.Error("argv or environment may come from the host")
	}
	if m.FS.Root != nil {
		t.Errorf("fs.root %v: the enclave's root must stay the owner's own directory (Gramine's default)", m.FS.Root)
	}
	for _, kv := range [][2]string{{"--scratch-dir", "/tmp"}, {"--lockdown", "none"}, {"--mode", "sgx"}} {
		i := slices.Index(m.Loader.Argv, kv[0])
		if i < 0 || i+1 >= len(m.Loader.Argv) || m.Loader.Argv[i+1] != kv[1] {
			t.Errorf("loader.argv %q lacks %s %s", m.Loader.Argv, kv[0], kv[1])
		}
	}

	// Allowed (unprotected) files: only the owner's gate socket and work dir, relative to the
	// owner's own directory; nothing absolute, so none of the host's data dirs.
	for _, f := range m.SGX.AllowedFiles {
		if f != "file:gate.sock" && f != "file:work/" {
			t.Errorf("sgx.allowed_files has %q", f)
		}
	}
	trusted := func(uri string) bool {
		for _, tf := range m.SGX.TrustedFiles {
			if uri == tf || uri+"/" == tf || (strings.HasSuffix(tf, "/") && strings.HasPrefix(uri+"/", tf)) {
				return true
			}
		}
		return false
	}
	// Mounts: a tmpfs at /tmp; every host mount is trusted files, or the owner's own directory.
	tmpfs := false
	for _, mt := range m.FS.Mounts {
		typ, _ := mt["type"].(string)
		path, _ := mt["path"].(string)
		uri, _ := mt["uri"].(string)
		switch {
		case typ == "tmpfs":
			tmpfs = tmpfs || path == "/tmp"
		case typ == "encrypted", typ == "untrusted_shm":
			t.Errorf("mount %v: not expected in the owner", mt)
		case uri == "file:.":
			if path != "/run/teemate" {
				t.Errorf("the owner's own directory is mounted at %q", path)
			}
		case trusted(uri), uri == "file:"+gramineValues["{{ arch_libdir }}"], uri == "file:/usr"+gramineValues["{{ arch_libdir }}"]:
			// A library directory: only its trusted files are readable (strict policy).
		default:
			t.Errorf("mount %v exposes host files that are not trusted", mt)
		}
		for _, bad := range []string{"/etc", "/root", "/home", "/var", "/srv", ".state", "/proc", "/sys", "/dev"} {
			if strings.HasPrefix(strings.TrimPrefix(uri, "file:"), bad) || uri == "file:/" {
				t.Errorf("mount %v reaches the host's %s", mt, bad)
			}
		}
	}
	if !tmpfs {
		t.Error("no tmpfs mount at /tmp (the scratch)")
	}
	for _, f := range append(m.SGX.TrustedFiles, m.SGX.AllowedFiles...) {
		p := strings.TrimPrefix(f, "file:")
		for _, bad := range []string{"/etc", "/root", "/home", "/var", ".state", "/proc", "/sys"} {
			if strings.HasPrefix(p, bad) || strings.Contains(p, "/"+strings.TrimPrefix(bad, "/")+"/") && bad == ".state" {
				t.Errorf("file %q reaches the host's %s", f, bad)
			}
		}
	}
	if filepath.Base(base) != "nodejs-20-s8" {
		t.Errorf("manifest base %s", base)
	}
}
