package harness

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/embed"
	"github.com/teemate/platform/invoker/daemon"
	"github.com/teemate/platform/invoker/kafka"
)

// DefaultOCIRuntime is the runtime the in-process invokers' oci sandbox runs with when
// DirectConfig.OCIRuntime is empty (the launcher; see daemon.DefaultOCIRuntime).
const DefaultOCIRuntime = daemon.DefaultOCIRuntime

// DirectConfig configures the in-process platform.
type DirectConfig struct {
	RepoDir  string
	ShimPath string // the teemate model's shim
	Sandbox  string // oci (default), docker, process (development only: not a container)
	// Concurrency is the largest burst; it sizes the invoker's user memory and TCS slots.
	Concurrency int
	// Slots is the number of TCS slots of teemate's warm enclave; 0 means DefaultSlots(). Requests
	// beyond it wait for an enclave thread; the owner's memory grows with it.
	Slots int
	// PoolSize is the sandbox backend's pool of created sandboxes (daemon.Backends.PoolSize).
	PoolSize int
	// OCIRuntime is the oci sandbox's runtime (daemon.Backends.OCIRuntime): DefaultOCIRuntime when empty.
	OCIRuntime string
	// UnsafeOwnerAsRoot and EgressAllow: the enclave owners' confinement (daemon.Backends). The
	// object store Run starts is added to the egress allow-list (AllowEgress).
	UnsafeOwnerAsRoot bool
	EgressAllow       string
	// IsolateReuse is teemate's isolate reuse (daemon.Backends.IsolateReuse): "" or "none" for the
	// default.
	IsolateReuse string
	// ActionMemoryMB is every action's memory limit.
	ActionMemoryMB int
	StateDir       string
	Logger         *zap.Logger
}

const (
	benchNamespace = "guest"
	benchUUID      = "7a1ae1a1-7be8-4c4a-8d2c-9c4f3ac0b1e5"
)

// Direct runs the platform in this process: an embedded broker, the controller-adapter's own
// controller (controller-adapter/embed: store, load balancer, REST and internal API) and one
// in-process invoker per model.
type Direct struct {
	cfg  DirectConfig
	auth string // the bench tenant's "uuid:key"
	emb  *kafka.Embedded
	ctl  *embed.Controller

	mu      sync.Mutex
	invoker int      // id of the running invoker, -1 when none
	egress  []string // AllowEgress endpoints
	nextID  int
}

