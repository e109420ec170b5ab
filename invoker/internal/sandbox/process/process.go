package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/reap"
	"github.com/teemate/platform/invoker/internal/sandbox"
)

// Config configures the backend.
type Config struct {
	// StateDir holds one pid file per live sandbox, so Cleanup can find leftovers of a crashed
	// invoker. Required.
	StateDir string
	// StartStub is the start stub binary (bin/teemate-start, the oci backend's stub). When set,
	// the backend keeps PoolSize sandboxes created ahead of their activations: each is the stub,
	// already holding its bound proxy socket, waiting for the command it will exec. Creation is
	// then off the request path and Create only hands the command over; each is used once.
	StartStub string
	// PoolSize is how many created sandboxes the pool keeps (2 by default; negative disables).
	PoolSize int
	// IDPrefix starts the names of pooled sandboxes (their pid files), so Cleanup(prefix) also
	// finds a crashed run's pool. Use the invoker's OpenWhisk prefix wsk{N}_; "wsk_" by default.
	IDPrefix string
}

// Runtime is the process backend.
type Runtime struct {
	cfg Config
	log *zap.Logger

	mu   sync.Mutex
	live map[*box]struct{}

	pool *pool // nil without a start stub
}

// New makes the backend and warns, once, that it isolates nothing.
func New(cfg Config, log *zap.Logger) (*Runtime, error) {
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("process sandbox backend: %w: StateDir is required", sandbox.ErrUnavailable)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("process sandbox backend: %w: %w", sandbox.ErrUnavailable, err)
	}
	log.Warn("sandbox backend 'process' gives NO isolation: actions run as plain host processes " +
		"with no memory limit; for development only")
	r := &Runtime{cfg: cfg, log: log, live: map[*box]struct{}{}}
	if cfg.StartStub != "" && cfg.PoolSize >= 0 {
		p, err := newPool(r)
		if err != nil {
			return nil, fmt.Errorf("process sandbox backend: %w: %w", sandbox.ErrUnavailable, err)
		}
		r.pool = p
	}
	return r, nil
}

// Name is "process".
func (r *Runtime) Name() string { return "process" }

// Capabilities: nothing is isolated, remapped or enforced.
func (r *Runtime) Capabilities() sandbox.Capabilities { return sandbox.Capabilities{} }

// Create starts spec.Command as a fresh process group: a pooled stub started with the command
// when the pool has one, otherwise a new process.
func (r *Runtime) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	what := "create sandbox " + spec.Name
	if err := checkSpec(spec); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
	}
	if b := r.takePooled(); b != nil {
		if err := b.start(spec); err != nil {
			b.discard()
			return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
		}
		return b, nil
	}
	env := spec.Env
	var extra []*os.File
	if spec.ProxySocket != "" {
		ln, err := bindProxy(spec.ProxySocket)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
		}
		extra = append(extra, ln)
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		env[ProxyFDEnv] = "3" // ExtraFiles[0]
	}
	b, err := r.spawn(spec.Name, spec.Command, envList(env), extra...)
	if err != nil {
		if len(extra) > 0 {
			_ = os.Remove(spec.ProxySocket) // ours, just bound; nothing else to do on failure
		}
		return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
	}
	b.proxySocket = spec.ProxySocket
	return b, nil
}

// spawn starts argv as a new process group with exactly env, its output on two pipes and the
// extra descriptors from 3 on, and registers it. It closes the extra descriptors (the child has
// its own copies), so the socket dies with the child.
func (r *Runtime) spawn(name string, argv, env []string, extra ...*os.File) (*box, error) {
	defer closeAll(extra...)
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW)
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = extra
	// Pdeathsig: a sandbox never outlives the invoker, not even one forked in the moment before
	// its record was written (which Reap could not find). The kernel sends it when the forking
	// thread ends; Go ends a thread only under a goroutine that exits locked to it, which none
	// that creates sandboxes here does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	// The child holds the write ends now (or never will); ours must close so the readers see EOF.
	closeAll(outW, errW)
	if err != nil {
		closeAll(outR, errR)
		return nil, err
	}
	b := &box{rt: r, name: name, cmd: cmd, pgid: cmd.Process.Pid, stdout: outR, stderr: errR,
		exited: make(chan struct{}), record: name}
	// Live before its record exists, so that a Reap running meanwhile never takes it for a
	// leftover.
	r.mu.Lock()
	r.live[b] = struct{}{}
	r.mu.Unlock()
	if err := reap.Record(r.cfg.StateDir, name, b.pgid); err != nil {
		// Without the record a crash would leak the process: refuse the sandbox.
		_ = syscall.Kill(-b.pgid, syscall.SIGKILL)
		_ = cmd.Wait() // reaps it; the killed process's status says nothing
		closeAll(outR, errR)
		r.mu.Lock()
		delete(r.live, b)
		r.mu.Unlock()
		return nil, err
	}
	go func() {
		// The exit status carries nothing the invoker uses; the exit itself is signalled.
		_ = cmd.Wait()
		close(b.exited)
	}()
	return b, nil
}

// ProxyFDEnv names the descriptor of the action proxy's listening socket in the sandbox.
const ProxyFDEnv = "TEEMATE_PROXY_FD"

// bindProxy binds and listens on the proxy socket here, before the sandbox starts, and returns
// the listening socket to hand in as a descriptor: the invoker's connect then succeeds at once
// and waits in the backlog until the proxy accepts, so nobody polls for the proxy to come up.
func bindProxy(path string) (*os.File, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale proxy socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("bind the proxy socket: %w", err)
	}
	// Only the sandbox's copy may live on: closing ours must not remove the socket file.
	ln.SetUnlinkOnClose(false)
	f, err := ln.File()
	if cerr := ln.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path) // ours, just bound; the bind's error is the one to report
		return nil, fmt.Errorf("bind the proxy socket: %w", err)
	}
	return f, nil
}

