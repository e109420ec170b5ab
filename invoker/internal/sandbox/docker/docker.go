package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-units"
	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/sandbox"
)

// Config configures the backend.
type Config struct {
	// Host is the engine address (unix:///var/run/docker.sock style); empty means DOCKER_HOST or
	// the default socket.
	Host string
	// ImagePrefix turns a Spec.Rootfs name into an image reference: "teemate/" gives
	// teemate/<name>:latest, the tags deploy/images/build.sh imports. An image that already has a
	// '/' or ':' is used as it is.
	ImagePrefix string
	// DefaultPidsLimit applies when Spec.PidsLimit is 0 (OpenWhisk's 1024 when unset).
	DefaultPidsLimit int
	// CleanupParallelism bounds concurrent removals in Reap (8 when unset).
	CleanupParallelism int
	// IDPrefix starts the names of the invoker's containers (its OpenWhisk prefix wsk{N}_, "wsk_"
	// by default). Reap removes the containers with it that carry no OwnerLabel (made before
	// containers were labelled), as OpenWhisk removes wsk{N}_* at start.
	IDPrefix string
	// Owner is the value of every container's OwnerLabel: the invoker's identity (its runtime
	// directory's name, one per state directory and invoker id). Reap removes the containers
	// labelled with it. Empty: containers are not labelled, and Reap goes by IDPrefix alone.
	Owner string
}

// OwnerLabel marks the invoker a container belongs to (Config.Owner).
const OwnerLabel = "org.teemate.invoker"

func (c Config) withDefaults() Config {
	if c.ImagePrefix == "" {
		c.ImagePrefix = "teemate/"
	}
	if c.DefaultPidsLimit <= 0 {
		c.DefaultPidsLimit = 1024
	}
	if c.CleanupParallelism <= 0 {
		c.CleanupParallelism = 8
	}
	if c.IDPrefix == "" {
		c.IDPrefix = "wsk_"
	}
	return c
}

// Runtime is the docker backend.
type Runtime struct {
	cfg Config
	cli *client.Client
	log *zap.Logger

	mu   sync.Mutex
	live map[*box]struct{}
}

var _ sandbox.Runtime = (*Runtime)(nil)

// New connects to the engine and checks that it answers. Errors wrap sandbox.ErrUnavailable.
func New(ctx context.Context, cfg Config, log *zap.Logger) (*Runtime, error) {
	cfg = cfg.withDefaults()
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker sandbox backend: %w: %w", sandbox.ErrUnavailable, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		_ = cli.Close() // the client holds no connection yet worth reporting on
		return nil, fmt.Errorf("docker sandbox backend: %w: %w (deploy/dev/start-dockerd.sh starts one)", sandbox.ErrUnavailable, err)
	}
	log.Info("docker sandbox backend ready", zap.String("host", cli.DaemonHost()), zap.String("api", cli.ClientVersion()))
	return &Runtime{cfg: cfg, cli: cli, log: log, live: map[*box]struct{}{}}, nil
}

// Name is "docker".
func (r *Runtime) Name() string { return "docker" }

// Capabilities: containers are isolated, mounts are remapped, memory is a hard limit.
func (r *Runtime) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{Isolated: true, RemapsPaths: true, EnforcesMemory: true}
}

// namePattern is what OpenWhisk's names keep (letters, digits, '_'), starting the way Docker
// requires.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_]{0,199}$`)

// ImageRef maps a Spec.Rootfs to the reference the engine knows.
func ImageRef(prefix, image string) string {
	if strings.ContainsAny(image, "/:") {
		return image
	}
	return prefix + image + ":latest"
}

