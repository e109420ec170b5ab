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
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/teemate/platform/invoker/internal/sandbox"
)

// Config configures the backend.
type Config struct {
	// Runtime is the OCI runtime binary: "runc" (default) or "crun", or a path to one.
	Runtime string
	// ImagesDir holds the images deploy/images/build.sh made: <ImagesDir>/<image>/rootfs and
	// image.json. Required.
	ImagesDir string
	// StateDir holds one bundle directory per container and, by default, the runtime's state
	// (--root). Required; keep it short, unix socket paths below it are limited to 107 bytes.
	StateDir string
	// RuntimeRoot is the runtime's --root; StateDir/runtime by default. A root of its own means
	// `runc list` shows this backend's containers only.
	RuntimeRoot string
	// IDPrefix starts every container id. Use the invoker's OpenWhisk prefix (wsk{N}_) so
	// Cleanup(prefix) also finds pooled containers of a crashed run. "wsk_" by default.
	IDPrefix string
	// CgroupParent is the cgroup below which each container gets its own ("/teemate").
	CgroupParent string
	// PoolSize is how many created containers each pool key keeps ready (2 by default; 0 keeps
	// the default, negative disables pooling: every Create pays for the create).
	PoolSize int
	// Prewarm lists pool keys to fill at New, before the first request.
	Prewarm []PoolKey
	// DefaultPidsLimit applies when Spec.PidsLimit is 0 (1024 by default, as OpenWhisk).
	DefaultPidsLimit int
	// TmpMB sizes each container's /tmp tmpfs (64 by default); it counts toward the memory limit.
	TmpMB int
}

// PoolKey is what a pooled container is created for.
type PoolKey struct {
	Image     string
	MemoryMB  int
	PidsLimit int
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
	if c.DefaultPidsLimit <= 0 {
		c.DefaultPidsLimit = 1024
	}
	if c.TmpMB <= 0 {
		c.TmpMB = 64
	}
	return c, nil
}

// Runtime is the oci backend.
type Runtime struct {
	cfg    Config
	bin    string
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
		return nil, fmt.Errorf("oci sandbox backend: %w: %w (apt-get install runc)", sandbox.ErrUnavailable, err)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("oci sandbox backend: %w: needs root (cgroups, mounts)", sandbox.ErrUnavailable)
	}
	if filepath.Base(bin) == "crun" {
		if reason := crunBlocked(); reason != "" {
			return nil, fmt.Errorf("oci sandbox backend: %w: %s", sandbox.ErrUnavailable, reason)
		}
	}
	for _, d := range []string{cfg.StateDir, cfg.RuntimeRoot} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("oci sandbox backend: %w: %w", sandbox.ErrUnavailable, err)
		}
	}
	if !filepath.IsAbs(cfg.StateDir) || !filepath.IsAbs(cfg.ImagesDir) {
		return nil, fmt.Errorf("oci sandbox backend: %w: ImagesDir and StateDir must be absolute", sandbox.ErrUnavailable)
	}
	var nonce [3]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("oci sandbox backend: %w: %w", sandbox.ErrUnavailable, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runtime{cfg: cfg, bin: bin, log: log, run: hex.EncodeToString(nonce[:]), ctx: ctx, cancel: cancel,
		pools: map[PoolKey]*pool{}, live: map[string]*box{}, images: map[string]imageConfig{}}
	for _, k := range cfg.Prewarm {
		if _, err := r.image(k.Image); err != nil {
			cancel()
			return nil, fmt.Errorf("oci sandbox backend: %w: prewarm: %w", sandbox.ErrUnavailable, err)
		}
		r.poolFor(r.normalise(k))
	}
	log.Info("oci sandbox backend ready", zap.String("runtime", bin), zap.String("state", cfg.StateDir),
		zap.Int("pool_size", cfg.PoolSize))
	return r, nil
}

