package direct

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/credentials"
	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/confine"
	"github.com/teemate/platform/invoker/internal/enclave/ownerproc"
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
	// Env is the owner's whole environment; by default PATH and HOME of the invoker and
	// OwnerMallocArenas.
	Env []string

	// Confine confines every owner (package confine) when the invoker runs as root, which is the
	// default. Launcher defaults to bin/teemate-confine of the repository OwnerJS lives in; the
	// runtime's files (OwnerJS's directory, enclave-runtime/, node-isolate-patch/build/) are added
	// to ReadOnly.
	Confine confine.Config
	// UnsafeOwnerAsRoot runs owners unconfined although the invoker is root: an escape from an
	// isolate is then host root. Without it, New refuses to start owners as root unconfined.
	UnsafeOwnerAsRoot bool
	// Lockdown is the owner's post-start lockdown (enclave-runtime/trusted/lockdown.js):
	// "seccomp" (execve forbidden once the owner runs; the default when the lockdown addon is
	// built) or "none".
	Lockdown string
	// OpenGate starts owners without a gate key: then any process that reaches the gate socket may
	// attach and run code under any namespace. Only for tests of the gate protocol itself (the
	// shims' tests against a real owner); the invoker never sets it, and New warns when it is set.
	OpenGate bool
	// KeyDir keeps the image keys across owner restarts: the sealing key (KeyDir/sealing.key, made
	// on first use, 0600) and one directory per image (KeyDir/images/NAME, private to the owners of
	// that image) where an owner seals its image key (owner.js --key-dir). Empty: an owner's image
	// key lives in its memory only, and a restarted owner comes back with a new one.
	KeyDir string
	// RecordDir keeps a record of every running owner (ownerproc.Options.RecordDir), so that an
	// invoker restarted after a crash kills the owners its predecessor left. Empty: none.
	RecordDir string
}

// Backend starts owners as local Node processes.
type Backend struct {
	cfg Config
	log *zap.Logger
	// confined: owners run under the launcher (cfg.Confine has passed Check).
	confined bool
	// denyHosts are the host's own addresses, passed as --deny-hosts.
	denyHosts []string
	// denyAuto: the owner's unreachable addresses are the host's own, read at each start (an
	// interface may have come up since, e.g. docker0).
	denyAuto bool
	// sealingKey (hex) seals the image keys in KeyDir; empty without KeyDir. Direct mode has no
	// hardware sealing key: this one is the host's, so sealing here keeps the key across restarts
	// and from other users of the host, not from the host (the evidence says simulated).
	sealingKey string
}

// Lockdown modes (Config.Lockdown).
const (
	LockdownSeccomp = "seccomp"
	LockdownNone    = "none"
)

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
	if cfg.OpenGate {
		log.Warn("UNSAFE: owners start without a gate key: any local process may attach to them (OpenGate, for tests only)")
	}
	b := &Backend{cfg: cfg, log: log}
	if err := b.setupConfinement(); err != nil {
		return nil, fmt.Errorf("direct enclave backend: %w", err)
	}
	if cfg.KeyDir != "" {
		dir, err := filepath.Abs(cfg.KeyDir)
		if err != nil {
			return nil, fmt.Errorf("direct enclave backend: key dir: %w", err)
		}
		b.cfg.KeyDir = dir
		if _, err := credentials.PrivateDir(dir, "images"); err != nil {
			return nil, fmt.Errorf("direct enclave backend: key dir: %w", err)
		}
		key, created, err := credentials.Secret(filepath.Join(dir, "sealing.key"))
		if err != nil {
			return nil, fmt.Errorf("direct enclave backend: sealing key: %w", err)
		}
		if _, err := hex.DecodeString(key); err != nil || len(key) != 64 {
			return nil, fmt.Errorf("direct enclave backend: sealing key %s: want 64 hex digits", filepath.Join(dir, "sealing.key"))
		}
		if created {
			log.Info("made the sealing key of the image keys", zap.String("file", filepath.Join(dir, "sealing.key")))
		}
		b.sealingKey = key
	}
	return b, nil
}

