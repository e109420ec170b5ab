package oci

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/teemate/platform/invoker/internal/mountinfo"
	"github.com/teemate/platform/invoker/internal/reap"
	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/startconf"
)

// Config configures the backend.
type Config struct {
	// Runtime is the path of teemate-launch (bin/teemate-launch), the launcher of this
	// package's fixed container shape and the invoker's default (DefaultRuntime, see doc.go);
	// or an OCI runtime binary, "runc" or "crun" or a path to one. Empty means runc: the
	// launcher is found by its path, which only the caller knows (the repository's bin/).
	Runtime string
	// ImagesDir holds the images deploy/images/build.sh made: <ImagesDir>/<image>/rootfs and
	// image.json. Required.
	ImagesDir string
	// StateDir holds one bundle directory per container and, by default, the runtime's state
	// (--root). Required; keep it short: each container's proxy socket is below it, and unix
	// socket paths are limited to 107 bytes (New checks).
	StateDir string
	// RuntimeRoot is the runtime's --root; StateDir/runtime by default. A root of its own means
	// `runc list` shows this backend's containers only.
	RuntimeRoot string
	// IDPrefix starts every container id. Use the invoker's OpenWhisk prefix (wsk{N}_): Reap
	// removes the containers with it that are not this Runtime's. "wsk_" by default.
	IDPrefix string
	// CgroupParent is the cgroup below which each container gets its own ("/teemate").
	CgroupParent string
	// OwnCgroupParent says that CgroupParent belongs to this Runtime alone (the invoker gives
	// each runtime directory its own, /teemate/<runtime dir name>): Reap then removes every
	// cgroup below it that is not this Runtime's, and Close removes the parent. Otherwise Reap
	// removes the cgroups of the leftover containers and bundles it finds.
	OwnCgroupParent bool
	// PoolSize is how many created containers each pool key keeps ready (2 by default; 0 keeps
	// the default, negative disables pooling: every Create pays for the create).
	PoolSize int
	// RefillWorkers is how many containers each pool creates at once (1 by default). A fresh
	// container per activation means one create per activation: with activations faster than
	// a create (runc create takes 25 to 50 ms here), a pool drains however large it is unless
	// creates run in parallel. Each worker also holds one finished container until the pool
	// takes it.
	RefillWorkers int
	// Prewarm lists pool keys to fill at New, before the first request.
	Prewarm []PoolKey
	// DefaultPidsLimit applies when Spec.PidsLimit is 0 (1024 by default, as OpenWhisk).
	DefaultPidsLimit int
	// TmpMB sizes each container's /tmp tmpfs (64 by default); it counts toward the memory limit.
	TmpMB int
	// MountPoints are guest paths below /run/teemate made in every slot when the container is
	// created, so a per-use mount there needs no mkdir on the request path (other guest paths
	// still work, made at use). DefaultMountPoints when nil.
	MountPoints []string
}

// DefaultMountPoints are the teemate executor's per-use mounts: its proxy and gate directories.
var DefaultMountPoints = []string{"/run/teemate/proxy", "/run/teemate/gate"}

// PoolKey is what a pooled container is created for.
type PoolKey struct {
	Image     string
	MemoryMB  int
	PidsLimit int
	// Prestart, when set, is the command (an absolute path in the image) every container of the
	// pool runs from its creation, confined and waiting for its use (sandbox.Spec.Prestart); its
	// use then only writes the start configuration and mounts. Only the launcher prestarts.
	Prestart string
}

func (c Config) withDefaults() (Config, error) {
	if c.ImagesDir == "" || c.StateDir == "" {
		return c, errors.New("ImagesDir and StateDir are required")
	}
	if c.Runtime == "" {
		c.Runtime = "runc"
	}
	if c.RuntimeRoot == "" {
		c.RuntimeRoot = filepath.Join(c.StateDir, "runtime")
	}
	if c.IDPrefix == "" {
		c.IDPrefix = "wsk_"
	}
	if c.CgroupParent == "" {
		c.CgroupParent = "/teemate"
	}
	if c.PoolSize == 0 {
		c.PoolSize = 2
	}
	if c.RefillWorkers <= 0 {
		c.RefillWorkers = 1
	}
	if c.DefaultPidsLimit <= 0 {
		c.DefaultPidsLimit = 1024
	}
	if c.TmpMB <= 0 {
		c.TmpMB = 64
	}
	if c.MountPoints == nil {
		c.MountPoints = DefaultMountPoints
	}
	points := make([]string, 0, len(c.MountPoints))
	for _, g := range c.MountPoints {
		if _, err := slotTarget("/", g); err != nil {
			return c, fmt.Errorf("mount point: %w", err)
		}
		points = append(points, filepath.Clean(g))
	}
	c.MountPoints = points
	return c, nil
}

