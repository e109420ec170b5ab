package sgx

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/ownerproc"
)

// Config configures the backend. Zero values take the defaults named on each field.
type Config struct {
	// GramineSGX, GramineManifest, GramineSign are the (patched) Gramine tools; looked up in PATH.
	GramineSGX      string // "gramine-sgx"
	GramineManifest string // "gramine-manifest"
	GramineSign     string // "gramine-sgx-sign"
	// SigningKey is the enclave signing key (gramine-sgx-gen-private-key); required.
	SigningKey string
	// ArchLibdir is passed to gramine-manifest as -Darch_libdir ("/lib/x86_64-linux-gnu").
	ArchLibdir string
	// Node is the (patched) node binary measured into the enclave ("/usr/bin/node").
	Node string
	// OwnerJS is enclave-runtime/trusted/owner.js; its directory is measured whole.
	OwnerJS string
	// Addon is the isolate addon (node-isolate-patch/build/teemate_isolate.node).
	Addon string
	// SealCrypto is the sealed path's primitives addon (node-isolate-patch/build/teemate_sealcrypto.node).
	SealCrypto string
	// Template is enclave-runtime/manifest/nodejs-owner.manifest.template.
	Template string
	// BuildDir receives the rendered and signed manifests, one per image and slot count.
	BuildDir string
	// RecordDir keeps a record of every running owner (ownerproc.Options.RecordDir), so that an
	// invoker restarted after a crash kills the owners its predecessor left. Empty: none.
	RecordDir string
	// HeapMBPerSlot is the isolate heap budget per slot the enclave size is computed for (256).
	HeapMBPerSlot int
	// LogLevel is Gramine's log level ("error"); Debug builds a debug enclave (never in production).
	LogLevel string
	Debug    bool
	// EnclaveDevice, TeemateDevice, FakeEnclaveDevice, CPUInfo are the host paths preflight checks.
	EnclaveDevice     string // "/dev/sgx_enclave"
	TeemateDevice     string // "/dev/teemate"
	FakeEnclaveDevice string // "/dev/teemate_fake_enclave"
	CPUInfo           string // "/proc/cpuinfo"
	// StartTimeout bounds share line + first pong (60 s: EADD of a multi-GiB enclave takes a while).
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL (5 s).
	StopTimeout time.Duration
	// Env is the loader's environment (the enclave never sees it); PATH and HOME by default.
	Env []string
	// Probes and Runner are injected in tests; HostProbes and ExecRunner by default.
	Probes Probes
	Runner Runner
}

func (c *Config) defaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.GramineSGX, "gramine-sgx")
	def(&c.GramineManifest, "gramine-manifest")
	def(&c.GramineSign, "gramine-sgx-sign")
	def(&c.ArchLibdir, "/lib/x86_64-linux-gnu")
	def(&c.Node, "/usr/bin/node")
	def(&c.LogLevel, "error")
	def(&c.EnclaveDevice, "/dev/sgx_enclave")
	def(&c.TeemateDevice, "/dev/teemate")
	def(&c.FakeEnclaveDevice, "/dev/teemate_fake_enclave")
	def(&c.CPUInfo, "/proc/cpuinfo")
	if c.HeapMBPerSlot == 0 {
		c.HeapMBPerSlot = 256
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 5 * time.Second
	}
	if c.Env == nil {
		c.Env = ownerproc.HostEnv()
	}
	if c.Probes.Exists == nil {
		c.Probes = HostProbes()
	}
	if c.Runner == nil {
		c.Runner = ExecRunner{}
	}
}

// signedManifestHint is the signed manifest of the default 8-slot node image, reported by preflight.
func (c Config) signedManifestHint() string {
	if c.BuildDir == "" {
		return ""
	}
	return filepath.Join(c.BuildDir, ManifestName("nodejs:20", 8)+".manifest.sgx")
}

// Runner runs a build tool (gramine-manifest, gramine-sgx-sign) to completion.
type Runner interface {
	Run(ctx context.Context, dir string, argv []string) error
}

// ExecRunner runs commands with os/exec; a failure carries the tool's output.
type ExecRunner struct{}