// setupConfinement decides how owners run: confined (root, the default), as root unconfined (only
// with UnsafeOwnerAsRoot), or as the invoker's own unprivileged user; and whether the lockdown
// applies.
func (b *Backend) setupConfinement() error {
	cfg := &b.cfg
	trusted := filepath.Dir(cfg.OwnerJS)
	repo := filepath.Dir(filepath.Dir(trusted))
	lockdownJS := filepath.Join(trusted, "lockdown.js")
	addon := filepath.Join(repo, "node-isolate-patch", "build", "teemate_lockdown.node")
	lockdownReady := fileExists(lockdownJS) && fileExists(addon)
	switch {
	case os.Geteuid() != 0:
		b.log.Warn("the invoker is not root: owners run as its own user, without namespaces, a private "+
			"root or a dropped capability set (confinement needs root)", zap.Int("uid", os.Geteuid()))
	case cfg.UnsafeOwnerAsRoot:
		b.log.Warn("UNSAFE: owners run as root without confinement (--unsafe-owner-as-root): an escape " +
			"from an isolate is host root")
	default:
		if cfg.Confine.Launcher == "" {
			cfg.Confine.Launcher = filepath.Join(repo, "bin", "teemate-confine")
		}
		cfg.Confine.ReadOnly = append(cfg.Confine.ReadOnly, trusted)
		for _, p := range []string{filepath.Join(repo, "enclave-runtime"), filepath.Join(repo, "node-isolate-patch", "build")} {
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				cfg.Confine.ReadOnly = append(cfg.Confine.ReadOnly, p)
			}
		}
		// The jail sees the system directories only: node is exec'd by its real path, and bound
		// on its own when that lies elsewhere (e.g. a version manager's install).
		node, err := filepath.EvalSymlinks(cfg.Node)
		if err != nil {
			return fmt.Errorf("%w: node: %w", confine.ErrConfine, err)
		}
		if node, err = filepath.Abs(node); err != nil {
			return fmt.Errorf("%w: node: %w", confine.ErrConfine, err)
		}
		cfg.Node = node
		if !underSystemDirs(cfg.Node) {
			cfg.Confine.ReadOnly = append(cfg.Confine.ReadOnly, cfg.Node)
		}
		if err := cfg.Confine.Check(); err != nil {
			return fmt.Errorf("%w; refusing to run owners as root unconfined (--unsafe-owner-as-root allows it)", err)
		}
		b.confined = true
		if cfg.Confine.Pasta != "-" {
			if _, err := exec.LookPath(orDefault(cfg.Confine.Pasta, "pasta")); err != nil {
				b.log.Warn("pasta (Debian package passt) is not installed: owners have NO network egress, "+
					"not even to the egress allow-list", zap.Error(err))
				cfg.Confine.Pasta = "-"
			}
		}
		hosts, err := confine.HostAddrs()
		if err != nil {
			return err
		}
		b.denyHosts = hosts
		b.denyAuto = cfg.Confine.DenyAddrs == nil
	}
	switch cfg.Lockdown {
	case "":
		cfg.Lockdown = LockdownNone
		if lockdownReady {
			cfg.Lockdown = LockdownSeccomp
		} else if b.confined {
			return fmt.Errorf("%w: the owner lockdown needs %s and %s (run make build)", confine.ErrConfine, lockdownJS, addon)
		} else {
			b.log.Warn("owner lockdown unavailable (run make build): owners may execute programs", zap.String("addon", addon))
		}
	case LockdownSeccomp:
		if !lockdownReady {
			return fmt.Errorf("%w: the owner lockdown needs %s and %s (run make build)", confine.ErrConfine, lockdownJS, addon)
		}
	case LockdownNone:
	default:
		return fmt.Errorf("lockdown %q: want seccomp or none", cfg.Lockdown)
	}
	b.log.Info("owner confinement", zap.Bool("confined", b.confined), zap.String("lockdown", cfg.Lockdown),
		zap.Int("uid", cfg.Confine.UID), zap.Int("gid", cfg.Confine.GID),
		zap.Stringers("egress_allow", cfg.Confine.EgressAllow), zap.Bool("egress", b.confined && cfg.Confine.Pasta != "-"))
	return nil
}

