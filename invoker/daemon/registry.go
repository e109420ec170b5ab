package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/enclave"
	"github.com/teemate/platform/invoker/internal/enclave/direct"
	"github.com/teemate/platform/invoker/internal/enclave/sgx"
	"github.com/teemate/platform/invoker/internal/executor"
	"github.com/teemate/platform/invoker/internal/sandbox"
	"github.com/teemate/platform/invoker/internal/sandbox/docker"
	"github.com/teemate/platform/invoker/internal/sandbox/oci"
	"github.com/teemate/platform/invoker/internal/sandbox/process"
)

// The registry: every backend and model this invoker can run, by name, in one place. Each entry
// says how it probes this host (with the reason when it cannot run here) and how it is built from
// Backends. bin/invoker builds what its flags name; the controller-adapter's standalone mode asks
// ChooseBackends which to default to. The order of each list is the preference for "auto".

// ErrUnknownBackend is returned for a backend or model name this invoker does not know; the
// message lists the names it knows.
var ErrUnknownBackend = errors.New("unknown backend")

// ErrNotAvailable is returned by ChooseBackends for a backend that cannot run on this host; the
// message says why.
var ErrNotAvailable = errors.New("backend not available on this machine")

// None is the backend name that runs no executor: every activation is answered with a whisk
// error. It is a valid sandbox and enclave name, never chosen by "auto".
const None = "none"

// Host is what a backend's probe may ask about the machine. RealHost asks this machine; a test
// describes one.
type Host struct {
	// Repo is the repository root: the function images are under Repo/.state/images.
	Repo string
	// Exists reports whether a path exists.
	Exists func(path string) bool
	// OnPath reports whether an executable is on PATH.
	OnPath func(name string) bool
	// Root: the invoker runs as root.
	Root bool
	// OCIRuntime is the oci backend's runtime as Backends.OCIRuntime names it ("": the default,
	// teemate-launch): its probe asks for what that runtime needs and nothing else.
	OCIRuntime string
	// LaunchBlocked and CrunBlocked say why teemate-launch cannot limit containers here and why
	// crun cannot run by itself here ("": nothing); nil asks nothing.
	LaunchBlocked, CrunBlocked func() string
}

// RealHost is this machine, with the repository at repo.
func RealHost(repo string) Host {
	return Host{
		Repo:   repo,
		Exists: func(p string) bool { _, err := os.Stat(p); return err == nil },
		OnPath: func(name string) bool { _, err := exec.LookPath(name); return err == nil },
		Root:   os.Geteuid() == 0,

		LaunchBlocked: oci.LaunchBlocked,
		CrunBlocked:   oci.CrunBlocked,
	}
}

// assembly is what a backend or model is built from: the settings, and the invoker's private
// runtime directory and sandbox name prefix.
type assembly struct {
	log     *zap.Logger
	b       Backends
	repo    string // absolute repository root
	runtime string // the invoker's runtime directory (runtimedir.go) for sockets and state
	records string // where owner processes and their network helpers are recorded (reap.Record)
	prefix  string // sandbox names wsk{N}_...
	model   executor.Model
}

// entry is what every registered backend and model has: a name and, for backends, a probe that
// says why it cannot run on a host (nil: it can, or cannot tell before building).
type entry struct {
	name  string
	probe func(h Host) error
}

func (e entry) registered() entry { return e }

type registered interface{ registered() entry }

type sandboxEntry struct {
	entry
	// build makes the runtime; nil for "none".
	build func(a *assembly) (sandbox.Runtime, error)
	// inImage: sandboxes see their image's filesystem (containers), so programs are named by
	// their paths in the image; otherwise they see the host's (process).
	inImage bool
}

type enclaveEntry struct {
	entry
	// build makes the backend; nil for "none".
	build func(a *assembly) (enclave.Backend, error)
}

type modelEntry struct {
	entry
	// build makes the model's strategy; inImage is the sandbox backend's.
	build func(a *assembly, inImage bool) (executor.Model, error)
}

var sandboxes = []sandboxEntry{
	// oci and docker isolate alike, but the oci backend's pool of created containers starts one in
	// milliseconds where the Docker Engine takes hundreds.
	{entry: entry{"oci", probeOCI}, build: buildOCI, inImage: true},
	{entry: entry{"docker", probeDocker}, build: buildDocker, inImage: true},
	// No isolation: for development only (it says so in its logs).
	{entry: entry{"process", nil}, build: buildProcess},
	{entry: entry{None, nil}},
}

var enclaves = []enclaveEntry{
	{entry: entry{"sgx", probeSGX}, build: buildSGX},
	// No SGX: the same runtime as a plain (confined) process; no confidentiality, and it says so.
	{entry: entry{"direct", probeDirect}, build: buildDirect},
	{entry: entry{None, nil}},
}