// Runtime is the oci backend.
type Runtime struct {
	cfg    Config
	bin    string
	kind   string // kindRunc, kindCrun or "" (an unknown runtime is always started with its binary)
	log    *zap.Logger
	run    string // random per Runtime, part of every id: a crashed run's ids never collide
	seq    atomic.Uint64
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	pools  map[PoolKey]*pool
	live   map[string]*box // every container of this runtime (pooled or started), by id
	images map[string]imageConfig
	closed bool

	// The launcher's (kindLaunch) host setup, found at New.
	controllers map[string]string // cgroup v1 controller -> mount point
	memsw       bool              // memory.memsw.* exists (swap accounting)
	devNull     *os.File          // every launched container's standard input
}

var _ sandbox.Runtime = (*Runtime)(nil)

// New checks the runtime binary and the state directory and starts the prewarm pools. Errors
// wrap sandbox.ErrUnavailable.
func New(cfg Config, log *zap.Logger) (*Runtime, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("oci sandbox backend: %w: %w", sandbox.ErrUnavailable, err)
	}
	bin, err := exec.LookPath(cfg.Runtime)
	if err != nil {
		return nil, fmt.Errorf("oci sandbox backend: %w: runtime %s: %w (%s)", sandbox.ErrUnavailable, cfg.Runtime, err, installHint(cfg.Runtime))
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("oci sandbox backend: %w: needs root (cgroups, mounts)", sandbox.ErrUnavailable)
	}
	if filepath.Base(bin) == kindCrun {
		if reason := crunBlocked(); reason != "" {
			return nil, fmt.Errorf("oci sandbox backend: %w: %s", sandbox.ErrUnavailable, reason)
		}
	}
	var controllers map[string]string
	if runtimeKind(bin) == kindLaunch {
		if controllers, err = v1Controllers(); err != nil {
			return nil, fmt.Errorf("oci sandbox backend: %w: %w", sandbox.ErrUnavailable, err)
		}
		if _, err := sandboxSeccomp(); err != nil {
			return nil, fmt.Errorf("oci sandbox backend: %w: %w", sandbox.ErrUnavailable, err)
		}
	}
	for _, d := range []string{cfg.StateDir, cfg.RuntimeRoot, filepath.Join(cfg.StateDir, "launched")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("oci sandbox backend: %w: %w", sandbox.ErrUnavailable, err)
		}
	}
	if !filepath.IsAbs(cfg.StateDir) || !filepath.IsAbs(cfg.ImagesDir) {
		return nil, fmt.Errorf("oci sandbox backend: %w: ImagesDir and StateDir must be absolute", sandbox.ErrUnavailable)
	}
	// runc refuses a root filesystem whose path goes through a symlink (a linked .state/images).
	if cfg.ImagesDir, err = filepath.EvalSymlinks(cfg.ImagesDir); err != nil {
		return nil, fmt.Errorf("oci sandbox backend: %w: images: %w (make images)", sandbox.ErrUnavailable, err)
	}
	if n := len(filepath.Join(cfg.StateDir, cfg.IDPrefix+"000000_"+strings.Repeat("0", 20), proxySocketName)); n > maxSocketPath {
		return nil, fmt.Errorf("oci sandbox backend: %w: StateDir %s is too long for the proxy sockets below it (%d bytes, at most %d)",
			sandbox.ErrUnavailable, cfg.StateDir, n, maxSocketPath)
	}
	var nonce [3]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("oci sandbox backend: %w: %w", sandbox.ErrUnavailable, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runtime{cfg: cfg, bin: bin, kind: runtimeKind(bin), log: log, run: hex.EncodeToString(nonce[:]), ctx: ctx, cancel: cancel,
		pools: map[PoolKey]*pool{}, live: map[string]*box{}, images: map[string]imageConfig{}, controllers: controllers}
	if r.kind == kindLaunch {
		_, err := os.Stat(filepath.Join(controllers["memory"], "memory.memsw.limit_in_bytes"))
		r.memsw = err == nil
		if r.devNull, err = os.Open(os.DevNull); err != nil {
			cancel()
			return nil, fmt.Errorf("oci sandbox backend: %w: %w", sandbox.ErrUnavailable, err)
		}
	}
	for _, k := range cfg.Prewarm {
		if _, err := r.image(k.Image); err != nil {
			cancel()
			return nil, fmt.Errorf("oci sandbox backend: %w: prewarm: %w", sandbox.ErrUnavailable, err)
		}
		r.poolFor(r.normalise(k))
	}
	log.Info("oci sandbox backend ready", zap.String("runtime", bin), zap.String("state", cfg.StateDir),
		zap.Int("pool_size", cfg.PoolSize), zap.Int("refill_workers", cfg.RefillWorkers))
	return r, nil
}

