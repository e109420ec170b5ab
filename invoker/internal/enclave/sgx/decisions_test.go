package sgx

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zapcore"

	"github.com/teemate/platform/invoker/internal/enclave"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestPreflight(t *testing.T) {
	base := Config{SigningKey: "/k.pem", OwnerJS: "/r/trusted/owner.js", Addon: "/r/addon.node", SealCrypto: "/r/sealcrypto.node", Template: "/r/t.template"}
	base.defaults()
	cpu := func(flags string) func(string) ([]byte, error) {
		return func(string) ([]byte, error) {
			return []byte("processor\t: 0\nflags\t\t: " + flags + "\n\nprocessor\t: 1\nflags\t\t: none\n"), nil
		}
	}
	missing := func(paths ...string) func(string) bool {
		return func(p string) bool {
			for _, m := range paths {
				if p == m {
					return false
				}
			}
			return !strings.Contains(p, "fake")
		}
	}
	look := func(absent string) func(string) (string, error) {
		return func(f string) (string, error) {
			if f == absent {
				return "", errors.New("executable file not found in $PATH")
			}
			return "/usr/bin/" + f, nil
		}
	}
	cases := []struct {
		name   string
		p      Probes
		want   []string // substrings of the error; none: available
		absent string
	}{
		{name: "ready", p: Probes{Exists: missing(), ReadFile: cpu("fpu sgx sgx_lc"), LookPath: look("")}},
		{name: "no sgx device", p: Probes{Exists: missing("/dev/sgx_enclave"), ReadFile: cpu("sgx sgx_lc"), LookPath: look("")},
			want: []string{"sgx device: /dev/sgx_enclave is missing"}},
		{name: "no sgx flag", p: Probes{Exists: missing(), ReadFile: cpu("fpu vmx"), LookPath: look("")},
			want: []string{"no 'sgx' flag"}},
		{name: "no launch control", p: Probes{Exists: missing(), ReadFile: cpu("sgx"), LookPath: look("")},
			want: []string{"no 'sgx_lc' flag"}},
		{name: "cpuinfo unreadable", p: Probes{Exists: missing(), ReadFile: func(string) ([]byte, error) { return nil, os.ErrPermission }, LookPath: look("")},
			want: []string{"cannot read /proc/cpuinfo"}},
		{name: "no module", p: Probes{Exists: missing("/dev/teemate"), ReadFile: cpu("sgx sgx_lc"), LookPath: look("")},
			want: []string{"/dev/teemate is missing: load kmod/teemate.ko"}},
		{name: "fake enclave loaded", p: Probes{Exists: func(string) bool { return true }, ReadFile: cpu("sgx sgx_lc"), LookPath: look("")},
			want: []string{"teemate_fake_encl.ko must never be loaded"}},
		{name: "no gramine-sgx", p: Probes{Exists: missing(), ReadFile: cpu("sgx sgx_lc"), LookPath: look("gramine-sgx")},
			want: []string{"gramine-sgx not found"}},
		{name: "no key and no addon", p: Probes{Exists: missing("/k.pem", "/r/addon.node"), ReadFile: cpu("sgx sgx_lc"), LookPath: look("")},
			want: []string{"signing key: /k.pem is missing", "isolate addon: /r/addon.node is missing"}},
		{name: "no sealed-crypto addon", p: Probes{Exists: missing("/r/sealcrypto.node"), ReadFile: cpu("sgx sgx_lc"), LookPath: look("")},
			want: []string{"sealed-crypto addon: /r/sealcrypto.node is missing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Preflight(base, c.p)
			err := r.Err()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("unavailable: %v\n%s", err, r)
				}
				return
			}
			if !errors.Is(err, enclave.ErrUnavailable) {
				t.Fatalf("err %v does not wrap ErrUnavailable", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
			if !strings.Contains(r.String(), "FAIL") {
				t.Fatalf("report has no FAIL line:\n%s", r)
			}
		})
	}
	// EDMM is off in the manifest, so a missing sgx2 flag is only reported.
	r := Preflight(base, Probes{Exists: missing(), ReadFile: cpu("sgx sgx_lc"), LookPath: look("")})
	if r.Err() != nil || !strings.Contains(r.String(), "info sgx2") {
		t.Fatalf("sgx2 should be informational:\n%s", r)
	}
}

