package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/confine"
	"github.com/teemate/platform/invoker/internal/enclave/direct"
	"github.com/teemate/platform/invoker/internal/enclave/sgx"
	"github.com/teemate/platform/invoker/internal/executor"
	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/docker"
	"github.com/teemate/platform/invoker/internal/sandbox/oci"
	"github.com/teemate/platform/invoker/internal/sandbox/process"
)

// Backends selects how activations run.
type Backends struct {
	// Sandbox is "process", "docker", "oci" or "none".
	Sandbox string
	// Enclave is "direct", "sgx" or "none".
	Enclave string
	// Model is "teemate" (fresh sandbox + warm shared enclave), "native" (OpenWhisk's way: a fresh
	// container with its own Node action proxy) or "strawman" (a fresh enclave runtime per container).
	Model string
	// RepoDir is the repository root: the enclave runtime, the isolate addon and bin/ are found there.
	RepoDir string
	// ShimPath overrides RepoDir/bin/teemate-shim, the teemate model's shim (the C one, shim/).
	ShimPath string
	// PoolSize is how many created sandboxes the oci and process backends keep ready per pool
	// key (0: the backend's default, 2; negative: no pool, every activation creates its own).
	// A pooled container costs a few MB; size it to the bursts to absorb, as OpenWhisk sizes its
	// prewarm pool.
	PoolSize int
	// Isolate forces the enclave runtime's isolate backend: "addon", "worker" or "" (best available).
	Isolate string
	// SlotsPerOwner is the number of TCS slots of each warm enclave (16 by default).
	SlotsPerOwner int
	// Prestart lists images whose enclave starts with the invoker (default nodejs:20).
	Prestart []string
	// ImagesDir holds the function images `make images` builds (the oci backend runs their root
	// filesystems); RepoDir/.state/images by default.
	ImagesDir string
	// UnsafeOwnerAsRoot lets the direct enclave backend run owners as root without confinement
	// (an escape from an isolate is then host root). Without it an invoker running as root starts
	// owners confined or not at all.
	UnsafeOwnerAsRoot bool
	// EgressAllow is the confined owners' egress allow-list, "host:port,...": host-loopback
	// endpoints forwarded into the owner's network namespace (the REST API's port of Config.APIHost
	// is added when it is on loopback). Other hosts are reached through pasta's NAT.
	EgressAllow string
	// OwnerUser is the confined owners' "uid:gid" (default 64000:64000; no passwd entry needed).
	OwnerUser string

	// apiHost is Config.APIHost, set by RunWithBackends for the egress allow-list.
	apiHost string
}

// ownerConfinement is the direct backend's confinement from b: launcher, owner ids and the
// egress allow-list (with the REST API's endpoint when it is on the host's loopback).
func ownerConfinement(repo string, b Backends) (confine.Config, error) {
	c := confine.Config{Launcher: filepath.Join(repo, "bin", "teemate-confine")}
	if b.OwnerUser != "" {
		u, g, ok := strings.Cut(b.OwnerUser, ":")
		uid, err1 := strconv.Atoi(u)
		gid, err2 := strconv.Atoi(g)
		if !ok || err1 != nil || err2 != nil || uid < 1 || gid < 1 {
			return c, fmt.Errorf("owner user %q: want uid:gid, both non-zero", b.OwnerUser)
		}
		c.UID, c.GID = uid, gid
	}
	allow, err := confine.ParseEgressAllow(b.EgressAllow)
	if err != nil {
		return c, err
	}
	if b.apiHost != "" {
		api, err := confine.URLEndpoint(b.apiHost)
		if err != nil {
			return c, fmt.Errorf("egress to the API host: %w", err)
		}
		if api.Loopback() && !slices.Contains(allow, api) {
			allow = append(allow, api)
		}
	}
	c.EgressAllow = allow
	return c, nil
}

// SGXConfig is the sgx enclave backend's configuration for a repository checkout; buildDir receives
// the rendered and signed manifests. Tools and devices take the backend's defaults.
func SGXConfig(repo, buildDir string) sgx.Config {
	return sgx.Config{
		OwnerJS:    filepath.Join(repo, "enclave-runtime", "trusted", "owner.js"),
		Addon:      filepath.Join(repo, "node-isolate-patch", "build", "teemate_isolate.node"),
		Template:   filepath.Join(repo, "enclave-runtime", "manifest", "nodejs-owner.manifest.template"),
		SigningKey: os.Getenv("TEEMATE_SGX_SIGNING_KEY"),
		BuildDir:   filepath.Join(buildDir, "manifests"),
	}
}