// installHint says how to get a missing runtime binary.
func installHint(runtime string) string {
	switch filepath.Base(runtime) {
	case kindLaunch, crunWrapper:
		return "make build"
	case kindCrun:
		return "apt-get install crun"
	}
	return "apt-get install runc"
}

// runtimeKind names the runtimes whose exec FIFO protocol this package follows.
func runtimeKind(bin string) string {
	switch filepath.Base(bin) {
	case kindRunc:
		return kindRunc
	case kindCrun, crunWrapper:
		return kindCrun
	case kindLaunch:
		return kindLaunch
	}
	return ""
}

// DefaultRuntime names the runtime the invoker gives this backend unless told otherwise: the
// launcher, bin/teemate-launch. Per container it spends 18.7 ms of CPU against runc's 136, and a
// pool refills at 33.9 containers a second against runc's 6.6 (bench/README.md), with the same
// isolation (TestIsolation holds every runtime to it).
const DefaultRuntime = kindLaunch

// LaunchBlocked explains why the launcher cannot limit containers on this host (no cgroup v1
// memory, pids or devices controller), or returns "".
func LaunchBlocked() string {
	if _, err := v1Controllers(); err != nil {
		return err.Error()
	}
	return ""
}

// crunWrapper is the name of bin/teemate-crun, which runs crun where crunBlocked says it cannot
// run by itself.
const crunWrapper = "teemate-crun"

// CrunBlocked explains why crun cannot run here by itself, or returns "".
func CrunBlocked() string { return crunBlocked() }

// crunBlocked explains why crun cannot run here, or returns "".
func crunBlocked() string {
	ms, err := mountinfo.Self()
	if err != nil {
		return ""
	}
	for _, m := range ms {
		if m.Point == "/sys/fs/cgroup/unified" && m.FSType == "cgroup2" {
			return "crun refuses this hybrid cgroup host (cgroup2 at /sys/fs/cgroup/unified); use bin/teemate-crun (make build), " +
				"which runs it in a mount namespace without that mount, or runc"
		}
	}
	return ""
}

// Name is "oci".
func (r *Runtime) Name() string { return "oci" }