// containerConfigs turns a Spec into the engine's create request: the pure part of Create.
func containerConfigs(cfg Config, spec sandbox.Spec) (*container.Config, *container.HostConfig, error) {
	if !namePattern.MatchString(spec.Name) {
		return nil, nil, fmt.Errorf("sandbox name %q: want letters, digits and '_', starting with a letter or digit", spec.Name)
	}
	if spec.Rootfs == "" {
		return nil, nil, errors.New("no image")
	}
	if spec.MemoryMB < 0 || spec.PidsLimit < 0 {
		return nil, nil, fmt.Errorf("negative limit (memory %d MB, pids %d)", spec.MemoryMB, spec.PidsLimit)
	}
	env := make([]string, 0, len(spec.Env))
	for k, v := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			return nil, nil, fmt.Errorf("environment variable %q is not valid", k)
		}
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	binds := make([]string, 0, len(spec.Mounts))
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.HostPath) || !filepath.IsAbs(m.GuestPath) || strings.Contains(m.HostPath+m.GuestPath, ":") {
			return nil, nil, fmt.Errorf("mount %s -> %s: both paths must be absolute and contain no ':'", m.HostPath, m.GuestPath)
		}
		b := filepath.Clean(m.HostPath) + ":" + filepath.Clean(m.GuestPath)
		if m.ReadOnly {
			b += ":ro"
		}
		binds = append(binds, b)
	}
	pids := int64(spec.PidsLimit)
	if pids == 0 {
		pids = int64(cfg.DefaultPidsLimit)
	}
	network := container.NetworkMode("none")
	if spec.Network {
		network = "bridge"
	}
	cc := &container.Config{
		Image:        ImageRef(cfg.ImagePrefix, spec.Rootfs),
		Env:          env,
		AttachStdout: true,
		AttachStderr: true,
	}
	if len(spec.Command) > 0 {
		cc.Cmd = spec.Command
	}
	if cfg.Owner != "" {
		cc.Labels = map[string]string{OwnerLabel: cfg.Owner}
	}
	hc := &container.HostConfig{
		NetworkMode: network,
		CapDrop:     []string{"NET_RAW", "NET_ADMIN"},
		Binds:       binds,
		Resources: container.Resources{
			PidsLimit: &pids,
			Ulimits:   []*units.Ulimit{{Name: "nofile", Soft: 1024, Hard: 1024}},
		},
	}
	if spec.MemoryMB > 0 {
		hc.Memory = int64(spec.MemoryMB) << 20
		hc.MemorySwap = hc.Memory // no swap: the limit is the limit
	}
	return cc, hc, nil
}

// classify wraps an engine error: an engine that does not answer makes the backend unavailable;
// anything else is this sandbox's failure.
func classify(what string, err error) error {
	if client.IsErrConnectionFailed(err) {
		return fmt.Errorf("%s: %w: %w", what, sandbox.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
}

// Create creates, attaches to, and starts a fresh container. It returns once the engine reports
// the container started; a command that cannot be executed fails here with ErrStartFailed.
func (r *Runtime) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	what := "create sandbox " + spec.Name
	cc, hc, err := containerConfigs(r.cfg, spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
	}
	created, err := r.cli.ContainerCreate(ctx, cc, hc, nil, nil, spec.Name)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			err = fmt.Errorf("%w (is image %s built? make images)", err, cc.Image)
		}
		return nil, classify(what, err)
	}
	// From here on the container exists: every failure removes it again.
	b := &box{rt: r, name: spec.Name, id: created.ID, proxySocket: spec.ProxySocket, exited: make(chan struct{})}
	b.ctx, b.cancel = context.WithCancel(context.WithoutCancel(ctx))
	fail := func(err error) (sandbox.Sandbox, error) {
		b.cancel()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if rerr := r.cli.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true}); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			err = errors.Join(err, fmt.Errorf("removing the failed container: %w", rerr))
		}
		return nil, err
	}
	// Attach before start so the first line is not missed.
	hj, err := r.cli.ContainerAttach(ctx, created.ID, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return fail(classify(what+": attach", err))
	}
	b.hijack = hj.Close
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	b.stdout, b.stderr = outR, errR
	go func() {
		// The stream ends when the container exits or the connection is closed by Destroy; both
		// are normal ends for the readers.
		_, cerr := stdcopy.StdCopy(outW, errW, hj.Reader)
		outW.CloseWithError(ignoreClosed(cerr))
		errW.CloseWithError(ignoreClosed(cerr))
	}()
	// Wait for the next exit, registered before start so a quick exit is not missed.
	waitC, waitErr := r.cli.ContainerWait(b.ctx, created.ID, container.WaitConditionNextExit)
	if err := r.cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		hj.Close()
		return fail(classify(what+": start", err))
	}
	go b.watch(waitC, waitErr)
	r.mu.Lock()
	r.live[b] = struct{}{}
	r.mu.Unlock()
	return b, nil
}

func ignoreClosed(err error) error {
	if err == nil || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "use of closed network connection") {
		return nil
	}
	return err
}

