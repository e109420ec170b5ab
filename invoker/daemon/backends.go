package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/confine"
	"github.com/teemate/platform/invoker/internal/enclave/sgx"
	"github.com/teemate/platform/invoker/internal/executor"
	"github.com/teemate/platform/invoker/internal/whiskapi"
)

// DefaultEnclaveIdleTimeout is Backends.EnclaveIdleTimeout's default (enclave.DefaultIdleTimeout).
const DefaultEnclaveIdleTimeout = enclave.DefaultIdleTimeout

// Backends selects how activations run.
type Backends struct {
	// Sandbox is a registered sandbox backend: "process" (the default), "docker", "oci" or "none".
	Sandbox string
	// Enclave is a registered enclave backend: "direct" (the default), "sgx" or "none".
	Enclave string
	// Model is "teemate" (the default: fresh sandbox + warm shared enclave, executor.SharedEnclave),
	// "native" (OpenWhisk's way: a fresh container with its own Node action proxy) or "strawman"
	// (a fresh enclave runtime per container).
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
	// OCIRuntime is the oci backend's runtime: "teemate-launch" (the default, DefaultOCIRuntime:
	// the launcher of the sandbox's fixed shape, bin/teemate-launch; a seventh of runc's CPU
	// per container, same isolation), "runc", "crun" (through bin/teemate-crun where crun
	// refuses the host's hybrid cgroups), or a path to a runtime binary.
	OCIRuntime string
	// Isolate forces the enclave runtime's isolate backend: "addon", "worker" or "" (best available).
	Isolate string
	// IsolateReuse is "none" (or "": the default, a new isolate for every activation) or "tenant":
	// each TCS slot of a warm enclave keeps its isolate for one namespace's unsealed activations,
	// each still in a new context and Node environment (node-isolate-patch/README.md, "Isolate
	// reuse for one tenant"). Direct backend with the isolate addon only.
	IsolateReuse string
	// PagePoolMB is the budget of the isolate addon's page pool in every owner, in MiB: nil for
	// the addon's default (16), 0 turns it off (node-isolate-patch/README.md, "The page pool").
	// Direct backend only; the sgx backend refuses a value.
	PagePoolMB *int
	// SlotsPerOwner is the number of TCS slots of each warm enclave (16 by default).
	SlotsPerOwner int
	// Prestart lists images whose enclave starts with the invoker (default nodejs:20).
	Prestart []string
	// EnclaveIdleTimeout retires a warm enclave of an image not in Prestart after this long without
	// an activation (0: enclave.DefaultIdleTimeout, 10 min; negative: never), giving its memory
	// back; the image's next activation here starts it again.
	EnclaveIdleTimeout time.Duration
	// ImagesDir holds the function images `make images` builds (the oci backend runs their root
	// filesystems); RepoDir/.state/images by default.
	ImagesDir string
	// UnsafeOwnerAsRoot lets the direct enclave backend run owners as root without confinement
	// (an escape from an isolate is then host root). Without it an invoker running as root starts
	// owners confined or not at all.
	UnsafeOwnerAsRoot bool
	// EgressAllow is the egress allow-list of actions with network, "host:port,...": host-loopback
	// endpoints forwarded into a confined owner's network namespace, and given to the strawman's
	// runtime on the host's network (the REST API's port of Config.APIHost is added when it is on
	// loopback). Other hosts are reached through pasta's NAT.
	EgressAllow string
	// OwnerUser is the confined owners' "uid:gid" (default 64000:64000; no passwd entry needed).
	OwnerUser string

	// apiHost is Config.APIHost, set by RunWithBackends for the egress allow-list.
	apiHost string
	// stateDir is Config.StateDir, set by RunWithBackends: the runtime directory is derived from it
	// and locked in it (runtimedir.go). Empty (an executor built alone, in tests): a temporary
	// runtime directory, unlocked.
	stateDir string
	// keyDir is where the direct backend seals the image keys (Config.StateDir/enclave-keys, set by
	// RunWithBackends): a restarted invoker's owners come back with the same keys. Empty: keys in
	// the owners' memory only.
	keyDir string
	// api is the controller's internal API (whiskapi), set by RunWithBackends when the invoker has a
	// store token: the invoker publishes its enclaves' evidence there and takes and offers image
	// keys across invokers through it. Nil: none of that.
	api *whiskapi.Client
	// warmChanged, set by RunWithBackends, gets a signal when a drain's preparation made an
	// image warm here, so that the next ping tells the controllers at once (Config.warmChanged).
	warmChanged chan struct{}
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
	allow, err := egressAllow(b)
	if err != nil {
		return c, err
	}
	c.EgressAllow = allow
	return c, nil
}

