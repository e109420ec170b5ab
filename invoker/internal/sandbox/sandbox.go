// Package sandbox defines the per-activation container: the interface every backend (process, docker,
// oci) implements, and the errors they share. It runs on the untrusted host.
//
// The rule of the TeeMate design is "a fresh sandbox per activation": a Sandbox is created, serves
// exactly one activation through its action proxy, and is destroyed. Nothing is ever reused.
package sandbox

import (
	"context"
	"errors"
	"io"
)

// Sentinel errors shared by all backends; wrap them with %w and test them with errors.Is.
var (
	// ErrUnavailable: the backend itself cannot work (no engine, no runtime binary, no permission).
	// Activations that meet it are answered with a whisk internal error.
	ErrUnavailable = errors.New("sandbox backend unavailable")
	// ErrStartFailed: this one sandbox could not be created or started.
	ErrStartFailed = errors.New("sandbox failed to start")
	// ErrNotFound: the sandbox no longer exists.
	ErrNotFound = errors.New("sandbox not found")
)

// Mount binds a host directory into the sandbox.
type Mount struct {
	HostPath  string // absolute path on the host
	GuestPath string // absolute path inside the sandbox
	ReadOnly  bool
}

// Spec describes one sandbox. The backend must honour every field or fail Create.
type Spec struct {
	// Name is the OpenWhisk-style name wsk{N}_{counter}_{ns}_{action} (letters, digits, '_').
	Name string
	// Rootfs names the sandbox's root filesystem: the one image `make images` builds for the
	// execution model ("teemate", "native" or "strawman"; executor.Model.Rootfs). It is not the
	// action's function image (e.g. "nodejs:20"), which picks the warm enclave. The process
	// backend, which runs on the host's filesystem, ignores it.
	Rootfs string
	// Command overrides the image's entry point when non-empty.
	Command []string
	// Env is the process environment inside the sandbox.
	Env map[string]string
	// MemoryMB is the hard memory limit (memory = memory+swap); 0 means no limit (process backend only).
	MemoryMB int
	// PidsLimit bounds the number of processes; 0 means the backend default.
	PidsLimit int
	// Network gives the sandbox a network; false means loopback only.
	Network bool
	// Mounts are bind mounts; the proxy directory (where the action proxy listens) is one of them.
	Mounts []Mount
	// ProxySocket is the host path of the unix socket the action proxy inside will listen on. A
	// backend may serve the proxy at another host path (a pooled container's socket is bound
	// before anyone knows its activation); callers use Sandbox.ProxySocket.
	ProxySocket string
	// Prestart says the command (one path, no arguments) can be started before its use: exec'd
	// with only TEEMATE_PROXY_FD and TEEMATE_START_CONF, it takes the rest of its environment
	// from the start configuration once its first connection is pending, as the teemate shim
	// does. A backend that pools started containers may then start it ahead, off the request
	// path; others ignore it.
	Prestart bool
}

// Capabilities of a backend.
type Capabilities struct {
	// Isolated: the sandbox has its own namespaces and root filesystem (false for process).
	Isolated bool
	// RemapsPaths: mounts can place a host path at a different guest path. When false, callers must
	// use GuestPath == HostPath (the process backend sees the host filesystem as it is).
	RemapsPaths bool
	// EnforcesMemory: MemoryMB is a hard limit the backend enforces.
	EnforcesMemory bool
}

// Runtime creates sandboxes. Implementations are safe for concurrent use.
type Runtime interface {
	// Name is the backend name: "process", "docker" or "oci".
	Name() string
	// Capabilities says what the backend enforces, so callers can adapt (and log honestly).
	Capabilities() Capabilities
	// Create makes a fresh sandbox and starts it. It returns once the sandbox's main process runs;
	// the caller then waits for the action proxy on the sandbox's ProxySocket. Errors wrap ErrUnavailable or
	// ErrStartFailed.
	Create(ctx context.Context, spec Spec) (Sandbox, error)
	// Reap removes what an earlier instance of this invoker left in this backend when it died
	// without closing it (SIGKILL, a crash): its containers (killed, then deleted from the
	// container runtime), processes, mounts, cgroups, bundles, sockets and pid files. The
	// contract every backend keeps:
	//   - It removes only what is verifiably this invoker's: found in the backend's own state
	//     (its state directory, its runtime root) or marked as this invoker's (its id prefix, its
	//     label), and for a process, a recorded pid whose start time still matches.
	//   - It never touches a sandbox of this Runtime, live or pooled, so it may run while the pool
	//     fills; the invoker calls it once at start, before it serves.
	//   - It is best effort: it removes what it can; the error joins what it could not remove, and
	//     Reaped counts what it did remove.
	Reap(ctx context.Context) (Reaped, error)
	// Close releases the backend's resources (pools, clients). Sandboxes still alive are destroyed.
	Close(ctx context.Context) error
}

// Reaped counts what a Reap (or the invoker's start as a whole) removed.
type Reaped struct {
	Processes  int // processes or process groups killed
	Containers int // containers deleted from the container runtime (runc, Docker)
	Mounts     int // mounts detached
	Cgroups    int // cgroups removed (one path counts once, whatever the hierarchies)
	Files      int // stale files and directories removed: bundles, sockets, pid files, work dirs
}

// Add adds o's counts to r.
func (r *Reaped) Add(o Reaped) {
	r.Processes += o.Processes
	r.Containers += o.Containers
	r.Mounts += o.Mounts
	r.Cgroups += o.Cgroups
	r.Files += o.Files
}

// Zero reports whether nothing was removed.
func (r Reaped) Zero() bool { return r == Reaped{} }

// Sandbox is one running container. Its methods are safe for concurrent use.
type Sandbox interface {
	// ID is the backend's identifier (container id, pid).
	ID() string
	// ProxySocket is the host path of the unix socket of the sandbox's action proxy. When the
	// backend binds it before the sandbox starts (and hands the listening socket in as the
	// TEEMATE_PROXY_FD descriptor), a connect succeeds at once and waits in the backlog until
	// the proxy accepts, so no readiness polling is needed.
	ProxySocket() string
	// Stdout and Stderr stream the sandbox's output; each may be read by one reader only.
	Stdout() io.Reader
	Stderr() io.Reader
	// Exited is closed once the sandbox's main process has exited.
	Exited() <-chan struct{}
	// OOMKilled reports whether the backend saw the sandbox killed for exceeding its memory limit.
	// It is meaningful only after Exited is closed.
	OOMKilled() bool
	// Destroy kills and removes the sandbox; it is idempotent and returns ErrNotFound-wrapped errors
	// only when the backend lost track of it.
	Destroy(ctx context.Context) error
}