// Run runs argv in dir.
func (ExecRunner) Run(ctx context.Context, dir string, argv []string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(tail(out, 2048))))
	}
	return nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Backend starts owners under gramine-sgx.
type Backend struct {
	cfg Config
	log *zap.Logger

	buildMu sync.Mutex // one manifest build at a time
}

// New runs the preflight and returns an error wrapping enclave.ErrUnavailable, naming every failed
// check, when this host cannot run SGX owners.
func New(cfg Config, log *zap.Logger) (*Backend, error) {
	cfg.defaults()
	if err := Preflight(cfg, cfg.Probes).Err(); err != nil {
		return nil, err
	}
	if cfg.BuildDir == "" {
		return nil, fmt.Errorf("sgx enclave backend: %w: BuildDir is not set", enclave.ErrUnavailable)
	}
	for _, p := range []*string{&cfg.GramineSGX, &cfg.GramineManifest, &cfg.GramineSign} {
		if abs, err := cfg.Probes.LookPath(*p); err == nil {
			*p = abs
		}
	}
	return &Backend{cfg: cfg, log: log}, nil
}

// Name is "sgx".
func (b *Backend) Name() string { return "sgx" }

// SharedOwner is an sgx owner: an enclave.Owner plus the share sandboxes attach to.
type SharedOwner interface {
	enclave.Owner
	// Share is the /dev/teemate share of this owner's enclave (ID and token go to its sandboxes).
	Share() ShareInfo
}