// StartDirect starts the broker and the controller, and creates the bench's tenant.
func StartDirect(cfg DirectConfig) (_ *Direct, err error) {
	if cfg.Sandbox == "" {
		cfg.Sandbox = "oci"
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	d := &Direct{cfg: cfg, auth: benchUUID + ":" + rand.Text() + rand.Text(), invoker: -1}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.emb, err = kafka.StartEmbedded(kafka.EmbeddedOptions{DataDir: filepath.Join(cfg.StateDir, "kafka"),
		Addr: "127.0.0.1:0", Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if d.ctl, err = embed.Start(ctx, embed.Config{DataDir: filepath.Join(cfg.StateDir, "controller"),
		Kafka: kafka.Config{Brokers: d.emb.Addrs(), Logger: cfg.Logger}, Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	uuid, key, _ := strings.Cut(d.auth, ":")
	if err := d.ctl.AddNamespace(ctx, benchNamespace, uuid, key); err != nil {
		return nil, fmt.Errorf("bench tenant: %w", err)
	}
	return d, nil
}

// Deploy creates the actions through the controller's REST API, as any client does.
func (d *Direct) Deploy(ctx context.Context, actions []ActionSpec) error {
	rest, err := NewAPI(d.ctl.APIHost(), d.auth)
	if err != nil {
		return err
	}
	return rest.Deploy(ctx, actions)
}

// REST is the in-process controller's API host and the bench tenant's key.
func (d *Direct) REST() (string, string) { return d.ctl.APIHost(), d.auth }

// UseModel starts an in-process invoker for the model on the configured sandbox backend. Each model
// gets its own invoker id (topic invoker{N}), so nothing of a previous model is consumed by the next.
func (d *Direct) UseModel(ctx context.Context, model string) (func(), error) {
	if model == "native" {
		p := filepath.Join(d.cfg.RepoDir, "deploy", "images", "native", "proxy.js")
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%w: the native action proxy %s is missing", ErrUnavailable, p)
		}
	}
	d.mu.Lock()
	id := d.nextID
	d.nextID++
	d.mu.Unlock()
	conc := d.cfg.Concurrency
	if conc < 1 {
		conc = 1
	}
	runCtx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	cfg := daemon.Config{ID: id, Kafka: strings.Join(d.emb.Addrs(), ","), APIHost: d.ctl.APIHost(), Listen: "-",
		StateDir: d.invokerState(id), StoreToken: d.ctl.InvokerToken(),
		UserMemoryMB: (conc + 2) * d.cfg.ActionMemoryMB, Logger: d.cfg.Logger,
		Ready: func(daemon.Info) { close(ready) }}
	b := daemon.Backends{Sandbox: d.cfg.Sandbox, Enclave: "direct", Model: model, RepoDir: d.cfg.RepoDir,
		ShimPath: d.cfg.ShimPath, SlotsPerOwner: d.cfg.Slots,
		PoolSize: d.cfg.PoolSize, OCIRuntime: d.cfg.OCIRuntime, UnsafeOwnerAsRoot: d.cfg.UnsafeOwnerAsRoot, EgressAllow: d.egressAllow(),
		IsolateReuse: d.cfg.IsolateReuse}
	if b.SlotsPerOwner <= 0 {
		b.SlotsPerOwner = DefaultSlots(runtime.NumCPU())
	}
	go func() { done <- daemon.RunWithBackends(runCtx, cfg, b) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("%w: invoker for %s: %v", ErrUnavailable, model, err)
	case <-ctx.Done():
		cancel()
		<-done //nolint:errcheck // the invoker stops because it was cancelled; ctx's error says why
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		cancel()
		<-done //nolint:errcheck // the invoker stops because it was cancelled; the time-out says why
		return nil, fmt.Errorf("%w: invoker for %s did not start within 60 s", ErrUnavailable, model)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				d.cfg.Logger.Warn("invoker stopped with an error", zap.String("model", model), zap.Error(err))
			}
			d.mu.Lock()
			d.invoker = -1
			d.mu.Unlock()
		})
	}
	// The controller sends activations only to healthy invokers: this one is, once its health
	// test action ran on the model (and the previous model's invoker has said it is disabled).
	hctx, hcancel := context.WithTimeout(ctx, 120*time.Second)
	defer hcancel()
	if err := d.ctl.WaitInvoker(hctx, id); err != nil {
		stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: invoker for %s: %v", ErrUnavailable, model, err)
	}
	d.mu.Lock()
	d.invoker = id
	d.mu.Unlock()
	return stop, nil
}

// Invoke runs one blocking activation through the controller (embed.Controller.Invoke: the REST
// invoke's message, load balancer and completion, without the HTTP round trip). ClientMs covers
// the controller's part too: authentication, the action read, publishing and the answer.
func (d *Direct) Invoke(ctx context.Context, action string, params json.RawMessage) (Reply, error) {
	d.mu.Lock()
	inv := d.invoker
	d.mu.Unlock()
	if inv < 0 {
		return Reply{}, errors.New("direct: no invoker running")
	}
	start := time.Now()
	a, err := d.ctl.Invoke(ctx, d.auth, action, params)
	if err != nil {
		return Reply{}, err
	}
	return Reply{ClientMs: float64(time.Since(start).Microseconds()) / 1000, Activation: a}, nil
}

// DefaultSlots is the warm enclave's TCS count for a machine with cores CPUs: four per core
// (at least four). More threads than that add an isolate's memory each without adding
// throughput (the activations are CPU-bound); requests beyond them wait for a thread.
func DefaultSlots(cores int) int { return max(4, 4*cores) }

// MemoryRoot is this process: the in-process invoker's enclave owners and sandboxes are its children.
func (d *Direct) MemoryRoot() int { return os.Getpid() }

// Close stops everything StartDirect started.
func (d *Direct) Close() {
	if d.ctl != nil {
		if err := d.ctl.Close(); err != nil {
			d.cfg.Logger.Warn("close the controller", zap.Error(err))
		}
	}
	if d.emb != nil {
		d.emb.Close()
	}
}

// AllowEgress adds a host-loopback endpoint ("host:port") the enclave owners of invokers started
// from now on may reach (Run adds its object store, which the uploader function writes to).
func (d *Direct) AllowEgress(hostport string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.egress = append(d.egress, hostport)
}

func (d *Direct) egressAllow() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	all := d.egress
	if d.cfg.EgressAllow != "" {
		all = append([]string{d.cfg.EgressAllow}, all...)
	}
	return strings.Join(all, ",")
}