// crunBlocked explains why crun cannot run here, or returns "".
func crunBlocked() string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == "/sys/fs/cgroup/unified" && strings.Contains(line, " - cgroup2 ") {
			return "crun refuses this hybrid cgroup host (cgroup2 at /sys/fs/cgroup/unified); run the invoker in a " +
				"private mount namespace with it unmounted (unshare -m sh -c 'umount /sys/fs/cgroup/unified; exec ...') or use runc"
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
	if !namePattern.MatchString(spec.Name) {
		return nil, fmt.Errorf("%s: %w: name must be letters, digits and '_'", what, sandbox.ErrStartFailed)
	}
	if spec.Network {
		return nil, fmt.Errorf("%s: %w: the oci backend has no container networking yet (loopback only)", what, sandbox.ErrStartFailed)
	}
	if spec.MemoryMB < 0 || spec.PidsLimit < 0 {
		return nil, fmt.Errorf("%s: %w: negative limit", what, sandbox.ErrStartFailed)
	}
	ic, err := r.image(spec.Image)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
	}
	args := spec.Command
	if len(args) == 0 {
		args = ic.Cmd
	}
	if len(args) == 0 || args[0] == "" {
		return nil, fmt.Errorf("%s: %w: no command", what, sandbox.ErrStartFailed)
	}
	env, err := mergeEnv(ic.Env, spec.Env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
	}
	// The start stub execs the command only after `runc start` returned; a command that is not
	// there is caught here instead, so it fails Create rather than an exit later.
	if err := findCommand(filepath.Join(r.cfg.ImagesDir, spec.Image, "rootfs"), args[0], env, spec.Mounts); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
	}
	startJSON, err := json.Marshal(startConfig{Args: args, Env: env, Cwd: "/"})
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
	}
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.HostPath) {
			return nil, fmt.Errorf("%s: %w: mount host path %q is not absolute", what, sandbox.ErrStartFailed, m.HostPath)
		}
		if _, err := slotTarget("/", m.GuestPath); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
		}
	}

	key := r.normalise(PoolKey{Image: spec.Image, MemoryMB: spec.MemoryMB, PidsLimit: spec.PidsLimit})
	b, err := r.acquire(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	b.name, b.proxySocket = spec.Name, spec.ProxySocket
	if err := b.prepare(spec.Mounts, startJSON); err != nil {
		b.discard()
		return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
	}
	if _, err := r.runtime(ctx, "start", b.id); err != nil {
		b.discard()
		return nil, fmt.Errorf("%s: %w: %w", what, sandbox.ErrStartFailed, err)
	}
	b.started.Store(true)
	return b, nil
}

// acquire takes a pooled container or creates one.
func (r *Runtime) acquire(ctx context.Context, key PoolKey) (*box, error) {
	if r.cfg.PoolSize > 0 {
		p := r.poolFor(key)
		select {
		case b := <-p.ready:
			return b, nil
		default:
		}
	}
	return r.createContainer(ctx, key, false)
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

// createContainer makes one container: bundle, shared slot, `runc create` with our pipes.
func (r *Runtime) createContainer(ctx context.Context, key PoolKey, background bool) (_ *box, err error) {
	if _, err := r.image(key.Image); err != nil {
		return nil, fmt.Errorf("%w: %w", sandbox.ErrStartFailed, err)
	}
	id := fmt.Sprintf("%s%s_%d", r.cfg.IDPrefix, r.run, r.seq.Add(1))
	b := &box{rt: r, id: id, name: id, key: key, bundle: filepath.Join(r.cfg.StateDir, id), exited: make(chan struct{})}
	b.slot = filepath.Join(b.bundle, "slot")
	defer func() {
		if err != nil {
			b.removeFiles()
		}
	}()
	if err := os.MkdirAll(b.slot, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", sandbox.ErrStartFailed, err)
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
		Cgroup: filepath.Join(r.cfg.CgroupParent, id), MemoryMB: key.MemoryMB, PidsLimit: key.PidsLimit, TmpMB: r.cfg.TmpMB})
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
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", sandbox.ErrStartFailed, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		closeAll(outR, outW)
		return nil, fmt.Errorf("%w: %w", sandbox.ErrStartFailed, err)
	}
	pidFile := filepath.Join(b.bundle, "pid")
	logFile := filepath.Join(b.bundle, "runtime.log")
	cmd := exec.CommandContext(ctx, r.bin, "--root", r.cfg.RuntimeRoot, "--log", logFile, "create", "--bundle", b.bundle, "--pid-file", pidFile, id)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var diag bytes.Buffer
	// runc passes its stdio to the container's process (terminal false, detached): the
	// container writes straight into our pipes. runc's own messages go to its --log file, so
	// they never mix with the activation's output; a failed create is read back from both.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, outW, errW
	cmd.WaitDelay = time.Second
	runErr := cmd.Start()
	if runErr == nil {
		if background {
			// Pool refills must not compete with activations for the CPU: runc create (and the
			// init it forks afterwards, which inherits this) runs at a lower priority.
			_ = unix.Setpriority(unix.PRIO_PROCESS, cmd.Process.Pid, 10) // best effort
		}
		runErr = cmd.Wait()
	}
	closeAll(outW, errW)
	if runErr != nil {
		// Read what runc said (the container does not exist, so the pipe ends here).
		_ = errR.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = io.Copy(&diag, io.LimitReader(errR, 4096))
		closeAll(outR, errR)
		if lb, err := os.ReadFile(logFile); err == nil {
			diag.Write(lastBytes(lb, 2048))
		}
		_, _ = r.runtime(context.WithoutCancel(ctx), "delete", "--force", id)
		return nil, fmt.Errorf("%w: runc create: %w: %s", sandbox.ErrStartFailed, runErr, bytes.TrimSpace(diag.Bytes()))
	}
	b.stdout, b.stderr = outR, errR
	pb, err := os.ReadFile(pidFile)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(pb)))
	if err != nil || perr != nil || pid <= 0 {
		closeAll(outR, errR)
		_, _ = r.runtime(context.WithoutCancel(ctx), "delete", "--force", id)
		return nil, fmt.Errorf("%w: container pid: %w", sandbox.ErrStartFailed, errors.Join(err, perr))
	}
	b.pid = pid
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		closeAll(outR, errR)
		_, _ = r.runtime(context.WithoutCancel(ctx), "delete", "--force", id)
		return nil, fmt.Errorf("%w: pidfd of %d: %w", sandbox.ErrStartFailed, pid, err)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		_ = unix.Close(fd)
		closeAll(outR, errR)
		_, _ = r.runtime(context.WithoutCancel(ctx), "delete", "--force", id)
		return nil, fmt.Errorf("%w: the backend is closed", sandbox.ErrUnavailable)
	}
	r.live[id] = b
	r.mu.Unlock()
	b.pidfd = fd
	go b.watch(fd)
	return b, nil
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
	r.wg.Add(1)
	go r.refill(key, p)
	return p
}