func checkSpec(spec sandbox.Spec) error {
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return errors.New("the process backend needs a command")
	}
	if spec.Name == "" || strings.ContainsAny(spec.Name, "/\x00") || spec.Name == "." || spec.Name == ".." {
		return fmt.Errorf("sandbox name %q is not a plain name", spec.Name)
	}
	for _, m := range spec.Mounts {
		if filepath.Clean(m.HostPath) != filepath.Clean(m.GuestPath) {
			return fmt.Errorf("the process backend cannot place %s at %s (no path remapping)", m.HostPath, m.GuestPath)
		}
	}
	return nil
}

// envList is Spec.Env only, sorted: no variable of the invoker leaks into the sandbox.
func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close() // freshly made pipe ends; a close error leaves nothing to do
	}
}

// Reap kills the process groups of earlier runs whose records (pid and start time, in StateDir)
// name a sandbox with the id prefix, and removes the records and the pool directories of earlier
// runs (their proxy sockets). A record whose process is gone, or whose pid now belongs to another
// program (its start time differs), is only removed.
func (r *Runtime) Reap(_ context.Context) (sandbox.Reaped, error) {
	var got sandbox.Reaped
	prefix := r.idPrefix()
	r.mu.Lock()
	mine := map[string]bool{}
	for b := range r.live {
		mine[b.record] = true
	}
	r.mu.Unlock()
	leftover := func(name string) bool {
		return strings.HasPrefix(name, prefix) && !mine[name] && (r.pool == nil || !strings.HasPrefix(name, r.pool.idPrefix()))
	}
	recs, err := reap.Records(r.cfg.StateDir)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	killed, err := reap.Kill(r.cfg.StateDir, func(name string) bool { return !leftover(name) })
	got.Processes = killed
	if err != nil {
		errs = append(errs, err)
	}
	for _, rec := range recs {
		if leftover(rec.Name) {
			got.Files++ // its record
		}
	}
	pools, err := os.ReadDir(filepath.Join(r.cfg.StateDir, "pool"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("reap process sandboxes: %w", err))
	}
	for _, e := range pools {
		if !leftover(e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(r.cfg.StateDir, "pool", e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("reap process sandboxes: %w", err))
			continue
		}
		got.Files++
	}
	if killed > 0 {
		r.log.Info("killed leftover sandboxes", zap.Int("count", killed))
	}
	return got, errors.Join(errs...)
}

// Close destroys every sandbox still alive.
func (r *Runtime) Close(ctx context.Context) error {
	if r.pool != nil {
		r.pool.close()
	}
	r.mu.Lock()
	boxes := make([]*box, 0, len(r.live))
	for b := range r.live {
		boxes = append(boxes, b)
	}
	r.mu.Unlock()
	var errs []error
	for _, b := range boxes {
		if err := b.Destroy(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type box struct {
	rt          *Runtime
	name        string
	proxySocket string
	// Pooled sandboxes only: the stub's start configuration pipe, and the directory of the socket.
	startW  *os.File
	poolDir string
	cmd     *exec.Cmd
	pgid    int
	stdout  *os.File
	stderr  *os.File
	exited  chan struct{}
	// record is the name of the process's record in StateDir (reap.Record): the name it was
	// spawned with (a pooled sandbox keeps its pool id).
	record string

	destroyOnce sync.Once
	destroyErr  error
}

func (b *box) ID() string              { return strconv.Itoa(b.pgid) }
func (b *box) ProxySocket() string     { return b.proxySocket }
func (b *box) Stdout() io.Reader       { return b.stdout }
func (b *box) Stderr() io.Reader       { return b.stderr }
func (b *box) Exited() <-chan struct{} { return b.exited }
func (b *box) OOMKilled() bool         { return false }
func (b *box) String() string          { return b.name + "/" + b.ID() }
func (b *box) Destroy(ctx context.Context) error {
	b.destroyOnce.Do(func() { b.destroyErr = b.destroy(ctx) })
	return b.destroyErr
}

// destroy kills the whole group (the shim and anything it started), waits for the main process,
// and removes the pid file. The output pipes are closed after a short grace so readers still get
// what was written before the kill.
func (b *box) destroy(ctx context.Context) error {
	if err := syscall.Kill(-b.pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("destroy sandbox %s: kill group %d: %w", b.name, b.pgid, err)
	}
	var err error
	select {
	case <-b.exited:
	case <-ctx.Done():
		err = fmt.Errorf("destroy sandbox %s: waiting for exit: %w", b.name, ctx.Err())
	}
	b.rt.mu.Lock()
	delete(b.rt.live, b)
	b.rt.mu.Unlock()
	if rerr := reap.Forget(b.rt.cfg.StateDir, b.record); rerr != nil {
		err = errors.Join(err, fmt.Errorf("destroy sandbox %s: %w", b.name, rerr))
	}
	if b.startW != nil {
		closeAll(b.startW)
	}
	if b.poolDir != "" {
		if rerr := os.RemoveAll(b.poolDir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("destroy sandbox %s: %w", b.name, rerr))
		}
	}
	// Grandchildren that escaped the group could hold the pipes open; close our ends after a grace
	// so readers never block forever.
	time.AfterFunc(2*time.Second, func() { closeAll(b.stdout, b.stderr) })
	return err
}