var models = []modelEntry{
	{entry: entry{executor.ModelTeemate, nil}, build: buildSharedEnclave},
	{entry: entry{executor.ModelNative, nil}, build: buildNative},
	{entry: entry{executor.ModelStrawman, nil}, build: buildStrawman},
}

// SandboxNames, EnclaveNames and ModelNames list the registered names, preferred first.
func SandboxNames() []string { return names(sandboxes) }
func EnclaveNames() []string { return names(enclaves) }
func ModelNames() []string   { return names(models) }

func names[E registered](entries []E) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.registered().name
	}
	return out
}

// lookup finds the entry called name, or says which names there are.
func lookup[E registered](what, name string, entries []E) (E, error) {
	for _, e := range entries {
		if e.registered().name == name {
			return e, nil
		}
	}
	var zero E
	return zero, fmt.Errorf("%w: %s %q (known: %s)", ErrUnknownBackend, what, name, strings.Join(names(entries), ", "))
}

func lookupSandbox(name string) (sandboxEntry, error) { return lookup("sandbox", name, sandboxes) }
func lookupEnclave(name string) (enclaveEntry, error) { return lookup("enclave", name, enclaves) }
func lookupModel(name string) (modelEntry, error)     { return lookup("model", name, models) }

// Choice names the backends and the model of an invoker.
type Choice struct {
	Sandbox, Enclave, Model string
}

// ChooseBackends resolves sandbox, enclave and model names as the controller-adapter's
// --sandbox, --enclave and --model flags give them. "" or "auto" takes the first backend of the
// registry that is available on h; a named backend must be known (ErrUnknownBackend) and
// available (ErrNotAvailable, with the probe's reason). "none" is always allowed. The model
// defaults to "teemate".
func ChooseBackends(sandbox, enclave, model string, h Host) (Choice, error) {
	var c Choice
	var err error
	if c.Sandbox, err = choose("sandbox", sandbox, sandboxes, h); err != nil {
		return Choice{}, err
	}
	if c.Enclave, err = choose("enclave", enclave, enclaves, h); err != nil {
		return Choice{}, err
	}
	if model == "" {
		model = executor.ModelTeemate
	}
	if _, err := lookupModel(model); err != nil {
		return Choice{}, err
	}
	c.Model = model
	return c, nil
}

func choose[E registered](what, want string, entries []E, h Host) (string, error) {
	if want == "" || want == "auto" {
		var why []string
		for _, x := range entries {
			e := x.registered()
			if e.name == None {
				continue
			}
			if e.probe == nil {
				return e.name, nil
			}
			err := e.probe(h)
			if err == nil {
				return e.name, nil
			}
			why = append(why, fmt.Sprintf("%s: %v", e.name, err))
		}
		return "", fmt.Errorf("%w: no %s backend (%s)", ErrNotAvailable, what, strings.Join(why, "; "))
	}
	x, err := lookup(what, want, entries)
	if err != nil {
		return "", err
	}
	if e := x.registered(); e.probe != nil {
		if err := e.probe(h); err != nil {
			return "", fmt.Errorf("%w: %s %q: %w", ErrNotAvailable, what, want, err)
		}
	}
	return want, nil
}

// ---- probes ------------------------------------------------------------------------------------

func imagesBuilt(h Host) error {
	if !h.Exists(filepath.Join(h.Repo, ".state", "images", "teemate", "image.json")) {
		return errors.New("the function images are not built (make images)")
	}
	return nil
}

func probeDocker(h Host) error {
	if !h.Exists("/var/run/docker.sock") {
		return errors.New("no Docker Engine socket at /var/run/docker.sock")
	}
	return imagesBuilt(h)
}

