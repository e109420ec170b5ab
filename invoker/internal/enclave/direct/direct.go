package direct

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/ownerproc"
)

// Config configures the backend.
type Config struct {
	// Node is the node binary; "node" (from PATH) by default.
	Node string
	// OwnerJS is the path of enclave-runtime/trusted/owner.js; FindOwnerJS finds the repository's.
	OwnerJS string
	// StartTimeout bounds how long an owner may take until its gate answers a ping (10 s default).
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL (2 s default).
	StopTimeout time.Duration
	// Env is the owner's whole environment; by default PATH and HOME of the invoker and
	// OwnerMallocArenas.
	Env []string
}

// Backend starts owners as local Node processes.
type Backend struct {
	cfg Config
	log *zap.Logger
}

// New checks that node and owner.js exist (ErrUnavailable otherwise) and warns that direct mode
// gives no confidentiality.
func New(cfg Config, log *zap.Logger) (*Backend, error) {
	if cfg.Node == "" {
		cfg.Node = "node"
	}
	node, err := exec.LookPath(cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("direct enclave backend: %w: node not found: %w", enclave.ErrUnavailable, err)
	}
	cfg.Node = node
	if cfg.OwnerJS == "" {
		return nil, fmt.Errorf("direct enclave backend: %w: OwnerJS is not set", enclave.ErrUnavailable)
	}
	if _, err := os.Stat(cfg.OwnerJS); err != nil {
		return nil, fmt.Errorf("direct enclave backend: %w: %w", enclave.ErrUnavailable, err)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 2 * time.Second
	}
	if cfg.Env == nil {
		cfg.Env = append(ownerproc.HostEnv(), OwnerMallocArenas)
	}
	log.Warn("enclave backend 'direct' gives NO confidentiality: the enclave runtime runs as a plain " +
		"host process without SGX and its attestation is simulated; for development only")
	return &Backend{cfg: cfg, log: log}, nil
}

// OwnerMallocArenas caps glibc's malloc arenas in the owner. Every TCS slot is a thread of its
// own, and glibc gives busy threads arenas of their own (up to 8 per core), each keeping its
// high-water mark after the environment it served is freed; two arenas shared by all slots hold
// ~10-15 % less memory at 64 concurrent activations here, with no measurable latency cost.
const OwnerMallocArenas = "MALLOC_ARENA_MAX=2"

// FindOwnerJS looks for enclave-runtime/trusted/owner.js in dir and its parents.
func FindOwnerJS(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		p := filepath.Join(d, "enclave-runtime", "trusted", "owner.js")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%w: enclave-runtime/trusted/owner.js not found above %s", enclave.ErrUnavailable, dir)
		}
	}
}

// Name is "direct".
func (b *Backend) Name() string { return "direct" }

// Start launches owner.js for spec and returns once its gate answers a ping.
func (b *Backend) Start(ctx context.Context, spec enclave.StartSpec) (enclave.Owner, error) {
	if spec.ID == "" || spec.Image == "" || spec.Dir == "" || spec.Slots < 1 {
		return nil, fmt.Errorf("start owner: incomplete spec %+v", spec)
	}
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	isolate := spec.Isolate
	if isolate == "" {
		isolate = "auto"
	}
	sock := filepath.Join(spec.Dir, "gate.sock")
	cmd := exec.Command(b.cfg.Node, b.cfg.OwnerJS, "--socket", sock, "--slots", strconv.Itoa(spec.Slots),
		"--image", spec.Image, "--enclave", spec.ID, "--isolate", isolate, "--work-dir", spec.Dir)
	cmd.Env = b.cfg.Env
	cmd.Stdout = io.Discard // the ready line; readiness is checked with a ping
	log := b.log.With(zap.String("enclave", spec.ID), zap.String("image", spec.Image))
	p, err := ownerproc.Start(cmd, ownerproc.Options{ID: spec.ID, GateSocket: sock, StopTimeout: b.cfg.StopTimeout, Log: log})
	if err != nil {
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	o := &owner{Proc: p}
	sctx, cancel := context.WithTimeout(ctx, b.cfg.StartTimeout)
	defer cancel()
	if err := o.WaitGate(sctx); err != nil {
		_ = o.Stop(context.Background()) // the start failed; the stop's own error adds nothing
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	log.Info("enclave owner started (direct mode: no SGX, no confidentiality)",
		zap.Int("pid", o.Pid()), zap.String("gate", sock), zap.Int("slots", spec.Slots))
	return o, nil
}

// owner is a direct owner: the process handling of ownerproc (ID, GateSocket, Pid, Done, Err,
// Stop) plus its mode.
type owner struct {
	*ownerproc.Proc
}

// Mode is "direct".
func (o *owner) Mode() string { return "direct" }