// egressAllow is the host-loopback endpoints actions with network may reach, whichever model runs
// them: Backends.EgressAllow, plus the REST API's endpoint when it is on the host's loopback.
func egressAllow(b Backends) ([]confine.HostPort, error) {
	allow, err := confine.ParseEgressAllow(b.EgressAllow)
	if err != nil {
		return nil, err
	}
	if b.apiHost != "" {
		api, err := confine.URLEndpoint(b.apiHost)
		if err != nil {
			return nil, fmt.Errorf("egress to the API host: %w", err)
		}
		if api.Loopback() && !slices.Contains(allow, api) {
			allow = append(allow, api)
		}
	}
	return allow, nil
}

// SGXConfig is the sgx enclave backend's configuration for a repository checkout; buildDir receives
// the rendered and signed manifests. Tools and devices take the backend's defaults.
func SGXConfig(repo, buildDir string) sgx.Config {
	return sgx.Config{
		OwnerJS:    filepath.Join(repo, "enclave-runtime", "trusted", "owner.js"),
		Addon:      filepath.Join(repo, "node-isolate-patch", "build", "teemate_isolate.node"),
		SealCrypto: filepath.Join(repo, "node-isolate-patch", "build", "teemate_sealcrypto.node"),
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

// RunWithBackends builds the executor the backends name and runs the invoker.
func RunWithBackends(ctx context.Context, cfg Config, b Backends) error {
	if cfg.Executor != nil {
		return Run(ctx, cfg)
	}
	if err := b.validate(); err != nil {
		return err
	}
	if b.Sandbox == None || b.Enclave == None {
		return Run(ctx, cfg)
	}
	b.apiHost = cfg.APIHost
	state := cfg.StateDir
	if state == "" {
		state = ".state" // Run's default (Config.defaults)
	}
	b.stateDir = state
	b.keyDir = filepath.Join(state, "enclave-keys")
	if cfg.StoreToken != "" {
		// The controller-adapter serves each image's evidence to clients (issue #16); the
		// invoker that runs the image's enclave publishes it, on the token it stores records with.
		d := cfg
		d.defaults()
		api, err := whiskapi.New(whiskapi.Config{APIHost: d.APIHost, StoreToken: cfg.StoreToken, Invoker: cfg.ID})
		if err != nil {
			return fmt.Errorf("rest client: %w", err)
		}
		b.api = api
	}
	log := cfg.Logger
	if log == nil {
		var err error
		if log, err = zap.NewProduction(); err != nil {
			return fmt.Errorf("create logger: %w", err)
		}
		cfg.Logger = log
	}
	b.warmChanged = make(chan struct{}, 1)
	exec, cleanup, err := buildExecutor(log, cfg.ID, b)
	if err != nil {
		return err
	}
	defer cleanup()
	cfg.Executor = exec
	cfg.warmChanged = b.warmChanged
	return Run(ctx, cfg)
}

// withDefaults fills in the names bin/invoker defaults to: process, direct, teemate.
func (b Backends) withDefaults() Backends {
	if b.Sandbox == "" {
		b.Sandbox = "process"
	}
	if b.Enclave == "" {
		b.Enclave = "direct"
	}
	if b.Model == "" {
		b.Model = executor.ModelTeemate
	}
	return b
}

// validate checks that every name is registered.
func (b Backends) validate() error {
	b = b.withDefaults()
	if _, err := lookupModel(b.Model); err != nil {
		return err
	}
	if _, err := lookupSandbox(b.Sandbox); err != nil {
		return err
	}
	if err := enclave.CheckIsolateReuse(b.IsolateReuse); err != nil {
		return err
	}
	if err := enclave.CheckPagePool(b.PagePoolMB); err != nil {
		return err
	}
	_, err := lookupEnclave(b.Enclave)
	return err
}

// buildExecutor assembles what the registry's entries for b build: the enclave backend and its
// manager, the sandbox runtime and the model's executor. The returned cleanup stops the enclaves
// and removes the runtime directory.
func buildExecutor(log *zap.Logger, id int, b Backends) (_ *executor.Executor, cleanup func(), err error) {
	b = b.withDefaults()
	me, err := lookupModel(b.Model)
	if err != nil {
		return nil, nil, err
	}
	se, err := lookupSandbox(b.Sandbox)
	if err != nil {
		return nil, nil, err
	}
	ee, err := lookupEnclave(b.Enclave)
	if err != nil {
		return nil, nil, err
	}
	if se.build == nil || ee.build == nil {
		return nil, nil, fmt.Errorf("sandbox %q with enclave %q runs no executor", b.Sandbox, b.Enclave)
	}
	repo, err := filepath.Abs(b.RepoDir)
	if err != nil {
		return nil, nil, fmt.Errorf("repository dir: %w", err)
	}
	a := &assembly{log: log, b: b, repo: repo, prefix: fmt.Sprintf("wsk%d_", id)}
	if a.model, err = me.build(a, se.inImage); err != nil {
		return nil, nil, err
	}
	// One runtime directory per state directory and invoker id, locked (runtimedir.go): what an
	// earlier instance left there is removed before anything of this one starts.
	rdir, err := openRuntimeDir(b.stateDir, id)
	if err != nil {
		return nil, nil, err
	}
	a.runtime, a.records = rdir.path, rdir.recordDir()
	var closers []func()
	release := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		rdir.remove(log)
	}
	// A failure returns a nil cleanup, so the deferred release must not go through the named result.
	defer func() {
		if err != nil {
			release()
		}
	}()
	reaped, rerr := rdir.reapOwners()
	if rerr != nil {
		log.Warn("removing what an earlier instance left failed", zap.String("runtime_dir", a.runtime), zap.Error(rerr))
	}

	backend, err := ee.build(a)
	if err != nil {
		return nil, nil, err
	}
	prestart := b.Prestart
	if !a.model.SharesEnclave() {
		prestart = []string{} // only the shared-enclave model uses the warm enclaves
	} else if prestart == nil {
		prestart = []string{"nodejs:20"}
	}
	mcfg := enclave.ManagerConfig{
		BaseDir: filepath.Join(a.runtime, "e"), SlotsPerOwner: b.SlotsPerOwner, Prestart: prestart, Isolate: b.Isolate, IsolateReuse: b.IsolateReuse, PagePoolMB: b.PagePoolMB,
		IdleTimeout: b.EnclaveIdleTimeout,
	}
	if b.api != nil {
		mcfg.Hooks.Evidence = publishEvidence(b.api)
		mcfg.Keys = keyRelay{api: b.api, self: id}
	}
	mgr := enclave.NewManager(backend, mcfg, log)
	closers = append(closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := mgr.Close(ctx); err != nil {
			log.Warn("stop enclaves", zap.Error(err))
		}
	})
	if b.api != nil {
		// Other invokers' first owners of an image take its key from this invoker's owners.
		kctx, kcancel := context.WithCancel(context.Background())
		kdone := make(chan struct{})
		go func() {
			defer close(kdone)
			serveKeyRequests(kctx, b.api, mgr, log)
		}()
		closers = append(closers, func() { kcancel(); <-kdone })
		// A drain elsewhere asks this invoker to warm the images it moves here (prepare.go).
		pctx, pcancel := context.WithCancel(context.Background())
		pdone := make(chan struct{})
		go func() {
			defer close(pdone)
			servePrepare(pctx, b.api, mgr, log, func() {
				select {
				case b.warmChanged <- struct{}{}:
				default: // a signal is pending already; one ping reports every image warm by then
				}
			})
		}()
		closers = append(closers, func() { pcancel(); <-pdone })
	}

	// The activations' proxy directories on tmpfs (onTmpfs; the oci backend's bundles too, in its
	// registry entry); where that cannot be, on disk.
	if _, err := onTmpfs(filepath.Join(a.runtime, "s")); err != nil {
		log.Warn("the proxy directories stay on disk", zap.Error(err))
	}
	sandboxes, err := se.build(a)
	if err != nil {
		return nil, nil, err
	}
	// Leftovers of an earlier run of this invoker (OpenWhisk removes wsk{N}_* containers at start).
	cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
	got, rerr := sandboxes.Reap(cctx)
	ccancel()
	reaped.Add(got)
	if rerr != nil {
		log.Warn("removing leftover sandboxes failed", zap.String("sandbox", sandboxes.Name()), zap.Error(rerr))
	}
	if !reaped.Zero() {
		log.Info("removed what an earlier instance of this invoker left", append(reapedFields(reaped),
			zap.String("runtime_dir", a.runtime))...)
	}
	if legacy := legacyRuntimeDirs(id); len(legacy) > 0 {
		log.Info("runtime directories of an older version are left as they are (nothing tells a crashed invoker's "+
			"from a running one's); remove them once no invoker of that version runs", zap.Strings("dirs", legacy))
	}
	closers = append(closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sandboxes.Close(ctx); err != nil {
			log.Warn("close sandboxes", zap.Error(err))
		}
	})
	ex, err := executor.New(mgr, sandboxes, executor.Config{Model: a.model, ProxyDir: filepath.Join(a.runtime, "s")}, log)
	if err != nil {
		return nil, nil, fmt.Errorf("executor: %w", err)
	}
	log.Info("executor ready", zap.String("model", a.model.Name()), zap.String("sandbox", sandboxes.Name()),
		zap.String("enclave", backend.Name()), zap.String("runtime_dir", a.runtime))
	return ex, release, nil
}