func TestCPUFlags(t *testing.T) {
	f := CPUFlags([]byte("vendor_id\t: GenuineIntel\nflags\t\t: fpu sgx sgx_lc\nbugs\t\t: spectre_v1\n"))
	if !f["sgx"] || !f["sgx_lc"] || f["spectre_v1"] || len(f) != 3 {
		t.Fatalf("%v", f)
	}
	if len(CPUFlags(nil)) != 0 {
		t.Fatal("flags from nothing")
	}
}

func goldenParams() ManifestParams {
	return ManifestParams{
		Name: "nodejs-20-s8", Image: "nodejs:20", Slots: 8, HeapMBPerSlot: 256,
		Node: "/usr/bin/node", RuntimeDir: "/opt/teemate/enclave-runtime/trusted",
		Addon:      "/opt/teemate/node-isolate-patch/build/teemate_isolate.node",
		SealCrypto: "/opt/teemate/node-isolate-patch/build/teemate_sealcrypto.node", LogLevel: "error",
	}
}

func TestRenderManifestGolden(t *testing.T) {
	tmpl, err := os.ReadFile(repoFile(t, "enclave-runtime/manifest/nodejs-owner.manifest.template"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := RenderManifest(tmpl, goldenParams())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "nodejs-20-s8.manifest.template.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("rendered manifest differs from %s (go test -run Golden -update to accept):\n%s", golden, got)
	}
	for _, must := range []string{
		`"--mode", "sgx"`, `sgx.max_threads = 24`, `sgx.enclave_size = "4096M"`, `sgx.edmm_enable = false`,
		`sgx.debug = false`, `teemate.join_threads = 8`, "{{ gramine.runtimedir() }}",
	} {
		if !bytes.Contains(got, []byte(must)) {
			t.Errorf("rendered manifest lacks %s", must)
		}
	}
	for i, line := range strings.Split(string(got), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, bad := range []string{"[[", "insecure__use_cmdline_argv", "insecure__use_host_env", "passthrough", "allow_all_but_log"} {
			if strings.Contains(line, bad) {
				t.Errorf("line %d: %q: leftover project value or host argv/env/files", i+1, line)
			}
		}
	}
}

func TestManifestArithmetic(t *testing.T) {
	cases := []struct {
		slots, heap, threads, sizeMB int
	}{
		{1, 256, 17, 1024},   // 512 + 256 + 17*360K -> 774 MiB -> 1G
		{8, 256, 24, 4096},   // 512 + 2048 + 9 -> 4G
		{4, 128, 20, 1024},   // 512 + 512 + 8 -> 1032 MiB -> 2G? no: see below
		{64, 512, 80, 65536}, // 512 + 32768 + 29 -> 64G
	}
	cases[2].sizeMB = 2048
	for _, c := range cases {
		p := ManifestParams{Slots: c.slots, HeapMBPerSlot: c.heap}
		if p.MaxThreads() != c.threads || p.EnclaveSizeMB() != c.sizeMB {
			t.Errorf("slots %d heap %d: threads %d size %d, want %d %d", c.slots, c.heap, p.MaxThreads(), p.EnclaveSizeMB(), c.threads, c.sizeMB)
		}
	}
}

func TestRenderManifestRejects(t *testing.T) {
	tmpl := []byte("x = [[ .Slots ]]\n")
	cases := map[string]func(*ManifestParams){
		"name with quote":    func(p *ManifestParams) { p.Name = `a"b` },
		"image with newline": func(p *ManifestParams) { p.Image = "nodejs:20\nsgx.debug = true" },
		"zero slots":         func(p *ManifestParams) { p.Slots = 0 },
		"too many slots":     func(p *ManifestParams) { p.Slots = 1025 },
		"tiny heap":          func(p *ManifestParams) { p.HeapMBPerSlot = 16 },
		"enclave too big":    func(p *ManifestParams) { p.Slots, p.HeapMBPerSlot = 512, 4096 },
		"relative node":      func(p *ManifestParams) { p.Node = "node" },
		"bad log level":      func(p *ManifestParams) { p.LogLevel = "verbose" },
	}
	for name, mut := range cases {
		p := goldenParams()
		mut(&p)
		if _, err := RenderManifest(tmpl, p); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
	if _, err := RenderManifest([]byte("x = [[ .Nope ]]\n"), goldenParams()); err == nil {
		t.Error("unknown template field rendered")
	}
}

func TestManifestName(t *testing.T) {
	for in, want := range map[string]string{"nodejs:20": "nodejs-20-s8", "Node/JS 20": "node-js-20-s8", ":x:": "x-s8"} {
		if got := ManifestName(in, 8); got != want {
			t.Errorf("%q: %q want %q", in, got, want)
		}
	}
}

func TestParseShareLine(t *testing.T) {
	tok := strings.Repeat("ab", 32)
	ok := `{"teemateShare":1,"id":7,"token":"` + tok + `","tcs":8,"start":"0x10000","end":"0x100000000"}`
	got, err := ParseShareLine([]byte(ok))
	if err != nil || got.ID != 7 || got.TCS != 8 || got.Start != 0x10000 || got.End != 1<<32 || got.Token.String() != tok {
		t.Fatalf("%+v %v", got, err)
	}
	bad := map[string]string{
		"not json":       `teemate-share 7`,
		"empty":          ``,
		"no version":     `{"id":7,"token":"` + tok + `","tcs":8,"start":"0x10000","end":"0x20000"}`,
		"version 2":      strings.Replace(ok, `"teemateShare":1`, `"teemateShare":2`, 1),
		"zero id":        strings.Replace(ok, `"id":7`, `"id":0`, 1),
		"id string":      strings.Replace(ok, `"id":7`, `"id":"7"`, 1),
		"negative id":    strings.Replace(ok, `"id":7`, `"id":-7`, 1),
		"short token":    strings.Replace(ok, tok, "abcd", 1),
		"hex token junk": strings.Replace(ok, tok, strings.Repeat("zz", 32), 1),
		"zero token":     strings.Replace(ok, tok, strings.Repeat("00", 32), 1),
		"no tcs":         strings.Replace(ok, `"tcs":8,`, ``, 1),
		"tcs too many":   strings.Replace(ok, `"tcs":8`, `"tcs":1025`, 1),
		"decimal start":  strings.Replace(ok, `"0x10000"`, `"65536"`, 1),
		"unaligned end":  strings.Replace(ok, `"0x100000000"`, `"0x100000001"`, 1),
		"empty span":     strings.Replace(ok, `"0x100000000"`, `"0x10000"`, 1),
		"unknown field":  strings.Replace(ok, `}`, `,"fd":3}`, 1),
		"trailing data":  ok + ` {}`,
		"oversize":       ok + strings.Repeat(" ", ShareLineMax),
	}
	for name, line := range bad {
		if _, err := ParseShareLine([]byte(line)); err == nil {
			t.Errorf("%s: accepted %q", name, line)
		}
	}
}

func TestLoaderLevel(t *testing.T) {
	for _, c := range []struct {
		line string
		want zapcore.Level
	}{
		{`{"level":"error","msg":"x"}`, zapcore.ErrorLevel},
		{`{"level":"warn","msg":"x"}`, zapcore.WarnLevel},
		{`error: Loading enclave failed`, zapcore.ErrorLevel},
		{`warning: insecure option`, zapcore.WarnLevel},
		{`warning: {"level":"error"}`, zapcore.ErrorLevel},
		{`error: {"level":"warn"}`, zapcore.ErrorLevel},
		{`{"level":"info","msg":"x"}`, zapcore.DebugLevel},
		{`something: error:`, zapcore.DebugLevel},
	} {
		if got := loaderLevel(c.line); got != c.want {
			t.Errorf("loaderLevel(%q) = %s, want %s", c.line, got, c.want)
		}
	}
}