// Capabilities: isolated, remapped paths, enforced memory.
func (r *Runtime) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{Isolated: true, RemapsPaths: true, EnforcesMemory: true}
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_]{0,199}$`)

func (r *Runtime) normalise(k PoolKey) PoolKey {
	if k.PidsLimit == 0 {
		k.PidsLimit = r.cfg.DefaultPidsLimit
	}
	if r.kind != kindLaunch {
		k.Prestart = "" // runc and crun start a container's process with their binary, at its use
	}
	return k
}

// image loads (once) an image's configuration and checks its rootfs.
func (r *Runtime) image(name string) (imageConfig, error) {
	r.mu.Lock()
	ic, ok := r.images[name]
	r.mu.Unlock()
	if ok {
		return ic, nil
	}
	if !namePattern.MatchString(name) {
		return imageConfig{}, fmt.Errorf("image name %q is not a plain name", name)
	}
	dir := filepath.Join(r.cfg.ImagesDir, name)
	b, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return imageConfig{}, fmt.Errorf("image %s: %w (make images)", name, err)
	}
	if err := json.Unmarshal(b, &ic); err != nil {
		return imageConfig{}, fmt.Errorf("image %s: image.json: %w", name, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "rootfs", StubPath)); err != nil {
		return imageConfig{}, fmt.Errorf("image %s has no start stub: %w (make images)", name, err)
	}
	r.mu.Lock()
	r.images[name] = ic
	r.mu.Unlock()
	return ic, nil
}

// Create takes a created container from the pool of the spec's key (or creates one now when
// the pool is empty), configures it for this use, and starts it.
func (r *Runtime) Create(ctx context.Context, spec sandbox.Spec) (sandbox.Sandbox, error) {
	what := "create sandbox " + spec.Name
	key, startConf, err := r.plan(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
	}
	b, err := r.acquire(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	b.name = spec.Name
	if err := b.prepare(spec.Mounts, startConf); err != nil {
		b.discard()
		return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
	}
	if b.key.Prestart == "" { // else running since its creation, and now configured
		if err := r.start(ctx, b); err != nil {
			b.discard()
			return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
		}
	}
	b.started.Store(true)
	return b, nil
}

// plan checks a spec and makes its start configuration: all of Create that comes before a
// container is touched.
func (r *Runtime) plan(spec sandbox.Spec) (PoolKey, []byte, error) {
	if !namePattern.MatchString(spec.Name) {
		return PoolKey{}, nil, errors.New("name must be letters, digits and '_'")
	}
	if spec.Network {
		return PoolKey{}, nil, errors.New("the oci backend has no container networking yet (loopback only)")
	}
	if spec.MemoryMB < 0 || spec.PidsLimit < 0 {
		return PoolKey{}, nil, errors.New("negative limit")
	}
	ic, err := r.image(spec.Rootfs)
	if err != nil {
		return PoolKey{}, nil, err
	}
	args := spec.Command
	if len(args) == 0 {
		args = ic.Cmd
	}
	if len(args) == 0 || args[0] == "" {
		return PoolKey{}, nil, errors.New("no command")
	}
	env, err := mergeEnv(ic.Env, spec.Env)
	if err != nil {
		return PoolKey{}, nil, err
	}
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.HostPath) {
			return PoolKey{}, nil, fmt.Errorf("mount host path %q is not absolute", m.HostPath)
		}
		if _, err := slotTarget("/", m.GuestPath); err != nil {
			return PoolKey{}, nil, err
		}
	}
	// The start stub execs the command only once the container is started; a command that is
	// not there is caught here instead, so it fails Create rather than an exit later. The stub
	// execs exactly the file found here.
	path, err := findCommand(filepath.Join(r.cfg.ImagesDir, spec.Rootfs, "rootfs"), args[0], env, spec.Mounts)
	if err != nil {
		return PoolKey{}, nil, err
	}
	startConf, err := startconf.Config{Path: path, Args: args, Env: env, Cwd: "/"}.Encode()
	if err != nil {
		return PoolKey{}, nil, err
	}
	key := PoolKey{Image: spec.Rootfs, MemoryMB: spec.MemoryMB, PidsLimit: spec.PidsLimit}
	// A prestarted command runs before the use's mounts are there: it must be the image's own.
	if spec.Prestart && len(args) == 1 && !slices.ContainsFunc(spec.Mounts, func(m sandbox.Mount) bool {
		rel, err := filepath.Rel(filepath.Clean(m.GuestPath), path)
		return err == nil && !strings.HasPrefix(rel, "..")
	}) {
		key.Prestart = path
	}
	return r.normalise(key), startConf, nil
}

// acquire takes a pooled container or creates one. A pooled container whose init has exited
// (killed while it waited) is destroyed and passed over.
func (r *Runtime) acquire(ctx context.Context, key PoolKey) (*box, error) {
	for r.cfg.PoolSize > 0 {
		var b *box
		select {
		case b = <-r.poolFor(key).ready:
		default:
		}
		if b == nil {
			break
		}
		select {
		case <-b.exited:
			b.discard()
		default:
			return b, nil
		}
	}
	return r.createContainer(ctx, key)
}

// runtime runs the OCI runtime with the backend's root and returns its standard output; a
// failure's error carries what it wrote on standard error.
func (r *Runtime) runtime(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, r.bin, append([]string{"--root", r.cfg.RuntimeRoot}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return bytes.TrimSpace(out), fmt.Errorf("%s %s: %w: %s", filepath.Base(r.bin), args[0], err, bytes.TrimSpace(stderr.Bytes()))
	}
	return bytes.TrimSpace(out), nil
}

// proxySocketName is the action proxy's socket in the bundle directory, outside the slot: the
// container gets the listening socket itself (descriptor 3), never its path, so it can neither
// unlink nor replace it.
const proxySocketName = "proxy.sock"

// maxSocketPath is the longest unix socket path (sun_path less its NUL).
const maxSocketPath = 107

// createContainer makes one container: bundle, shared slot, the proxy socket, `runc create`
// with our pipes and the socket as descriptor 3.
func (r *Runtime) createContainer(ctx context.Context, key PoolKey) (_ *box, err error) {
	if _, err := r.image(key.Image); err != nil {
		return nil, fmt.Errorf("%w: %w", sandbox.ErrStartFailed, err)
	}
	id := fmt.Sprintf("%s%s_%d", r.cfg.IDPrefix, r.run, r.seq.Add(1))
	b := &box{rt: r, id: id, name: id, key: key, bundle: filepath.Join(r.cfg.StateDir, id), exited: make(chan struct{})}
	b.slot = filepath.Join(b.bundle, "slot")
	b.proxySocket = filepath.Join(b.bundle, proxySocketName)
	defer func() {
		if err != nil {
			_ = b.removeFiles() // best effort: the error being returned is the one to report
		}
	}()
	if err := os.MkdirAll(b.slot, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", sandbox.ErrStartFailed, err)
	}
	// What a use would otherwise create on the request path, made now: the mount points, and
	// the start configuration's file, kept open so that a use only writes it.
	for _, g := range r.cfg.MountPoints {
		target, _ := slotTarget(b.slot, g) // checked by withDefaults
		if err := os.MkdirAll(target, 0o755); err != nil {
			return nil, fmt.Errorf("%w: mount point: %w", sandbox.ErrStartFailed, err)
		}
	}
	b.startConf, err = os.OpenFile(filepath.Join(b.slot, StartConfigName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%w: start configuration: %w", sandbox.ErrStartFailed, err)
	}
	// The slot must be a shared mount so later mounts below it propagate into the container.
	if err := unix.Mount(b.slot, b.slot, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("%w: bind the slot: %w", sandbox.ErrStartFailed, err)
	}
	b.slotMounted = true
	if err := unix.Mount("", b.slot, "", unix.MS_SHARED, ""); err != nil {
		return nil, fmt.Errorf("%w: share the slot: %w", sandbox.ErrStartFailed, err)
	}
	spec, err := buildSpec(containerParams{ID: id, Rootfs: filepath.Join(r.cfg.ImagesDir, key.Image, "rootfs"), Slot: b.slot,
		Cgroup: filepath.Join(r.cfg.CgroupParent, id), MemoryMB: key.MemoryMB, PidsLimit: key.PidsLimit, TmpMB: r.cfg.TmpMB,
		Prestart: key.Prestart})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", sandbox.ErrStartFailed, err)
	}
	b.cgroup = spec.Linux.CgroupsPath
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", sandbox.ErrStartFailed, err)
	}
	if err := os.WriteFile(filepath.Join(b.bundle, "config.json"), js, 0o600); err != nil {
		return nil, fmt.Errorf("%w: %w", sandbox.ErrStartFailed, err)
	}
	// Bound and listening now, off the request path: a client's connect succeeds at once and
	// waits in the backlog until the action proxy accepts, so nobody polls for readiness.
	listener, err := listenProxy(b.proxySocket)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", sandbox.ErrStartFailed, err)
	}
	// Only the container keeps the socket: once runc create has handed it over, the host's copy
	// is closed, so a container that dies closes the socket and a connect fails at once instead
	// of waiting in a backlog nobody accepts from.
	defer closeAll(listener)
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", sandbox.ErrStartFailed, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW)
		return nil, fmt.Errorf("%w: %w", sandbox.ErrStartFailed, err)
	}
	if r.kind == kindLaunch {
		if err := r.launch(b, spec, listener, outW, errW); err != nil {
			closeAll(outW, errW)
			diag := readDiag(errR)
			closeAll(outR, errR)
			return nil, fmt.Errorf("%w: %w: %s", sandbox.ErrStartFailed, err, diag)
		}
		closeAll(outW, errW)
		b.stdout, b.stderr = outR, errR
		if key.Prestart != "" {
			if err := b.startLaunched(); err != nil {
				b.killLaunched()
				closeAll(outR, errR)
				return nil, fmt.Errorf("%w: prestart: %w", sandbox.ErrStartFailed, err)
			}
		}
	} else if err := r.createWithRuntime(ctx, b, listener, outR, outW, errR, errW); err != nil {
		return nil, err
	}
	pid, fd := b.pid, b.pidfd
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		closeAll(outR, errR)
		if r.kind == kindLaunch {
			b.killLaunched()
		} else {
			_ = unix.Close(fd)                                                    // ours, never used
			_, _ = r.runtime(context.WithoutCancel(ctx), "delete", "--force", id) // best effort
		}
		return nil, fmt.Errorf("%w: the backend is closed", sandbox.ErrUnavailable)
	}
	r.live[id] = b
	r.mu.Unlock()
	go b.watch(fd)
	// The init inherited the refill's low priority; the activation it becomes must not. It
	// waits on the exec FIFO now, so raising it back costs nothing on the request path.
	if err := renice(pid, 0); err != nil {
		r.log.Warn("resetting the priority of a pooled container failed", zap.String("id", id), zap.Error(err))
	}
	return b, nil
}

// createWithRuntime runs `<runtime> create` for a container whose bundle is ready, hands it the
// listener and the pipes' write ends, and sets the box's pid, pidfd and streams.
func (r *Runtime) createWithRuntime(ctx context.Context, b *box, listener, outR, outW, errR, errW *os.File) error {
	id := b.id
	pidFile := filepath.Join(b.bundle, "pid")
	logFile := filepath.Join(b.bundle, "runtime.log")
	cmd := exec.CommandContext(ctx, r.bin, "--root", r.cfg.RuntimeRoot, "--log", logFile, "create", "--bundle", b.bundle,
		"--pid-file", pidFile, "--preserve-fds", "1", id)
	cmd.ExtraFiles = []*os.File{listener} // descriptor 3 in runc, then in the container's init
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var diag bytes.Buffer
	// runc passes its stdio to the container's process (terminal false, detached): the
	// container writes straight into our pipes. runc's own messages go to its --log file, so
	// they never mix with the activation's output; a failed create is read back from both.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, outW, errW
	cmd.WaitDelay = time.Second
	// A refill runs on a thread of lower priority (see refill): runc create, forked from it,
	// and everything runc forks inherit that priority, every thread of them from the start.
	runErr := cmd.Run()
	closeAll(outW, errW)
	if runErr != nil {
		// Read what runc said (the container does not exist, so the pipe ends here).
		_ = errR.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = io.Copy(&diag, io.LimitReader(errR, 4096)) // diagnosis only: what was read is kept
		closeAll(outR, errR)
		if lb, err := os.ReadFile(logFile); err == nil {
			diag.Write(lastBytes(lb, 2048))
		}
		// Best effort, as below: the failed start's error is the one to report.
		_, _ = r.runtime(context.WithoutCancel(ctx), "delete", "--force", id)
		return fmt.Errorf("%w: runc create: %w: %s", sandbox.ErrStartFailed, runErr, bytes.TrimSpace(diag.Bytes()))
	}
	b.stdout, b.stderr = outR, errR
	pb, err := os.ReadFile(pidFile)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(pb)))
	if err != nil || perr != nil || pid <= 0 {
		closeAll(outR, errR)
		_, _ = r.runtime(context.WithoutCancel(ctx), "delete", "--force", id) // best effort
		return fmt.Errorf("%w: container pid: %w", sandbox.ErrStartFailed, errors.Join(err, perr))
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		closeAll(outR, errR)
		_, _ = r.runtime(context.WithoutCancel(ctx), "delete", "--force", id) // best effort
		return fmt.Errorf("%w: pidfd of %d: %w", sandbox.ErrStartFailed, pid, err)
	}
	b.pid, b.pidfd = pid, fd
	return nil
}

// readDiag reads what a failed container creation wrote on its standard error.
func readDiag(errR *os.File) string {
	var diag bytes.Buffer
	// Without a deadline (a pipe the poller cannot take) the read ends at the end of file, which
	// comes: the container does not exist, so nobody holds the write end.
	_ = errR.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = io.Copy(&diag, io.LimitReader(errR, 4096)) // diagnosis only: what was read is kept
	return string(bytes.TrimSpace(diag.Bytes()))
}

// renice sets the nice value of every thread of pid (a priority is per thread on Linux).
func renice(pid, nice int) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return fmt.Errorf("renice %d: %w", pid, err)
	}
	var errs []error
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("renice thread %d: %w", tid, err))
		}
	}
	return errors.Join(errs...)
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close() // pipe ends of our own; nothing to do about a close error
	}
}

// pool keeps created containers for one key.
type pool struct {
	ready chan *box
}

// poolFor returns the key's pool, starting its refiller on first use.
func (r *Runtime) poolFor(key PoolKey) *pool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.pools[key]; ok {
		return p
	}
	p := &pool{ready: make(chan *box, r.cfg.PoolSize)}
	r.pools[key] = p
	if r.closed {
		return p
	}
	for range r.cfg.RefillWorkers {
		r.wg.Add(1)
		go r.refill(key, p)
	}
	return p
}

// refillNice is the nice value of pool refills while the pool has containers ready.
const refillNice = 10

// refillPriority is the nice value of the next refill: low while the pool has containers ready,
// normal once it ran dry, when activations are waiting on (or about to pay for) a create anyway
// and a starved refill would only make more of them pay.
func refillPriority(ready int) int {
	if ready == 0 {
		return 0
	}
	return refillNice
}

// refill keeps the pool full: it blocks while the pool is full and creates a container as soon
// as one is taken. Failures back off, so a broken image does not spin.
func (r *Runtime) refill(key PoolKey, p *pool) {
	defer r.wg.Done()
	// Refills must not compete with activations for the CPU: this goroutine keeps a thread of
	// its own at a lower priority (see refillPriority), and the processes it forks (runc create,
	// the container's init) inherit it. The thread ends with the goroutine (still locked), so
	// the priority never leaks to other goroutines.
	runtime.LockOSThread()
	tid, nice := unix.Gettid(), 0
	adjust := func() {
		if want := refillPriority(len(p.ready)); want != nice {
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, want); err != nil {
				r.log.Warn("setting the priority of the pool refill failed", zap.Int("nice", want), zap.Error(err))
			} else {
				nice = want
			}
		}
	}
	sandbox.Refill(r.ctx, p.ready, func() (*box, error) { return r.createContainer(r.ctx, key) }, (*box).discard,
		func(err error) {
			r.log.Warn("refilling the container pool failed", zap.String("image", key.Image), zap.Int("memory_mb", key.MemoryMB), zap.Error(err))
		}, adjust)
}

// Reap deletes every container of the runtime root that carries the id prefix and is not this
// Runtime's (runc delete --force: the container's processes are killed first), removes the bundle
// directories left without one (their mounts detached first) and the cgroups of the containers
// it found; with Config.OwnCgroupParent, every cgroup below the parent that is not this
// Runtime's. Ids of this Runtime carry its run nonce, containers still being created included,
// so it may run while the pools fill.
func (r *Runtime) Reap(ctx context.Context) (sandbox.Reaped, error) {
	var got sandbox.Reaped
	prefix := r.cfg.IDPrefix
	ours := prefix + r.run + "_"
	leftover := func(id string) bool { return strings.HasPrefix(id, prefix) && !strings.HasPrefix(id, ours) }
	var errs []error
	cgroups := map[string]bool{} // leftover container ids, whose cgroups go too
	if r.kind == kindLaunch {
		// The launcher's containers are known by their records: killing a leftover init ends
		// its pid namespace, everything in it.
		recs, err := reap.Records(r.recordDir())
		if err != nil {
			errs = append(errs, err)
		}
		for _, rec := range recs {
			if leftover(rec.Name) {
				cgroups[rec.Name] = true
			}
		}
		n, err := reap.Kill(r.recordDir(), func(name string) bool { return !leftover(name) })
		got.Containers += n
		if err != nil {
			errs = append(errs, fmt.Errorf("reap launched sandboxes: %w", err))
		}
	} else {
		ids, err := r.containerIDs(ctx)
		if err != nil {
			return got, fmt.Errorf("reap oci sandboxes: %w", err)
		}
		for _, id := range ids {
			if !leftover(id) {
				continue
			}
			cgroups[id] = true
			if _, err := r.runtime(ctx, "delete", "--force", id); err != nil {
				errs = append(errs, fmt.Errorf("delete leftover container %s: %w", id, err))
				continue
			}
			got.Containers++
		}
	}
	entries, err := os.ReadDir(r.cfg.StateDir)
	if err != nil {
		errs = append(errs, fmt.Errorf("reap oci sandboxes: %w", err))
	}
	for _, e := range entries {
		if !e.IsDir() || !leftover(e.Name()) {
			continue
		}
		cgroups[e.Name()] = true
		n, err := reap.RemoveTree(filepath.Join(r.cfg.StateDir, e.Name()))
		got.Mounts += n
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got.Files++
	}
	if r.cfg.OwnCgroupParent {
		names, err := reap.CgroupChildren(r.cfg.CgroupParent)
		if err != nil {
			errs = append(errs, err)
		}
		for _, n := range names {
			if !strings.HasPrefix(n, ours) {
				cgroups[n] = true
			}
		}
	}
	for id := range cgroups {
		n, err := reap.RemoveCgroup(filepath.Join(r.cfg.CgroupParent, id))
		got.Cgroups += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return got, errors.Join(errs...)
}

// containerIDs lists the containers of the runtime's root (`runc list`), or the recorded ones of
// the launcher, this Runtime's and any leftovers.
func (r *Runtime) containerIDs(ctx context.Context) ([]string, error) {
	var ids []string
	if r.kind == kindLaunch {
		recs, err := reap.Records(r.recordDir())
		for _, rec := range recs {
			if rec.Pid > 0 && rec.Alive() {
				ids = append(ids, rec.Name)
			}
		}
		return ids, err
	}
	out, err := r.runtime(ctx, "list", "--format", "json")
	if err != nil {
		return nil, err
	}
	var list []struct {
		ID string `json:"id"`
	}
	if len(out) > 0 && string(out) != "null" {
		if err := json.Unmarshal(out, &list); err != nil {
			return nil, fmt.Errorf("%s list output: %w", filepath.Base(r.bin), err)
		}
	}
	for _, c := range list {
		ids = append(ids, c.ID)
	}
	return ids, nil
}

// Close stops the refillers and deletes every container of this runtime, pooled or live.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	r.mu.Lock()
	boxes := make([]*box, 0, len(r.live))
	for _, b := range r.live {
		boxes = append(boxes, b)
	}
	r.mu.Unlock()
	var errs []error
	for _, b := range boxes {
		if err := b.Destroy(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if r.devNull != nil {
		closeAll(r.devNull)
	}
	if r.cfg.OwnCgroupParent {
		// runc leaves a container's cgroup behind when its processes were still leaving; the
		// parent is this Runtime's alone, so everything below it goes now.
		if _, err := reap.RemoveCgroup(r.cfg.CgroupParent); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func sortStrings(s []string) { sort.Strings(s) }

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// findCommand returns the guest path of cmd after checking that it is an executable file of the
// image (or of a per-use mount), searching PATH from env for a bare name as execvp does.
func findCommand(rootfs, cmd string, env []string, mounts []sandbox.Mount) (string, error) {
	candidates := []string{cmd}
	if !strings.Contains(cmd, "/") {
		candidates = nil
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				for _, d := range filepath.SplitList(v) {
					candidates = append(candidates, filepath.Join(d, cmd))
				}
			}
		}
	}
	for _, c := range candidates {
		if !filepath.IsAbs(c) {
			continue
		}
		host := filepath.Join(rootfs, c)
		for _, m := range mounts {
			if rel, err := filepath.Rel(filepath.Clean(m.GuestPath), c); err == nil && !strings.HasPrefix(rel, "..") {
				host = filepath.Join(m.HostPath, rel)
			}
		}
		if st, err := os.Stat(host); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return filepath.Clean(c), nil
		}
	}
	return "", fmt.Errorf("command %q is not an executable file in the image", cmd)
}