// SGXPreflight checks this host for the sgx enclave backend and reports every check.
func SGXPreflight(repo string) (report string, err error) {
	r := sgx.Preflight(SGXConfig(repo, os.TempDir()), sgx.HostProbes())
	return r.String(), r.Err()
}

// ErrUnknownBackend is returned for a backend or model name this invoker does not know.
var ErrUnknownBackend = errors.New("unknown backend")

// RunWithBackends builds the executor the backends name and runs the invoker.
func RunWithBackends(ctx context.Context, cfg Config, b Backends) error {
	if b.Sandbox == "none" || b.Enclave == "none" || cfg.Executor != nil {
		return Run(ctx, cfg)
	}
	b.apiHost = cfg.APIHost
	log := cfg.Logger
	if log == nil {
		var err error
		if log, err = zap.NewProduction(); err != nil {
			return fmt.Errorf("create logger: %w", err)
		}
		cfg.Logger = log
	}
	exec, cleanup, err := buildExecutor(log, cfg.ID, b)
	if err != nil {
		return err
	}
	defer cleanup()
	cfg.Executor = exec
	return Run(ctx, cfg)
}

// buildExecutor assembles enclave manager, sandbox runtime and executor. The returned cleanup stops
// the enclaves and removes the runtime directory.
func buildExecutor(log *zap.Logger, id int, b Backends) (_ *executor.Teemate, cleanup func(), err error) {
	if b.Model == "" {
		b.Model = "teemate"
	}
	switch b.Model {
	case executor.ModelTeemate, executor.ModelNative, executor.ModelStrawman:
	default:
		return nil, nil, fmt.Errorf("%w: model %q", ErrUnknownBackend, b.Model)
	}
	repo, err := filepath.Abs(b.RepoDir)
	if err != nil {
		return nil, nil, fmt.Errorf("repository dir: %w", err)
	}
	// Unix socket paths are limited to 107 bytes, so sockets live under a short private directory
	// rather than under the (possibly deep) state directory.
	rt, err := os.MkdirTemp("", fmt.Sprintf("tm%d-", id))
	if err != nil {
		return nil, nil, fmt.Errorf("runtime dir: %w", err)
	}
	var closers []func()
	release := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		_ = os.RemoveAll(rt)
	}
	// A failure returns a nil cleanup, so the deferred release must not go through the named result.
	defer func() {
		if err != nil {
			release()
		}
	}()

	var backend enclave.Backend
	switch b.Enclave {
	case "direct", "":
		owner, err := direct.FindOwnerJS(repo)
		if err != nil {
			return nil, nil, fmt.Errorf("direct enclave: %w", err)
		}
		conf, err := ownerConfinement(repo, b)
		if err != nil {
			return nil, nil, fmt.Errorf("direct enclave: %w", err)
		}
		if backend, err = direct.New(direct.Config{OwnerJS: owner, Confine: conf, UnsafeOwnerAsRoot: b.UnsafeOwnerAsRoot}, log); err != nil {
			return nil, nil, fmt.Errorf("direct enclave: %w", err)
		}
	case "sgx":
		scfg := SGXConfig(repo, rt)
		if backend, err = sgx.New(scfg, log); err != nil {
			return nil, nil, fmt.Errorf("sgx enclave: %w", err)
		}
	default:
		return nil, nil, fmt.Errorf("%w: enclave %q", ErrUnknownBackend, b.Enclave)
	}
	prestart := b.Prestart
	if b.Model != executor.ModelTeemate {
		prestart = []string{} // only the teemate model uses the warm enclave
	} else if prestart == nil {
		prestart = []string{"nodejs:20"}
	}
	mgr := enclave.NewManager(backend, enclave.ManagerConfig{
		BaseDir: filepath.Join(rt, "e"), SlotsPerOwner: b.SlotsPerOwner, Prestart: prestart, Isolate: b.Isolate,
	}, log)
	closers = append(closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10e9)
		defer cancel()
		if err := mgr.Close(ctx); err != nil {
			log.Warn("stop enclaves", zap.Error(err))
		}
	})

	// Paths as seen inside a sandbox: the process backend sees the host; containers see the image.
	prefix := fmt.Sprintf("wsk%d_", id)
	inImage := true
	var sandboxes sandbox.Runtime
	switch b.Sandbox {
	case "process", "":
		inImage = false
		pcfg := process.Config{StateDir: filepath.Join(rt, "p"), IDPrefix: prefix, PoolSize: b.PoolSize}
		// With the start stub built, sandboxes are created ahead of their activations (a pool,
		// as the oci backend has); without it every Create starts a process.
		if stub := filepath.Join(repo, "bin", "teemate-start"); fileExists(stub) {
			pcfg.StartStub = stub
		} else {
			log.Info("no start stub (make build): process sandboxes are created on the request path", zap.String("path", stub))
		}
		if sandboxes, err = process.New(pcfg, log); err != nil {
			return nil, nil, fmt.Errorf("process sandbox: %w", err)
		}
	case "docker":
		if sandboxes, err = docker.New(context.Background(), docker.Config{}, log); err != nil {
			return nil, nil, fmt.Errorf("docker sandbox: %w", err)
		}
	case "oci":
		images := b.ImagesDir
		if images == "" {
			images = filepath.Join(repo, ".state", "images")
		}
		if sandboxes, err = oci.New(oci.Config{ImagesDir: images, StateDir: filepath.Join(rt, "o"), IDPrefix: prefix, PoolSize: b.PoolSize, RefillWorkers: 2,
			Prewarm: []oci.PoolKey{{Image: b.Model, MemoryMB: 256}}}, log); err != nil {
			return nil, nil, fmt.Errorf("oci sandbox: %w", err)
		}
	default:
		return nil, nil, fmt.Errorf("%w: sandbox %q", ErrUnknownBackend, b.Sandbox)
	}
	// Leftovers of an earlier run of this invoker (OpenWhisk removes wsk{N}_* containers at start).
	cctx, ccancel := context.WithTimeout(context.Background(), 30e9)
	if err := sandboxes.Cleanup(cctx, prefix); err != nil {
		log.Warn("cleaning up leftover sandboxes failed", zap.String("prefix", prefix), zap.Error(err))
	}
	ccancel()
	closers = append(closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10e9)
		defer cancel()
		if err := sandboxes.Close(ctx); err != nil {
			log.Warn("close sandboxes", zap.Error(err))
		}
	})
	shim := b.ShimPath
	if shim == "" {
		shim = filepath.Join(repo, "bin", "teemate-shim")
	}
	if inImage {
		shim = "/bin/teemate-shim" // deploy/images/build.sh puts the image's shim there
	} else if _, err := os.Stat(shim); err != nil {
		return nil, nil, fmt.Errorf("teemate shim (run make build): %w", err)
	} else if b.Model == executor.ModelStrawman {
		// The strawman's launcher boots the sandbox's own runtime, then becomes the shim.
		if _, err := os.Stat(executor.StrawmanLauncher(shim)); err != nil {
			return nil, nil, fmt.Errorf("strawman launcher (run make build): %w", err)
		}
	}
	ecfg := executor.Config{ShimPath: shim, ProxyDir: filepath.Join(rt, "s"), Model: b.Model}
	if inImage {
		ecfg.NativeCommand = []string{"/usr/bin/node", "/opt/teemate/native/proxy.js"}
		ecfg.StrawmanRuntime = []string{"/usr/bin/node", "/opt/teemate/enclave-runtime/trusted/owner.js"}
	} else if b.Model != executor.ModelTeemate {
		// Sandboxes get a clean environment without PATH, so the runtime is named by its full path.
		node, err := exec.LookPath("node")
		if err != nil {
			return nil, nil, fmt.Errorf("%s model needs node: %w", b.Model, err)
		}
		owner, err := direct.FindOwnerJS(repo)
		if err != nil {
			return nil, nil, fmt.Errorf("strawman model: %w", err)
		}
		ecfg.NativeCommand = []string{node, filepath.Join(repo, "deploy", "images", "native", "proxy.js")}
		ecfg.StrawmanRuntime = []string{node, owner}
	}
	ex, err := executor.NewTeemate(mgr, sandboxes, ecfg, log)
	if err != nil {
		return nil, nil, fmt.Errorf("executor: %w", err)
	}
	log.Info("executor ready", zap.String("model", b.Model), zap.String("sandbox", sandboxes.Name()),
		zap.String("enclave", backend.Name()), zap.String("runtime_dir", rt))
	return ex, release, nil
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
