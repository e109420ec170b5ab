package app

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
)

// Machine is what the host offers for running activations, as found by ProbeMachine.
type Machine struct {
	// Docker: a Docker Engine socket is there.
	Docker bool
	// OCIRuntime: runc or crun is on PATH.
	OCIRuntime bool
	// SGX: SGX2 devices, the teemate module's /dev/teemate and Gramine are all there.
	SGX bool
	// Images: the function images (`make images`) are built; both container backends need them.
	Images bool
	// Root: the invoker runs as root (runc needs it to create namespaces and cgroups).
	Root bool
}

// Built lists the backends the invoker in this binary can run.
type Built struct {
	Sandboxes []string
	Enclaves  []string
}

// BuiltBackends is what invoker/daemon runs today. docker, oci and sgx join the lists as their
// executors land; ChooseBackends then prefers them where the machine has them.
var BuiltBackends = Built{Sandboxes: []string{"docker", "oci", "process"}, Enclaves: []string{"sgx", "direct"}}

// Preference orders, best first. oci and docker isolate alike, but the oci backend's pool of
// created containers starts one in milliseconds where the Docker Engine takes hundreds; process
// has no isolation and is for development only.
var (
	sandboxPreference = []string{"oci", "docker", "process"}
	enclavePreference = []string{"sgx", "direct"}
	models            = []string{"teemate", "native", "strawman"}
)

// ProbeMachine looks at the host: sockets, devices, executables and the images under repo.
func ProbeMachine(repo string) Machine {
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	onPath := func(name string) bool { _, err := exec.LookPath(name); return err == nil }
	return Machine{
		Docker:     exists("/var/run/docker.sock"),
		OCIRuntime: onPath("runc") || onPath("crun"),
		SGX:        exists("/dev/sgx_enclave") && exists("/dev/teemate") && onPath("gramine-sgx"),
		Images:     exists(filepath.Join(repo, ".state", "images", "teemate", "image.json")),
		Root:       os.Geteuid() == 0,
	}
}

func (m Machine) hasSandbox(s string) bool {
	switch s {
	case "docker":
		return m.Docker && m.Images
	case "oci":
		return m.OCIRuntime && m.Images && m.Root
	case "process", "none":
		return true
	}
	return false
}

func (m Machine) hasEnclave(e string) bool {
	switch e {
	case "sgx":
		return m.SGX
	case "direct", "none":
		return true
	}
	return false
}

// ChooseBackends resolves the --sandbox, --enclave and --model flags. "" or "auto" takes the best
// backend that is both built and available on the machine; a named backend must be both, or the
// answer is an error saying which is missing. "none" (no executor: every activation is answered
// with a whisk error) is always allowed.
func ChooseBackends(sandbox, enclave, model string, m Machine, built Built) (string, string, string, error) {
	sb, err := choose("sandbox", sandbox, sandboxPreference, built.Sandboxes, m.hasSandbox)
	if err != nil {
		return "", "", "", err
	}
	en, err := choose("enclave", enclave, enclavePreference, built.Enclaves, m.hasEnclave)
	if err != nil {
		return "", "", "", err
	}
	if model == "" {
		model = "teemate"
	}
	if !slices.Contains(models, model) {
		return "", "", "", fmt.Errorf("model %q is not one of %v", model, models)
	}
	return sb, en, model, nil
}

func choose(what, want string, preference, built []string, has func(string) bool) (string, error) {
	if want == "" || want == "auto" {
		for _, p := range preference {
			if slices.Contains(built, p) && has(p) {
				return p, nil
			}
		}
		return "", fmt.Errorf("no %s backend is both built (%v) and available on this machine", what, built)
	}
	if want == "none" {
		return want, nil
	}
	if !slices.Contains(preference, want) {
		return "", fmt.Errorf("%s %q is not one of %v, auto or none", what, want, preference)
	}
	if !slices.Contains(built, want) {
		return "", fmt.Errorf("%s %q is not built into this invoker yet (built: %v)", what, want, built)
	}
	if !has(want) {
		return "", fmt.Errorf("%s %q is not available on this machine", what, want)
	}
	return want, nil
}