// refill keeps the pool full: it blocks while the pool is full and creates a container as soon
// as one is taken. Failures back off, so a broken image does not spin.
func (r *Runtime) refill(key PoolKey, p *pool) {
	defer r.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		b, err := r.createContainer(r.ctx, key, true)
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			r.log.Warn("refilling the container pool failed", zap.String("image", key.Image), zap.Int("memory_mb", key.MemoryMB), zap.Error(err))
			select {
			case <-r.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		select {
		case p.ready <- b:
		case <-r.ctx.Done():
			b.discard()
			return
		}
	}
}

// Cleanup deletes every container of the runtime root whose id starts with prefix and that this
// Runtime does not own, and removes bundle directories left without a container.
func (r *Runtime) Cleanup(ctx context.Context, prefix string) error {
	if prefix == "" {
		return errors.New("cleanup oci sandboxes: an empty prefix would match every container")
	}
	out, err := r.runtime(ctx, "list", "--format", "json")
	if err != nil {
		return fmt.Errorf("cleanup oci sandboxes: %w", err)
	}
	var list []struct {
		ID string `json:"id"`
	}
	if len(out) > 0 && string(out) != "null" {
		if err := json.Unmarshal(out, &list); err != nil {
			return fmt.Errorf("cleanup oci sandboxes: runc list output: %w", err)
		}
	}
	// Every id of this Runtime carries its run nonce, including containers still being created
	// (not yet tracked): none of them is a leftover.
	ours := r.cfg.IDPrefix + r.run + "_"
	mine := func(id string) bool { return strings.HasPrefix(id, ours) }
	var errs []error
	n := 0
	for _, c := range list {
		if !strings.HasPrefix(c.ID, prefix) || mine(c.ID) {
			continue
		}
		if _, err := r.runtime(ctx, "delete", "--force", c.ID); err != nil {
			errs = append(errs, fmt.Errorf("delete leftover container %s: %w", c.ID, err))
			continue
		}
		n++
	}
	entries, err := os.ReadDir(r.cfg.StateDir)
	if err != nil {
		errs = append(errs, fmt.Errorf("cleanup oci sandboxes: %w", err))
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) || mine(e.Name()) {
			continue
		}
		lb := &box{bundle: filepath.Join(r.cfg.StateDir, e.Name())}
		lb.slot = filepath.Join(lb.bundle, "slot")
		lb.slotMounted = true
		if err := lb.removeFiles(); err != nil {
			errs = append(errs, err)
		}
	}
	if n > 0 {
		r.log.Info("deleted leftover containers", zap.String("prefix", prefix), zap.Int("count", n))
	}
	return errors.Join(errs...)
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
	return errors.Join(errs...)
}

func sortStrings(s []string) { sort.Strings(s) }

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// findCommand checks that cmd is an executable file of the image (or of a per-use mount),
// searching PATH from env for a bare name as execve's callers do.
func findCommand(rootfs, cmd string, env []string, mounts []sandbox.Mount) error {
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
			return nil
		}
	}
	return fmt.Errorf("command %q is not an executable file in the image", cmd)
}
