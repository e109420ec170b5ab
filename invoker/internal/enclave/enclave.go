// Package enclave manages the warm shared enclaves: one owner per function image, shared by every
// per-activation sandbox through the gate. It runs on the untrusted host; what it starts (the owner
// running enclave-runtime/) is the trusted side.
//
// A Backend starts owners ("direct": the Node runtime as a plain process; "sgx": the same runtime under
// gramine-sgx with /dev/teemate attach). The Manager picks an owner for each activation, starts one when
// none has a free TCS slot, health-checks them and restarts the ones that die. What it decides is
// decided by the I/O-free core in enclave/pool; the Manager is the thin loop that starts, watches,
// pings and stops the owners and reports back.
package enclave

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors; wrap with %w, test with errors.Is.
var (
	// ErrUnavailable: the backend cannot start owners here (no SGX, no gramine, no node).
	ErrUnavailable = errors.New("enclave backend unavailable")
	// ErrNoCapacity: every owner of the image is full and no further owner may be started.
	ErrNoCapacity = errors.New("no free enclave thread")
	// ErrOwnerDied: the owner exited while the caller was using it.
	ErrOwnerDied = errors.New("enclave owner died")
	// ErrClosed: the manager is shut down.
	ErrClosed = errors.New("enclave manager closed")
	// ErrNoOwner: no owner of the image runs here (e.g. nothing to rotate the image key of).
	ErrNoOwner = errors.New("no enclave owner of the image")
	// ErrKeyRefused: the controller refused an owner's evidence because another, healthy invoker
	// holds the image's published key. Hooks.Evidence returns it (wrapped) so that the Manager
	// replaces the owner with one that takes the published key.
	ErrKeyRefused = errors.New("image key refused: another invoker holds the image's published key")
)

// StartSpec tells a backend what owner to start.
type StartSpec struct {
	// ID names the owner, e.g. "nodejs-20-0"; unique for the life of the invoker.
	ID string
	// Image is the runtime kind, e.g. "nodejs:20".
	Image string
	// Dir is a private directory for this owner; the gate socket lives in it.
	Dir string
	// Slots is the number of TCS slots (enclave threads) the owner offers.
	Slots int
	// Isolate chooses how per-activation isolates are made: "addon", "worker" or "" (best available).
	Isolate string
	// IsolateReuse is IsolateReuseNone ("" too: a new isolate for every activation) or
	// IsolateReuseTenant: each slot keeps its isolate for one tenant's unsealed activations, each
	// in a new context and Node environment (the isolate addon's KeptIsolate). Backends that
	// cannot do it refuse to start.
	IsolateReuse string
	// PagePoolMB is the budget of the isolate addon's page pool in MiB (node-isolate-patch/README.md,
	// "The page pool"): nil for the addon's default, 0 turns it off. Backends that cannot pass it
	// refuse a non-nil value.
	PagePoolMB *int
	// KeyMode is how the owner gets its image key (enclave-runtime/trusted/keys.js): "" or
	// KeyGenerate unseals the image's sealed key or makes one; KeyAwait starts it without a key, to
	// receive one from a live owner of the image by transfer (the Manager relays it). A backend that
	// cannot start an owner without a key starts it with one (the transfer then replaces it).
	KeyMode string
	// Background starts the owner at background CPU priority, until Owner.Foreground: an owner
	// started ahead of its traffic (Manager.Prepare) leaves the CPU to the owners serving now. A
	// backend that cannot lower it starts it at normal priority.
	Background bool
}

// Key modes (StartSpec.KeyMode).
const (
	KeyGenerate = "generate"
	KeyAwait    = "await"
)

// Isolate reuse modes (StartSpec.IsolateReuse).
const (
	IsolateReuseNone   = "none"
	IsolateReuseTenant = "tenant"
)

// CheckIsolateReuse refuses a mode other than "", IsolateReuseNone and IsolateReuseTenant.
func CheckIsolateReuse(mode string) error {
	switch mode {
	case "", IsolateReuseNone, IsolateReuseTenant:
		return nil
	}
	return fmt.Errorf("isolate reuse %q: want none or tenant", mode)
}

// MaxPagePoolMB is the largest page pool budget the isolate addon takes.
const MaxPagePoolMB = 4096

// CheckPagePool refuses a budget outside 0..MaxPagePoolMB (nil is the addon's default).
func CheckPagePool(mb *int) error {
	if mb != nil && (*mb < 0 || *mb > MaxPagePoolMB) {
		return fmt.Errorf("page pool %d MiB: want 0 (off) to %d", *mb, MaxPagePoolMB)
	}
	return nil
}

// Owner is one running enclave owner process.
type Owner interface {
	// ID is StartSpec.ID.
	ID() string
	// GateSocket is the host path of the owner's gate socket.
	GateSocket() string
	// Mode is "direct" or "sgx".
	Mode() string
	// Done is closed when the owner process has exited; Err then says why.
	Done() <-chan struct{}
	Err() error
	// Stop terminates the owner and waits for it to exit.
	Stop(ctx context.Context) error
	// Foreground ends StartSpec.Background: the owner runs at normal priority from then on. It is
	// idempotent and a no-op for an owner not in the background; an error says the owner may still
	// be at background priority.
	Foreground() error
}

// Backend starts owners. Implementations are safe for concurrent use.
type Backend interface {
	// Name is "direct" or "sgx".
	Name() string
	// Start launches an owner and returns once its gate answers a ping. Errors wrap ErrUnavailable
	// when the backend cannot run at all on this host.
	Start(ctx context.Context, spec StartSpec) (Owner, error)
}