func underSystemDirs(p string) bool {
	for _, d := range []string{"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/"} {
		if strings.HasPrefix(p, d) {
			return true
		}
	}
	return false
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
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

// Start launches owner.js for spec and returns once its gate answers a ping (and, confined, once
// its egress is set up).
func (b *Backend) Start(ctx context.Context, spec enclave.StartSpec) (enclave.Owner, error) {
	if spec.ID == "" || spec.Image == "" || spec.Dir == "" || spec.Slots < 1 {
		return nil, fmt.Errorf("start owner: incomplete spec %+v", spec)
	}
	dir, err := filepath.Abs(spec.Dir)
	if err != nil {
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	// The gate key: only the sandbox of an activation gets that activation's token from it.
	var key []byte
	var stdin []string // lines: the gate key, then the sealing key
	if !b.cfg.OpenGate {
		if key, err = gate.NewKey(); err != nil {
			return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
		}
		stdin = append(stdin, hex.EncodeToString(key))
	}
	keyDir, err := b.imageKeyDir(spec.Image)
	if err != nil {
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	if keyDir != "" {
		stdin = append(stdin, b.sealingKey)
	}
	var keyIn *os.File
	if len(stdin) > 0 {
		if keyIn, err = keyPipe(stdin...); err != nil {
			return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
		}
		defer keyIn.Close() // the child has its own copy once started; nothing is left to lose
	}
	var jail *confine.Jail
	if b.confined {
		conf := b.cfg.Confine
		if keyDir != "" {
			conf.ReadWrite = append(slices.Clone(conf.ReadWrite), keyDir)
		}
		if b.denyAuto {
			if conf.DenyAddrs, err = confine.HostAddrs(); err != nil {
				return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
			}
		}
		if jail, err = conf.NewJail(dir); err != nil {
			return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	isolate := spec.Isolate
	if isolate == "" {
		isolate = "auto"
	}
	sock := filepath.Join(dir, "gate.sock")
	// Fresh Buffers are zero-filled: a tenant never sees bytes another tenant's code left in
	// Node's buffer pool.
	args := []string{"--zero-fill-buffers", b.cfg.OwnerJS, "--socket", sock, "--slots", strconv.Itoa(spec.Slots),
		"--image", spec.Image, "--enclave", spec.ID, "--isolate", isolate, "--work-dir", dir}
	scratch := confine.ScratchDir
	if !b.confined {
		scratch = filepath.Join(dir, "scratch")
	}
	allow := make([]string, len(b.cfg.Confine.EgressAllow))
	for i, h := range b.cfg.Confine.EgressAllow {
		allow[i] = h.String()
	}
	// Empty lists are left out (owner.js's default for both is none).
	args = append(args, "--scratch-dir", scratch, "--lockdown", b.cfg.Lockdown)
	if spec.IsolateReuse != "" && spec.IsolateReuse != enclave.IsolateReuseNone {
		if err := enclave.CheckIsolateReuse(spec.IsolateReuse); err != nil {
			return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
		}
		args = append(args, "--isolate-reuse", spec.IsolateReuse)
	}
	if spec.PagePoolMB != nil {
		if err := enclave.CheckPagePool(spec.PagePoolMB); err != nil {
			return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
		}
		args = append(args, "--page-pool-mb", strconv.Itoa(*spec.PagePoolMB))
	}
	if len(allow) > 0 {
		args = append(args, "--egress-allow", strings.Join(allow, ","))
	}
	if len(b.denyHosts) > 0 {
		args = append(args, "--deny-hosts", strings.Join(b.denyHosts, ","))
	}
	if key != nil {
		args = append(args, "--gate-key", "stdin")
	}
	if keyDir != "" {
		args = append(args, "--key-dir", keyDir)
	}
	if spec.KeyMode == enclave.KeyAwait {
		args = append(args, "--key-mode", enclave.KeyAwait)
	}
	var cmd *exec.Cmd
	opts := ownerproc.Options{ID: spec.ID, GateSocket: sock, StopTimeout: b.cfg.StopTimeout, RecordDir: b.cfg.RecordDir,
		Background: spec.Background}
	if jail != nil {
		cmd = jail.Command(b.cfg.Node, args, b.cfg.Env)
		opts.OnExit = jail.Release
	} else {
		cmd = exec.Command(b.cfg.Node, args...)
		cmd.Env = b.cfg.Env
	}
	if keyIn != nil {
		cmd.Stdin = keyIn
	}
	cmd.Stdout = io.Discard // the ready line; readiness is checked with a ping
	log := b.log.With(zap.String("enclave", spec.ID), zap.String("image", spec.Image))
	opts.Log = log
	p, err := ownerproc.Start(cmd, opts)
	if err != nil {
		if jail != nil {
			err = errors.Join(err, jail.Release())
		}
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	o := &owner{Proc: p, key: key}
	sctx, cancel := context.WithTimeout(ctx, b.cfg.StartTimeout)
	defer cancel()
	// pasta's setup (~50 ms to the route, ~100 ms to the forwards here) runs while node boots.
	egressErr := make(chan error, 1)
	if jail != nil && b.cfg.Confine.Pasta != "-" {
		go func() {
			// pasta works for the owner: a prepared owner's pasta starts in its background group.
			_, err := jail.StartEgress(sctx, p.Pid(), func(pastaPid int) {
				if err := p.JoinBackground(pastaPid); err != nil {
					log.Warn("pasta runs at normal CPU priority", zap.Error(err))
				}
			})
			egressErr <- err
		}()
	} else {
		egressErr <- nil
	}
	gateErr := o.WaitGate(sctx)
	if err := errors.Join(gateErr, <-egressErr); err != nil {
		_ = o.Stop(context.Background()) // the start failed; the stop's own error adds nothing
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	log.Info("enclave owner started (direct mode: no SGX, no confidentiality)",
		zap.Int("pid", o.Pid()), zap.String("gate", sock), zap.Int("slots", spec.Slots),
		zap.Bool("confined", jail != nil), zap.String("lockdown", b.cfg.Lockdown))
	return o, nil
}

// imageKeyDir returns the directory of image's sealed key, made private to the image's owners
// (mode 0700, owned by the confined owners' uid:gid), or "" without Config.KeyDir. Every owner of
// the image on this invoker uses the same one, so a restarted owner unseals the key its
// predecessor sealed.
func (b *Backend) imageKeyDir(image string) (string, error) {
	if b.cfg.KeyDir == "" {
		return "", nil
	}
	dir := filepath.Join(b.cfg.KeyDir, "images", imageDirName(image))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("image key dir: %w", err)
	}
	if b.confined {
		if err := os.Chown(dir, b.cfg.Confine.UID, b.cfg.Confine.GID); err != nil {
			return "", fmt.Errorf("image key dir: %w", err)
		}
	}
	return dir, nil
}

// imageDirName names an image's key directory: its letters and digits, then 8 hex digits of its
// hash so that "a:b" and "a-b" do not share one.
func imageDirName(image string) string {
	var b strings.Builder
	for _, r := range image {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' && b.Len() > 0 {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	h := sha256.Sum256([]byte(image))
	return b.String() + "-" + hex.EncodeToString(h[:4])
}

// keyPipe returns the read end of a pipe that holds lines (keys in hex), each with a newline, its
// write end closed: the owner reads them from its standard input at start (owner.js --gate-key
// stdin, then the sealing key of --key-dir). Not the environment: its original block stays
// readable in /proc/PID/environ for the owner's life.
func keyPipe(lines ...string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("gate key pipe: %w", err)
	}
	_, err = w.WriteString(strings.Join(lines, "\n") + "\n") // at most 130 bytes: far below the pipe's buffer
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("gate key pipe: %w", err), r.Close())
	}
	return r, nil
}

// owner is a direct owner: the process handling of ownerproc (ID, GateSocket, Pid, Done, Err,
// Stop) plus its mode and its gate key.
type owner struct {
	*ownerproc.Proc
	key []byte
}

// Mode is "direct".
func (o *owner) Mode() string { return "direct" }

// GateKey is the owner's gate key (gate.KeyHolder): the executor derives each activation's token
// from it. Nil with Config.OpenGate.
func (o *owner) GateKey() []byte { return o.key }