// Start renders and signs the image's manifest if needed, starts `gramine-sgx` in spec.Dir, reads the
// share line from fd 3 and returns once the gate answers a ping. The returned Owner is a SharedOwner.
func (b *Backend) Start(ctx context.Context, spec enclave.StartSpec) (enclave.Owner, error) {
	if spec.ID == "" || spec.Image == "" || spec.Dir == "" || spec.Slots < 1 {
		return nil, fmt.Errorf("start owner: incomplete spec %+v", spec)
	}
	if spec.Isolate != "" && spec.Isolate != "addon" {
		return nil, fmt.Errorf("start owner %s: isolate %q: sgx owners run the addon only (every worker thread would cost a TCS)", spec.ID, spec.Isolate)
	}
	if spec.IsolateReuse != "" && spec.IsolateReuse != enclave.IsolateReuseNone {
		// The owner's argv is fixed and measured by the manifest; the mode would go there (and
		// into MRENCLAVE) rather than come from the host. Not wired yet.
		return nil, fmt.Errorf("start owner %s: isolate reuse %q: sgx owners keep the default (a new isolate per activation)", spec.ID, spec.IsolateReuse)
	}
	if spec.PagePoolMB != nil {
		// As above: the argv is the manifest's, so the owner runs with the addon's default.
		return nil, fmt.Errorf("start owner %s: page pool %d MiB: sgx owners keep the addon's default", spec.ID, *spec.PagePoolMB)
	}
	manifest, err := b.ensureManifest(ctx, spec.Image, spec.Slots)
	if err != nil {
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	if err := os.MkdirAll(filepath.Join(spec.Dir, "work"), 0o750); err != nil {
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	shareR, shareW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start owner %s: share pipe: %w", spec.ID, err)
	}
	defer shareR.Close() //nolint:errcheck // read end of a pipe: closing it cannot lose data
	// gramine-sgx APP loads APP.manifest.sgx; the working directory is the owner's private directory,
	// which the manifest mounts at /run/teemate through a relative URI.
	cmd := exec.Command(b.cfg.GramineSGX, manifest)
	cmd.Dir = spec.Dir
	cmd.Env = append(append([]string(nil), b.cfg.Env...), "TEEMATE_SHARE_FD=3")
	cmd.ExtraFiles = []*os.File{shareW}
	cmd.Stdout = io.Discard // owner.js's ready line; readiness is the share line plus a ping
	log := b.log.With(zap.String("enclave", spec.ID), zap.String("image", spec.Image))
	sock := filepath.Join(spec.Dir, "gate.sock")
	p, err := ownerproc.Start(cmd, ownerproc.Options{ID: spec.ID, GateSocket: sock, StopTimeout: b.cfg.StopTimeout,
		Log: log, Level: loaderLevel, RecordDir: b.cfg.RecordDir, Background: spec.Background})
	_ = shareW.Close() // the loader holds the only write end now; closing ours loses nothing
	if err != nil {
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	o := &owner{Proc: p}

	sctx, cancel := context.WithTimeout(ctx, b.cfg.StartTimeout)
	defer cancel()
	fail := func(err error) (enclave.Owner, error) {
		_ = o.Stop(context.Background()) // the start failed; the stop's own error adds nothing
		return nil, fmt.Errorf("start owner %s: %w", spec.ID, err)
	}
	share, err := readShare(sctx, shareR, o.Done())
	if err != nil {
		// A loader that fails (EINIT, manifest, device) closes the pipe as it exits: give the exit a
		// moment to be reaped so the error carries the loader's last words.
		select {
		case <-o.Done():
		case <-time.After(time.Second):
		}
		if o.Exited() {
			return fail(fmt.Errorf("%w (before the share line: %w)", o.Err(), err))
		}
		return fail(err)
	}
	if share.TCS != spec.Slots {
		return fail(fmt.Errorf("loader shared %d TCS pages, the manifest has %d join slots", share.TCS, spec.Slots))
	}
	o.share = share
	if err := o.WaitGate(sctx); err != nil {
		return fail(err)
	}
	log.Info("enclave owner started (sgx)", zap.Int("pid", o.Pid()), zap.String("gate", sock),
		zap.Int("slots", spec.Slots), zap.Uint64("share", share.ID), zap.String("manifest", manifest))
	return o, nil
}

// readShare reads the first line from the share pipe; the loader closes its end after writing.
func readShare(ctx context.Context, r *os.File, died <-chan struct{}) (ShareInfo, error) {
	type res struct {
		line []byte
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		br := bufio.NewReaderSize(io.LimitReader(r, ShareLineMax+2), ShareLineMax+2)
		line, err := br.ReadSlice('\n')
		if err != nil {
			ch <- res{err: fmt.Errorf("share line: %w", err)}
			return
		}
		ch <- res{line: line[:len(line)-1]}
	}()
	select {
	case v := <-ch:
		if v.err != nil {
			return ShareInfo{}, v.err
		}
		return ParseShareLine(v.line)
	case <-ctx.Done():
		_ = r.SetReadDeadline(time.Now()) // unblock the reader; the pipe is closed by the caller
		return ShareInfo{}, fmt.Errorf("no share line from the loader: %w", ctx.Err())
	case <-died:
		// The loader may have written the line and exited at once; prefer a line if there is one.
		select {
		case v := <-ch:
			if v.err == nil {
				return ParseShareLine(v.line)
			}
			return ShareInfo{}, v.err
		case <-time.After(100 * time.Millisecond):
			_ = r.SetReadDeadline(time.Now()) // unblock the reader, as above; the error below says why
			return ShareInfo{}, errors.New("the loader exited without a share line")
		}
	}
}

// stamp identifies the inputs of a signed manifest: the rendered template and the size and mtime of
// every trusted file the invoker controls. A change means re-render and re-sign.
func stamp(rendered []byte, files []string) (string, error) {
	h := sha256.New()
	h.Write(rendered)
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("trusted file: %w", err)
		}
		fmt.Fprintf(h, "\n%s %d %d", f, st.Size(), st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ensureManifest renders, expands and signs the manifest for (image, slots) unless an up-to-date
// signed one exists. It returns the path gramine-sgx takes (without ".manifest.sgx").
func (b *Backend) ensureManifest(ctx context.Context, image string, slots int) (string, error) {
	b.buildMu.Lock()
	defer b.buildMu.Unlock()
	c := b.cfg
	name := ManifestName(image, slots)
	tmpl, err := readTemplate(c.Template)
	if err != nil {
		return "", err
	}
	runtimeDir := filepath.Dir(c.OwnerJS)
	rendered, err := RenderManifest(tmpl, ManifestParams{
		Name: name, Image: image, Slots: slots, HeapMBPerSlot: c.HeapMBPerSlot,
		Node: c.Node, RuntimeDir: runtimeDir, Addon: c.Addon, SealCrypto: c.SealCrypto, LogLevel: c.LogLevel, Debug: c.Debug,
	})
	if err != nil {
		return "", err
	}
	files := []string{c.Node, c.Addon, c.SealCrypto, c.Template}
	entries, err := os.ReadDir(runtimeDir)
	if err != nil {
		return "", fmt.Errorf("runtime dir: %w", err)
	}
	for _, e := range entries {
		files = append(files, filepath.Join(runtimeDir, e.Name()))
	}
	st, err := stamp(rendered, files)
	if err != nil {
		return "", err
	}
	base := filepath.Join(c.BuildDir, name)
	if old, err := os.ReadFile(base + ".stamp"); err == nil && string(old) == st {
		if _, err := os.Stat(base + ".manifest.sgx"); err == nil {
			return base, nil
		}
	}
	if err := os.MkdirAll(c.BuildDir, 0o755); err != nil {
		return "", fmt.Errorf("manifest build dir: %w", err)
	}
	_ = os.Remove(base + ".stamp") // a failed build below must not leave a stamp that looks current
	if err := os.WriteFile(base+".manifest.template", rendered, 0o644); err != nil {
		return "", fmt.Errorf("manifest: %w", err)
	}
	for _, argv := range BuildCommands(c, base) {
		if err := c.Runner.Run(ctx, c.BuildDir, argv); err != nil {
			return "", fmt.Errorf("manifest %s: %w", name, err)
		}
	}
	if _, err := os.Stat(base + ".manifest.sgx"); err != nil {
		return "", fmt.Errorf("manifest %s: signing produced no %s.manifest.sgx: %w", name, name, err)
	}
	if err := os.WriteFile(base+".stamp", []byte(st), 0o644); err != nil {
		return "", fmt.Errorf("manifest: %w", err)
	}
	b.log.Info("signed enclave manifest", zap.String("manifest", base+".manifest.sgx"))
	return base, nil
}

// BuildCommands are the two tool runs that turn BASE.manifest.template (our values filled in) into
// BASE.manifest.sgx.
func BuildCommands(c Config, base string) [][]string {
	return [][]string{
		{c.GramineManifest, "-Darch_libdir=" + c.ArchLibdir, base + ".manifest.template", base + ".manifest"},
		{c.GramineSign, "--manifest", base + ".manifest", "--output", base + ".manifest.sgx", "--key", c.SigningKey},
	}
}

// owner is an sgx owner: the process handling of ownerproc (ID, GateSocket, Pid, Done, Err, Stop)
// plus its mode and share. Stop's SIGTERM is the one injected signal the manifest allows; the kernel
// unshares the enclave when the loader's /dev/teemate session closes, and attached sandboxes keep
// their mappings.
type owner struct {
	*ownerproc.Proc
	share ShareInfo // set before Start returns, read-only afterwards
}

// Mode is "sgx".
func (o *owner) Mode() string { return "sgx" }

// Share is the /dev/teemate share of this owner's enclave.
func (o *owner) Share() ShareInfo { return o.share }

// GateKey is nil (gate.KeyHolder): in sgx mode a caller enters the enclave through /dev/teemate
// attach on a TCS, and the runtime knows it by that TCS and by attestation, not by a token that the
// untrusted host mints. Gate tokens are the direct backend's measure (SECURITY.md).
func (o *owner) GateKey() []byte { return nil }

// loaderLevel is the level of a stderr line of the loader or owner: owner.js logs JSON lines,
// Gramine prefixes its own with "error:" or "warning:".
func loaderLevel(line string) zapcore.Level {
	json := ownerproc.JSONLevel(line)
	switch {
	case json == zapcore.ErrorLevel, strings.HasPrefix(line, "error:"):
		return zapcore.ErrorLevel
	case json == zapcore.WarnLevel, strings.HasPrefix(line, "warning:"):
		return zapcore.WarnLevel
	default:
		return zapcore.DebugLevel
	}
}