// probeOCI asks for what the chosen runtime needs (Host.OCIRuntime): the launcher its binary in
// bin/ and cgroup v1 controllers, runc or crun theirs on PATH (crun on a hybrid host also
// bin/teemate-crun), a path that it exists; then root and the images.
func probeOCI(h Host) error {
	var missing []string
	switch rt := h.OCIRuntime; rt {
	case "", oci.DefaultRuntime:
		if l := filepath.Join(h.Repo, "bin", oci.DefaultRuntime); !h.Exists(l) {
			missing = append(missing, l+" (make build; or --oci-runtime runc)")
		}
		if h.LaunchBlocked != nil {
			if why := h.LaunchBlocked(); why != "" {
				missing = append(missing, why)
			}
		}
	case "runc", "crun":
		if !h.OnPath(rt) {
			missing = append(missing, rt+" on PATH (apt-get install "+rt+")")
		}
		if w := filepath.Join(h.Repo, "bin", "teemate-crun"); rt == "crun" && h.CrunBlocked != nil && h.CrunBlocked() != "" && !h.Exists(w) {
			missing = append(missing, w+" (make build): "+h.CrunBlocked())
		}
	default:
		if filepath.IsAbs(rt) && !h.Exists(rt) {
			missing = append(missing, rt)
		}
	}
	if !h.Root {
		missing = append(missing, "root (namespaces, cgroups and mounts need it)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("oci runtime %s: missing %s", ociRuntimeName(h.OCIRuntime), strings.Join(missing, "; "))
	}
	return imagesBuilt(h)
}

// ociRuntimeName is the runtime Backends.OCIRuntime names, the default for "".
func ociRuntimeName(name string) string {
	if name == "" {
		return oci.DefaultRuntime
	}
	return name
}

func probeDirect(h Host) error {
	if !h.OnPath("node") {
		return errors.New("node is not on PATH (the owners run the enclave runtime on it)")
	}
	return nil
}

func probeSGX(h Host) error {
	var missing []string
	for _, dev := range []string{"/dev/sgx_enclave", "/dev/teemate"} {
		if !h.Exists(dev) {
			missing = append(missing, dev)
		}
	}
	if !h.OnPath("gramine-sgx") {
		missing = append(missing, "gramine-sgx on PATH")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// ---- builders ----------------------------------------------------------------------------------

func buildProcess(a *assembly) (sandbox.Runtime, error) {
	pcfg := process.Config{StateDir: filepath.Join(a.runtime, "p"), IDPrefix: a.prefix, PoolSize: a.b.PoolSize}
	// With the start stub built, sandboxes are created ahead of their activations (a pool, as the
	// oci backend has); without it every Create starts a process.
	if stub := filepath.Join(a.repo, "bin", "teemate-start"); fileExists(stub) {
		pcfg.StartStub = stub
	} else {
		a.log.Info("no start stub (make build): process sandboxes are created on the request path", zap.String("path", stub))
	}
	rt, err := process.New(pcfg, a.log)
	if err != nil {
		return nil, fmt.Errorf("process sandbox: %w", err)
	}
	return rt, nil
}

func buildDocker(a *assembly) (sandbox.Runtime, error) {
	// Containers carry the runtime directory's name, unique per state directory and invoker id,
	// so that a restarted invoker removes its predecessor's and no other invoker's.
	rt, err := docker.New(context.Background(), docker.Config{IDPrefix: a.prefix, Owner: filepath.Base(a.runtime)}, a.log)
	if err != nil {
		return nil, fmt.Errorf("docker sandbox: %w", err)
	}
	return rt, nil
}

func buildOCI(a *assembly) (sandbox.Runtime, error) {
	images := a.b.ImagesDir
	if images == "" {
		images = filepath.Join(a.repo, ".state", "images")
	}
	// Each runtime directory has a cgroup parent of its own, so that a restarted invoker removes
	// every cgroup its predecessor left and no other invoker's.
	bin, err := ociRuntime(a.repo, a.b.OCIRuntime)
	if err != nil {
		return nil, fmt.Errorf("oci sandbox: %w", err)
	}
	state := filepath.Join(a.runtime, "o")
	if _, err := onTmpfs(state); err != nil {
		a.log.Warn("the bundles stay on disk", zap.Error(err))
	}
	prewarm := oci.PoolKey{Image: a.model.Rootfs(), MemoryMB: 256}
	if m, ok := a.model.(executor.SharedEnclave); ok {
		prewarm.Prestart = m.ShimPath // the key the executor's specs get (SharedEnclave sets Prestart)
	}
	rt, err := oci.New(oci.Config{Runtime: bin, ImagesDir: images, StateDir: state, IDPrefix: a.prefix,
		CgroupParent: "/teemate/" + filepath.Base(a.runtime), OwnCgroupParent: true, PoolSize: a.b.PoolSize, RefillWorkers: 2,
		Prewarm: []oci.PoolKey{prewarm}}, a.log)
	if err != nil {
		return nil, fmt.Errorf("oci sandbox: %w", err)
	}
	return rt, nil
}

// OCIRuntimes are the names Backends.OCIRuntime takes besides a path, the default first.
var OCIRuntimes = []string{oci.DefaultRuntime, "runc", "crun"}

// DefaultOCIRuntime is the oci backend's runtime when Backends.OCIRuntime is empty: the
// launcher (see oci.DefaultRuntime for why).
const DefaultOCIRuntime = oci.DefaultRuntime

// ociRuntime resolves Backends.OCIRuntime to what oci.Config.Runtime takes: the programs of
// bin/ by their paths (teemate-launch; teemate-crun for crun where crun cannot run by itself).
func ociRuntime(repo, name string) (string, error) {
	switch name {
	case "runc":
		return "runc", nil
	case "crun":
		if oci.CrunBlocked() == "" {
			return "crun", nil
		}
		w := filepath.Join(repo, "bin", "teemate-crun")
		if !fileExists(w) {
			return "", fmt.Errorf("%w: %s: %s is missing (make build)", ErrNotAvailable, oci.CrunBlocked(), w)
		}
		return w, nil
	case "", oci.DefaultRuntime:
		l := filepath.Join(repo, "bin", oci.DefaultRuntime)
		if !fileExists(l) {
			return "", fmt.Errorf("%w: oci runtime %s: %s is missing (make build; or --oci-runtime runc)", ErrNotAvailable, oci.DefaultRuntime, l)
		}
		return l, nil
	}
	if !filepath.IsAbs(name) {
		return "", fmt.Errorf("%w: oci runtime %q: want %s or an absolute path", ErrUnknownBackend, name, strings.Join(OCIRuntimes, ", "))
	}
	return name, nil
}

func buildDirect(a *assembly) (enclave.Backend, error) {
	owner, err := direct.FindOwnerJS(a.repo)
	if err != nil {
		return nil, fmt.Errorf("direct enclave: %w", err)
	}
	conf, err := ownerConfinement(a.repo, a.b)
	if err != nil {
		return nil, fmt.Errorf("direct enclave: %w", err)
	}
	conf.RecordDir = a.records
	b, err := direct.New(direct.Config{OwnerJS: owner, Confine: conf, UnsafeOwnerAsRoot: a.b.UnsafeOwnerAsRoot,
		KeyDir: a.b.keyDir, RecordDir: a.records}, a.log)
	if err != nil {
		return nil, fmt.Errorf("direct enclave: %w", err)
	}
	return b, nil
}

func buildSGX(a *assembly) (enclave.Backend, error) {
	cfg := SGXConfig(a.repo, a.runtime)
	cfg.RecordDir = a.records
	b, err := sgx.New(cfg, a.log)
	if err != nil {
		return nil, fmt.Errorf("sgx enclave: %w", err)
	}
	return b, nil
}

func buildSharedEnclave(a *assembly, inImage bool) (executor.Model, error) {
	if inImage {
		return executor.SharedEnclave{ShimPath: imageShim}, nil
	}
	shim := a.b.ShimPath
	if shim == "" {
		shim = filepath.Join(a.repo, "bin", "teemate-shim")
	}
	if err := requireFile("teemate shim", shim); err != nil {
		return nil, err
	}
	return executor.SharedEnclave{ShimPath: shim}, nil
}

func buildNative(a *assembly, inImage bool) (executor.Model, error) {
	if inImage {
		return executor.Native{Command: []string{imageNode, "/opt/teemate/native/proxy.js"}}, nil
	}
	node, err := hostNode(executor.ModelNative)
	if err != nil {
		return nil, err
	}
	return executor.Native{Command: []string{node, filepath.Join(a.repo, "deploy", "images", "native", "proxy.js")}}, nil
}

func buildStrawman(a *assembly, inImage bool) (executor.Model, error) {
	if inImage {
		return executor.Strawman{ShimPath: imageShim,
			Runtime: []string{imageNode, "/opt/teemate/enclave-runtime/trusted/owner.js"}}, nil
	}
	shim := a.b.ShimPath
	if shim == "" {
		shim = filepath.Join(a.repo, "bin", "teemate-shim")
	}
	if err := requireFile("teemate shim", shim); err != nil {
		return nil, err
	}
	// The strawman's launcher boots the sandbox's own runtime, then becomes the shim.
	if err := requireFile("strawman launcher", executor.StrawmanLauncher(shim)); err != nil {
		return nil, err
	}
	node, err := hostNode(executor.ModelStrawman)
	if err != nil {
		return nil, err
	}
	owner, err := direct.FindOwnerJS(a.repo)
	if err != nil {
		return nil, fmt.Errorf("strawman model: %w", err)
	}
	runtime := []string{node, owner}
	// This runtime runs on the host's network (the process sandbox): actions with network reach
	// the same host-loopback endpoints as in the shared enclave's owners, and no others.
	allow, err := egressAllow(a.b)
	if err != nil {
		return nil, fmt.Errorf("strawman model: %w", err)
	}
	if len(allow) > 0 {
		hosts := make([]string, len(allow))
		for i, h := range allow {
			hosts[i] = h.String()
		}
		runtime = append(runtime, "--egress-allow", strings.Join(hosts, ","))
	}
	return executor.Strawman{ShimPath: shim, Runtime: runtime}, nil
}

// Programs as the function images hold them (deploy/images/build.sh puts them there).
const (
	imageShim = "/bin/teemate-shim"
	imageNode = "/usr/bin/node"
)

// hostNode is node's full path: sandboxes get a clean environment without PATH.
func hostNode(model string) (string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", fmt.Errorf("%s model needs node: %w", model, err)
	}
	return node, nil
}

func requireFile(what, path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s (run make build): %w", what, err)
	}
	return nil
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
