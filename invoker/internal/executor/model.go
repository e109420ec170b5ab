package executor

import (
	"errors"
	"path/filepath"

	"github.com/teemate/platform/invoker/internal/activation"
	"github.com/teemate/platform/invoker/internal/sandbox"
)

// Model names, as --model spells them. The bench compares the three on the same sandbox backend.
const (
	// ModelTeemate is SharedEnclave's name: the TeeMate design.
	ModelTeemate = "teemate"
	// ModelNative is Native's name.
	ModelNative = "native"
	// ModelStrawman is Strawman's name.
	ModelStrawman = "strawman"
)

// Model is the strategy the Executor runs an activation's sandbox with: what runs in it and whether
// it attaches to a warm shared enclave. SharedEnclave, Native and Strawman are the three.
type Model interface {
	// Name is the --model value: "teemate", "native" or "strawman".
	Name() string
	// Rootfs names the root filesystem the model's sandboxes run (make images builds one per
	// model, under the model's name; the process backend ignores it).
	Rootfs() string
	// SharesEnclave: the sandbox attaches to the warm enclave of the action's image, so the
	// executor takes a lease on one of its threads first.
	SharesEnclave() bool
	// validate says what the model's settings lack.
	validate() error
	// shape fills in the model's part of a sandbox spec: the command, the environment the action
	// proxy needs, the enclave mounts and the network. guestProxy and guestGate are the proxy and
	// gate directories as seen inside the sandbox; gateDir is the lease's host directory ("" when
	// the model shares no enclave).
	shape(spec *sandbox.Spec, job *activation.Job, guestProxy, guestGate, gateDir string)
}

// SharedEnclave is the TeeMate design: a fresh sandbox per activation runs the shim, which attaches
// to the warm shared enclave of the action's image; the action runs in a new isolate there.
type SharedEnclave struct {
	// ShimPath is the teemate shim as seen inside the sandbox.
	ShimPath string
}

// Native is OpenWhisk's way: a fresh sandbox with its own Node action proxy, no enclave.
type Native struct {
	// Command is the argv of the OpenWhisk-style Node action proxy, as seen inside the sandbox.
	Command []string
}

// Strawman is one enclave per container: each fresh sandbox boots its own enclave runtime, and its
// shim talks to that runtime instead of a shared one.
type Strawman struct {
	// ShimPath is the shim as seen inside the sandbox; the strawman's launcher beside it
	// (StrawmanLauncher) boots Runtime first, then becomes the shim.
	ShimPath string
	// Runtime is the argv that boots a fresh enclave runtime inside the sandbox, as seen inside
	// it; the executor appends --socket, --slots 1, --image, --enclave and --work-dir.
	Runtime []string
}

func (SharedEnclave) Name() string        { return ModelTeemate }
func (SharedEnclave) Rootfs() string      { return ModelTeemate }
func (SharedEnclave) SharesEnclave() bool { return true }
func (m SharedEnclave) validate() error {
	if m.ShimPath == "" {
		return errors.New("teemate model: ShimPath is required")
	}
	return nil
}

func (m SharedEnclave) shape(spec *sandbox.Spec, _ *activation.Job, _, guestGate, gateDir string) {
	spec.Command = []string{m.ShimPath}
	// The shim reads its per-use environment from the start configuration when told to
	// (TEEMATE_START_CONF), so a backend may start it ahead, in a pooled container.
	spec.Prestart = true
	// The action's I/O happens in the shared enclave runtime, not in this sandbox: the sandbox
	// only talks to the gate over a unix socket, so it gets no network of its own (the runtime's
	// capability set decides what the action reaches).
	spec.Network = false
	// TODO: mount only the gate socket once every backend can bind a single socket file; the
	// owner's directory also holds its work files.
	spec.Mounts = append(spec.Mounts, sandbox.Mount{HostPath: gateDir, GuestPath: guestGate})
	spec.Env["TEEMATE_GATE"] = filepath.Join(guestGate, "gate.sock")
}

func (Native) Name() string        { return ModelNative }
func (Native) Rootfs() string      { return ModelNative }
func (Native) SharesEnclave() bool { return false }
func (m Native) validate() error {
	if len(m.Command) == 0 {
		return errors.New("native model: Command is required")
	}
	return nil
}

func (m Native) shape(spec *sandbox.Spec, _ *activation.Job, _, _, _ string) {
	spec.Command = m.Command
}

func (Strawman) Name() string        { return ModelStrawman }
func (Strawman) Rootfs() string      { return ModelStrawman }
func (Strawman) SharesEnclave() bool { return false }
func (m Strawman) validate() error {
	if m.ShimPath == "" || len(m.Runtime) == 0 {
		return errors.New("strawman model: ShimPath and Runtime are required")
	}
	return nil
}

func (m Strawman) shape(spec *sandbox.Spec, job *activation.Job, guestProxy, _, _ string) {
	// The runtime's gate and work files live in the sandbox's own proxy directory, and die with it.
	// The launcher beside the shim boots the runtime, then becomes the shim (shim/strawman).
	gate := filepath.Join(guestProxy, "gate.sock")
	spec.Env["TEEMATE_GATE"] = gate
	spec.Command = append([]string{StrawmanLauncher(m.ShimPath), m.ShimPath}, m.Runtime...)
	spec.Command = append(spec.Command,
		"--socket", gate, "--slots", "1", "--image", job.Image, "--enclave", "strawman-"+job.Name,
		"--work-dir", filepath.Join(guestProxy, "work"))
}

// StrawmanLauncher is the strawman model's launcher (teemate-strawman), which lives beside the shim.
func StrawmanLauncher(shimPath string) string {
	return filepath.Join(filepath.Dir(shimPath), "teemate-strawman")
}
