package direct

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/gate"
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
	// Env is the owner's whole environment; by default only PATH and HOME of the invoker.
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
		for _, k := range []string{"PATH", "HOME"} {
			if v, ok := os.LookupEnv(k); ok {
				cfg.Env = append(cfg.Env, k+"="+v)
			}
		}
	}
	log.Warn("enclave backend 'direct' gives NO confidentiality: the enclave runtime runs as a plain " +
		"host process without SGX and its attestation is simulated; for development only")
	return &Backend{cfg: cfg, log: log}, nil
}

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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout = io.Discard // the ready line; readiness is checked with a ping
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	log := b.log.With(zap.String("enclave", spec.ID), zap.String("image", spec.Image))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	o := &owner{id: spec.ID, sock: sock, cmd: cmd, done: make(chan struct{}), stopTimeout: b.cfg.StopTimeout}
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		o.logStderr(stderr, log)
	}()
	go func() {
		<-logged // Wait closes the pipe; read it to the end first
		err := cmd.Wait()
		o.mu.Lock()
		if o.stopping {
			o.err = fmt.Errorf("%w: %s stopped", enclave.ErrOwnerDied, spec.ID)
		} else {
			o.err = fmt.Errorf("%w: %s exited: %v (last output: %s)", enclave.ErrOwnerDied, spec.ID, err, o.lastLine)
		}
		o.mu.Unlock()
		close(o.done)
	}()
	sctx, cancel := context.WithTimeout(ctx, b.cfg.StartTimeout)
	defer cancel()
	if err := o.waitGate(sctx); err != nil {
		_ = o.Stop(context.Background()) // the start failed; the stop's own error adds nothing
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	log.Info("enclave owner started (direct mode: no SGX, no confidentiality)",
		zap.Int("pid", cmd.Process.Pid), zap.String("gate", sock), zap.Int("slots", spec.Slots))
	return o, nil
}

type owner struct {
	id          string
	sock        string
	cmd         *exec.Cmd
	done        chan struct{}
	stopTimeout time.Duration

	mu       sync.Mutex
	err      error
	lastLine string
	stopping bool
}

func (o *owner) ID() string         { return o.id }
func (o *owner) GateSocket() string { return o.sock }
func (o *owner) Mode() string       { return "direct" }

// Pid is the owner process id (for operators and tests).
func (o *owner) Pid() int              { return o.cmd.Process.Pid }
func (o *owner) Done() <-chan struct{} { return o.done }
func (o *owner) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// logStderr forwards the owner's stderr (JSON lines) to zap, keeping the last one for errors.
func (o *owner) logStderr(r io.Reader, log *zap.Logger) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		o.mu.Lock()
		o.lastLine = line
		o.mu.Unlock()
		switch {
		case strings.Contains(line, `"level":"error"`):
			log.Error("enclave owner", zap.String("line", line))
		case strings.Contains(line, `"level":"warn"`):
			log.Warn("enclave owner", zap.String("line", line))
		default:
			log.Debug("enclave owner", zap.String("line", line))
		}
	}
	if err := sc.Err(); err != nil {
		log.Warn("reading enclave owner stderr failed", zap.Error(err))
		_, _ = io.Copy(io.Discard, r) // keep the pipe drained so the owner never blocks
	}
}

func (o *owner) waitGate(ctx context.Context) error {
	delay := time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := gate.Ping(pctx, o.sock)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-o.done:
			return o.Err()
		case <-ctx.Done():
			return fmt.Errorf("gate did not answer a ping: %w (last: %w)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
}

// Stop sends SIGTERM to the owner's group, then SIGKILL after the stop timeout (or when ctx ends),
// and waits for the exit.
func (o *owner) Stop(ctx context.Context) error {
	o.mu.Lock()
	o.stopping = true
	o.mu.Unlock()
	select {
	case <-o.done:
		return nil
	default:
	}
	pgid := o.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop owner %s: %w", o.id, err)
	}
	t := time.NewTimer(o.stopTimeout)
	defer t.Stop()
	select {
	case <-o.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill owner %s: %w", o.id, err)
	}
	select {
	case <-o.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stop owner %s: still running after SIGKILL", o.id)
	}
}