// Reap removes (killing first) the containers labelled with this invoker's Owner and those named
// with its IDPrefix that carry no owner label at all (made by an invoker before containers were
// labelled), except the live sandboxes of this runtime: leftovers of an earlier run (OpenWhisk
// removes wsk{N}_* at start and shutdown). A container of another invoker (another owner label)
// is never touched, even with the same prefix.
func (r *Runtime) Reap(ctx context.Context) (sandbox.Reaped, error) {
	var got sandbox.Reaped
	list, err := r.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("name", r.cfg.IDPrefix))})
	if err != nil {
		return got, fmt.Errorf("reap docker sandboxes: %w", err)
	}
	if r.cfg.Owner != "" {
		labelled, err := r.cli.ContainerList(ctx, container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", OwnerLabel+"="+r.cfg.Owner))})
		if err != nil {
			return got, fmt.Errorf("reap docker sandboxes: %w", err)
		}
		list = append(list, labelled...)
	}
	r.mu.Lock()
	mine := map[string]bool{}
	for b := range r.live {
		mine[b.id] = true
	}
	r.mu.Unlock()
	var ids []string
	seen := map[string]bool{}
	for _, c := range list {
		if mine[c.ID] || seen[c.ID] {
			continue
		}
		owner, labelled := c.Labels[OwnerLabel]
		if (labelled && owner == r.cfg.Owner && owner != "") || (!labelled && hasNamePrefix(c.Names, r.cfg.IDPrefix)) {
			seen[c.ID] = true
			ids = append(ids, c.ID)
		}
	}
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
		sem  = make(chan struct{}, r.cfg.CleanupParallelism)
	)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := r.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
			if err != nil && !cerrdefs.IsNotFound(err) {
				emu.Lock()
				errs = append(errs, fmt.Errorf("remove leftover container %.12s: %w", id, err))
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	got.Containers = len(ids) - len(errs)
	return got, errors.Join(errs...)
}

// hasNamePrefix: the engine's name filter matches anywhere in the name, so the prefix is checked
// here ("/" leads every name the engine lists).
func hasNamePrefix(names []string, prefix string) bool {
	for _, n := range names {
		if strings.HasPrefix(strings.TrimPrefix(n, "/"), prefix) {
			return true
		}
	}
	return false
}

// Close destroys the live sandboxes and closes the client.
func (r *Runtime) Close(ctx context.Context) error {
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
	if err := r.cli.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close docker client: %w", err))
	}
	return errors.Join(errs...)
}

type box struct {
	rt          *Runtime
	name        string
	id          string
	proxySocket string
	stdout      *io.PipeReader
	stderr      *io.PipeReader
	hijack      func()
	exited      chan struct{}
	oom         atomic.Bool
	// destroying silences the watcher's warnings about a container Destroy removes under it.
	destroying atomic.Bool
	ctx        context.Context
	cancel     context.CancelFunc

	destroyOnce sync.Once
	destroyErr  error
}

func (b *box) ID() string              { return b.id }
func (b *box) ProxySocket() string     { return b.proxySocket }
func (b *box) Stdout() io.Reader       { return b.stdout }
func (b *box) Stderr() io.Reader       { return b.stderr }
func (b *box) Exited() <-chan struct{} { return b.exited }
func (b *box) OOMKilled() bool         { return b.oom.Load() }

// watch waits for the container's exit, reads State.OOMKilled, and closes exited. A wait that
// fails (the container was removed, the engine went away) also counts as the end of the sandbox.
func (b *box) watch(waitC <-chan container.WaitResponse, waitErr <-chan error) {
	defer close(b.exited)
	select {
	case res := <-waitC:
		// The OOM killer sends SIGKILL: any other exit status cannot be an OOM kill, and the
		// inspect round trip is saved.
		if res.StatusCode != 128+9 {
			return
		}
	case err := <-waitErr:
		if !b.destroying.Load() {
			b.rt.log.Warn("waiting for the container failed", zap.String("sandbox", b.name), zap.Error(err))
		}
		return
	}
	ictx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	info, err := b.rt.cli.ContainerInspect(ictx, b.id)
	if err != nil {
		if !b.destroying.Load() {
			b.rt.log.Warn("inspecting the exited container failed; OOM unknown", zap.String("sandbox", b.name), zap.Error(err))
		}
		return
	}
	if info.State != nil && info.State.OOMKilled {
		b.oom.Store(true)
	}
}

// Destroy kills and removes the container, then waits (bounded by ctx) for the watcher.
func (b *box) Destroy(ctx context.Context) error {
	b.destroyOnce.Do(func() { b.destroyErr = b.destroy(ctx) })
	return b.destroyErr
}

func (b *box) destroy(ctx context.Context) error {
	b.destroying.Store(true)
	err := b.rt.cli.ContainerRemove(ctx, b.id, container.RemoveOptions{Force: true})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			err = fmt.Errorf("destroy sandbox %s: %w: %w", b.name, sandbox.ErrNotFound, err)
		} else {
			err = fmt.Errorf("destroy sandbox %s: %w", b.name, err)
		}
	}
	select {
	case <-b.exited:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("destroy sandbox %s: waiting for the exit: %w", b.name, ctx.Err()))
	}
	b.cancel()
	b.hijack()
	b.rt.mu.Lock()
	delete(b.rt.live, b)
	b.rt.mu.Unlock()
	return err
}
