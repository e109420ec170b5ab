package sgx

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/teemate/platform/invoker/internal/enclave"
)

// Probes are the host facts preflight looks at. They are injected so the decision (Preflight) is a
// pure function that tables can test; HostProbes reads the real host.
type Probes struct {
	// Exists reports whether path exists (device node or file).
	Exists func(path string) bool
	// ReadFile reads a small file (/proc/cpuinfo).
	ReadFile func(path string) ([]byte, error)
	// LookPath resolves a command like exec.LookPath.
	LookPath func(file string) (string, error)
}

// HostProbes reads the real host.
func HostProbes() Probes {
	return Probes{
		Exists: func(p string) bool {
			_, err := os.Stat(p)
			return err == nil
		},
		ReadFile: os.ReadFile,
		LookPath: exec.LookPath,
	}
}

// Check is one preflight line, as `invoker --enclave sgx --preflight` prints it.
type Check struct {
	Name string
	OK   bool
	// Required checks make the backend unavailable when they fail; the others are informational.
	Required bool
	Detail   string
}

// Report is the result of Preflight.
type Report struct {
	Checks []Check
}

// Err is nil when every required check passed; otherwise it wraps enclave.ErrUnavailable and names
// every failed required check with its reason.
func (r Report) Err() error {
	var failed []string
	for _, c := range r.Checks {
		if c.Required && !c.OK {
			failed = append(failed, c.Name+": "+c.Detail)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("sgx enclave backend: %w: %s", enclave.ErrUnavailable, strings.Join(failed, "; "))
}

// String is the human-readable report, one check per line.
func (r Report) String() string {
	var b strings.Builder
	for _, c := range r.Checks {
		status := "ok  "
		switch {
		case !c.OK && c.Required:
			status = "FAIL"
		case !c.OK:
			status = "info"
		}
		fmt.Fprintf(&b, "%s %-16s %s\n", status, c.Name, c.Detail)
	}
	return b.String()
}

// CPUFlags returns the flags of the first processor in /proc/cpuinfo contents.
func CPUFlags(cpuinfo []byte) map[string]bool {
	flags := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			flags[f] = true
		}
		break // every processor lists the same flags
	}
	return flags
}

// Preflight decides whether this host can run sgx owners. The signed-manifest check is informational:
// Start renders and signs a missing or stale manifest, which only needs gramine-manifest,
// gramine-sgx-sign and the signing key.
func Preflight(cfg Config, p Probes) Report {
	cfg.defaults() // a copy: report on the paths and tools New would use
	var r Report
	add := func(name string, ok, required bool, detail string) {
		r.Checks = append(r.Checks, Check{Name: name, OK: ok, Required: required, Detail: detail})
	}
	dev := func(name, path, missing string) {
		if p.Exists(path) {
			add(name, true, true, path)
		} else {
			add(name, false, true, path+" is missing: "+missing)
		}
	}
	dev("sgx device", cfg.EnclaveDevice, "no in-kernel SGX driver (Linux >= 5.11 with CONFIG_X86_SGX) or SGX is off in the BIOS")

	info, err := p.ReadFile(cfg.CPUInfo)
	switch {
	case err != nil:
		add("cpu flags", false, true, fmt.Sprintf("cannot read %s: %v", cfg.CPUInfo, err))
	default:
		flags := CPUFlags(info)
		switch {
		case !flags["sgx"]:
			add("cpu flags", false, true, "no 'sgx' flag in "+cfg.CPUInfo+": the CPU has no SGX or it is disabled")
		case !flags["sgx_lc"]:
			add("cpu flags", false, true, "no 'sgx_lc' flag: the in-kernel driver needs flexible launch control")
		default:
			add("cpu flags", true, true, "sgx sgx_lc")
		}
		// EDMM (SGX2) is off in our manifest (sgx.edmm_enable = false): every page is added before
		// EINIT, so SGX2 is not needed. Reported only.
		if flags["sgx2"] {
			add("sgx2", true, false, "listed (not needed: sgx.edmm_enable = false)")
		} else {
			add("sgx2", false, false, "not listed in cpu flags (not needed: sgx.edmm_enable = false)")
		}
	}

	dev("teemate device", cfg.TeemateDevice, "load kmod/teemate.ko (without allow_fake_enclave)")
	if p.Exists(cfg.FakeEnclaveDevice) {
		add("fake enclave", false, true, cfg.FakeEnclaveDevice+" exists: the test module teemate_fake_encl.ko must never be loaded on a production host")
	}

	for _, tool := range []struct{ name, cmd string }{
		{"gramine-sgx", cfg.GramineSGX}, {"gramine-manifest", cfg.GramineManifest}, {"gramine-sgx-sign", cfg.GramineSign},
	} {
		if path, err := p.LookPath(tool.cmd); err == nil {
			add(tool.name, true, true, path)
		} else {
			add(tool.name, false, true, fmt.Sprintf("%s not found (install the patched Gramine, deploy/sgx/README.md): %v", tool.cmd, err))
		}
	}
	files := []struct{ name, path string }{
		{"signing key", cfg.SigningKey}, {"node", cfg.Node}, {"owner.js", cfg.OwnerJS},
		{"isolate addon", cfg.Addon}, {"sealed-crypto addon", cfg.SealCrypto}, {"manifest template", cfg.Template},
	}
	for _, f := range files {
		switch {
		case f.path == "":
			add(f.name, false, true, "not configured")
		case p.Exists(f.path):
			add(f.name, true, true, f.path)
		default:
			add(f.name, false, true, f.path+" is missing")
		}
	}
	if sig := cfg.signedManifestHint(); sig != "" {
		if p.Exists(sig) {
			add("signed manifest", true, false, sig)
		} else {
			add("signed manifest", false, false, sig+" not there yet: rendered and signed at the first start")
		}
	}
	return r
}
