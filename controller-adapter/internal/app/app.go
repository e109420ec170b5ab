package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/embed"
	"github.com/teemate/platform/controller-adapter/internal/api"
	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/credentials"
	"github.com/teemate/platform/invoker/daemon"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

// The well-known development credentials OpenWhisk's standalone mode creates. Anyone can read
// them, so they are seeded only in standalone mode.
const (
	GuestNamespace       = "guest"
	GuestUUID            = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
	GuestKey             = "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
	SystemNamespace      = "whisk.system"
	SystemUUID           = "789c46b1-71f6-4ed5-8c54-816aa4f8c502"
	SystemKey            = "abczO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
	defaultEmbeddedKafka = "127.0.0.1:9092"
)

// dataDirOwn are the subdirectories of the data directory that the controller-adapter owns and
// keeps private all the way down (credentials.PrivateDir): the embedded broker's log and its
// users. Others (images/ of `make images`, invoker/) have their own rules.
var dataDirOwn = []string{"kafka", "kafka-users"}

// Config of the controller-adapter. Zero values take the defaults noted.
type Config struct {
	// Host is the address the API listens on (default 127.0.0.1: the standalone platform runs
	// actions without isolation unless a container backend is chosen, so it is not exposed
	// unless asked).
	Host string
	// Port of the REST API (default 3233; 0 picks a free port).
	Port int
	// DataDir holds controller.db, and in standalone mode kafka/ and invoker/ (default .state).
	DataDir string
	// Kafka is the comma-separated broker list. Empty in standalone mode starts the embedded
	// broker (on EmbeddedKafkaAddr).
	Kafka string
	// EmbeddedKafkaAddr is where the embedded broker listens (default 127.0.0.1:9092; port 0 picks
	// a free one). A taken port is an error: the broker never moves by itself.
	EmbeddedKafkaAddr string
	// Standalone also runs the embedded broker (unless Kafka is set) and one in-process invoker.
	Standalone bool
	// PoolSize is the in-process invoker's sandbox pool size (daemon.Backends.PoolSize).
	PoolSize int
	// OCIRuntime is the in-process invoker's oci runtime (daemon.Backends.OCIRuntime).
	OCIRuntime string
	// IsolateReuse is the in-process invoker's isolate reuse (daemon.Backends.IsolateReuse).
	IsolateReuse string
	// PagePoolMB is the in-process invoker's page pool budget (daemon.Backends.PagePoolMB).
	PagePoolMB *int
	// UnsafeOwnerAsRoot, EgressAllow and OwnerUser configure the in-process invoker's enclave
	// owners' confinement (daemon.Backends has the details): by default, as root, owners run
	// confined as 64000:64000 and may reach only the REST API on the host's loopback.
	UnsafeOwnerAsRoot bool
	EgressAllow       string
	OwnerUser         string
	// Sandbox, Enclave and Model select the in-process invoker's backends ("" or "auto" = the best
	// the machine offers; see daemon.ChooseBackends).
	Sandbox, Enclave, Model string
	// RepoDir is the repository root the invoker finds the enclave runtime under (default: found
	// from the executable or the working directory).
	RepoDir string
	// ControllerID is this controller's instance (default "0").
	ControllerID string
	// InvokerToken authenticates invokers on the /internal endpoints (storing activation records,
	// reading actions). Empty reads InvokerTokenFile.
	InvokerToken string
	// InvokerTokenFile holds the invoker token (mode 0600), generated on first start (default
	// DataDir/invoker.token); invokers elsewhere read a copy with --invoker-token-file.
	InvokerTokenFile string
	// AdminPasswordFile holds the password of the operator's routes on invokers (drain, undrain;
	// Basic auth as user admin), mode 0600, generated on first start (default
	// DataDir/admin.password); env TEEMATE_ADMIN_PASSWORD overrides it. `controller-adapter
	// invoker ...` reads the same file.
	AdminPasswordFile string
	// EvidencePolicy, when set, is the policy sgx-dcap evidence an invoker publishes must verify
	// under before the API serves it (api.Config.EvidencePolicy).
	EvidencePolicy *attest.Policy
	// Throttles are the system's limits per namespace (zero fields: OpenWhisk's 60 invocations a
	// minute, 30 concurrent, 60 trigger fires a minute); `namespace limits` overrides them per
	// namespace.
	Throttles embed.Throttles
	// KafkaSASL and KafkaTLS are the credentials for real brokers (Kafka set); in standalone mode
	// with real brokers the in-process invoker uses them too, so that user needs both roles'
	// grants. The embedded broker makes its own users, with their credentials under
	// DataDir/kafka-users.
	KafkaSASL kafka.SASL
	KafkaTLS  *tls.Config
	// Logger; nil means a production logger.
	Logger *zap.Logger
	// Ready, when set, is called once the API serves and (standalone) the invoker has started.
	Ready func(Info)
	// DrainTimeout bounds a graceful stop (ctx ending; default 30 s): see Run.
	DrainTimeout time.Duration
	// PrepareTimeout bounds an invoker drain's wait for one image on its destination (default
	// balancer.DefaultPrepareTimeout).
	PrepareTimeout time.Duration

	// Tuning for tests; zero values take the production defaults.
	Health           balancer.HealthConfig
	HealthTick       time.Duration
	PingInterval     time.Duration
	InvokerMemoryMB  int
	InvokerDrainTime time.Duration
}

// Info describes a started controller-adapter.
type Info struct {
	// APIHost is the URL clients use, e.g. http://127.0.0.1:3233.
	APIHost string
	// Brokers are the Kafka brokers in use.
	Brokers []string
	// GuestAuth is guest's "uuid:key" in standalone mode, empty otherwise.
	GuestAuth string
	// Sandbox, Enclave and Model are the in-process invoker's backends (standalone only).
	Sandbox, Enclave, Model string
}

func (c *Config) defaults() {
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.DataDir == "" {
		c.DataDir = ".state"
	}
	if c.ControllerID == "" {
		c.ControllerID = "0"
	}
	if c.RepoDir == "" {
		c.RepoDir = FindRepoDir()
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
}

// DefaultDrainTimeout is Config.DrainTimeout's default: long enough for the usual blocking
// invocation; callers of longer ones get 202 with their activation id, as after their own wait.
const DefaultDrainTimeout = 30 * time.Second

// Run starts the controller-adapter and blocks until ctx ends or a component fails. When ctx ends
// it stops gracefully, within cfg.DrainTimeout (D), in this order:
//
//  1. the API stops accepting invocations: 503 with Retry-After, /ready 503 (reads, and the
//     invokers' endpoints, keep working);
//  2. the invocations it accepted are answered: blocking callers get their result, or, if still
//     waiting at D less a quarter, 202 with their activation id;
//  3. the in-process invoker (standalone) stops taking work and finishes what it took, by the same
//     deadline, after which it abandons it (whisk errors, records and acks still sent): it stores
//     records through the API, which is why the API is still up;
//  4. the API server, the balancer, the Kafka clients, the store and the embedded broker close,
//     in the last quarter of D; the API server closes its port first and still answers a request
//     begun on a connection it had just accepted (httpstop.Quiesce), then shuts down.
//
// After a component failed it closes everything at once, in the same order less the drain.
func Run(ctx context.Context, cfg Config) (err error) {
	cfg.defaults()
	log := cfg.Logger
	if log == nil {
		if log, err = zap.NewProduction(); err != nil {
			return fmt.Errorf("create logger: %w", err)
		}
	}
	ctrl := whisk.NewControllerInstanceID(cfg.ControllerID)
	if err := ctrl.Validate(); err != nil {
		return fmt.Errorf("controller id: %w", err)
	}
	// The data directory holds the store, the broker's log (activation parameters) and the
	// platform's secrets: private whatever it was, checked at every start. The in-process
	// invoker's state directory below it gets the same check from the invoker itself.
	fixed, err := credentials.PrivateDir(cfg.DataDir, dataDirOwn...)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	credentials.WarnFixed(log, fixed)

	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()

	// The invoker's registry of backends decides what "auto" means on this machine, and refuses
	// a named backend the machine cannot run, with the reason.
	var choice daemon.Choice
	if cfg.Standalone {
		host := daemon.RealHost(cfg.RepoDir)
		host.OCIRuntime = cfg.OCIRuntime
		if choice, err = daemon.ChooseBackends(cfg.Sandbox, cfg.Enclave, cfg.Model, host); err != nil {
			return fmt.Errorf("invoker backends: %w", err)
		}
	}
	if cfg.InvokerToken == "" {
		if cfg.InvokerTokenFile == "" {
			cfg.InvokerTokenFile = filepath.Join(cfg.DataDir, "invoker.token")
		}
		tok, created, err := credentials.Secret(cfg.InvokerTokenFile)
		if err != nil {
			return fmt.Errorf("invoker token: %w", err)
		}
		cfg.InvokerToken = tok
		if created {
			log.Info("created the invoker token (give invokers a copy with --invoker-token-file)", zap.String("file", cfg.InvokerTokenFile))
		}
	}

	adminPassword, created, err := AdminPassword(cfg.DataDir, cfg.AdminPasswordFile, true)
	if err != nil {
		return err
	}
	if created {
		log.Info("created the admin password for drain and undrain (controller-adapter invoker ...)",
			zap.String("user", api.AdminUser), zap.String("file", adminPasswordFile(cfg.DataDir, cfg.AdminPasswordFile)))
	}

	brokers := splitList(cfg.Kafka)
	sasl, invokerSASL := cfg.KafkaSASL, cfg.KafkaSASL
	if len(brokers) == 0 {
		if !cfg.Standalone {
			return errors.New("--kafka is required unless --standalone is given")
		}
		users := filepath.Join(cfg.DataDir, "kafka-users")
		if sasl, err = credentials.KafkaUser(users, kafka.ControllerUser(ctrl.AsString)); err != nil {
			return fmt.Errorf("embedded kafka: %w", err)
		}
		if invokerSASL, err = credentials.KafkaUser(users, kafka.InvokerUser(0)); err != nil {
			return fmt.Errorf("embedded kafka: %w", err)
		}
		emb, err := startEmbedded(filepath.Join(cfg.DataDir, "kafka"), cfg.EmbeddedKafkaAddr, log, []kafka.EmbeddedUser{
			{SASL: sasl, Grants: kafka.ControllerGrants(ctrl.AsString)},
			{SASL: invokerSASL, Grants: kafka.InvokerGrants(0)},
		})
		if err != nil {
			return err
		}
		closers = append(closers, emb.Close)
		brokers = emb.Addrs()
		log.Info("embedded kafka started", zap.Strings("brokers", brokers), zap.String("credentials", users))
	} else if !sasl.Enabled() {
		log.Warn("kafka without credentials: anyone who reaches the brokers can read activations and forge acks (see deploy/kafka)")
	}

	// The controller itself (store, seeding, load balancer, API) is built where bench builds its
	// own: controller-adapter/embed.
	var namespaces []embed.Namespace
	if cfg.Standalone {
		namespaces = []embed.Namespace{{Name: GuestNamespace, UUID: GuestUUID, Key: GuestKey}, {Name: SystemNamespace, UUID: SystemUUID, Key: SystemKey}}
	}
	ctl, err := embed.Start(ctx, embed.Config{
		DataDir:        cfg.DataDir,
		Kafka:          kafka.Config{Brokers: brokers, ClientID: "controller" + ctrl.AsString, Logger: log, SASL: sasl, TLS: cfg.KafkaTLS},
		ControllerID:   cfg.ControllerID,
		Listen:         net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		InvokerToken:   cfg.InvokerToken,
		AdminPassword:  adminPassword,
		Logger:         log,
		Namespaces:     namespaces,
		Health:         cfg.Health,
		HealthTick:     cfg.HealthTick,
		EvidencePolicy: cfg.EvidencePolicy,
		Throttles:      cfg.Throttles,
		PrepareTimeout: cfg.PrepareTimeout,
	})
	if err != nil {
		return err
	}
	closers = append(closers, func() {
		if err := ctl.Close(); err != nil {
			log.Warn("close the controller", zap.Error(err))
		}
	})
	apiHost := ctl.APIHost()
	fatal := make(chan error, 2)
	go func() {
		if err := ctl.Err(); err != nil {
			fatal <- fmt.Errorf("api server: %w", err)
		}
	}()
	log.Info("controller-adapter serving", zap.String("api_host", apiHost), zap.Strings("brokers", brokers),
		zap.Bool("standalone", cfg.Standalone))

	stopInvoker := func(time.Duration) {} // standalone: the in-process invoker's
	info := Info{APIHost: apiHost, Brokers: brokers}
	if cfg.Standalone {
		info.GuestAuth = GuestUUID + ":" + GuestKey
		info.Sandbox, info.Enclave, info.Model = choice.Sandbox, choice.Enclave, choice.Model
		inv, err := startInvoker(cfg, brokers, invokerSASL, apiHost, choice, log, fatal)
		if err != nil {
			return err
		}
		stopInvoker = func(within time.Duration) {
			if err := inv.StopWithin(within); err != nil {
				log.Warn("in-process invoker stopped with an error", zap.Error(err))
			}
		}
		// Registered last so it runs first: the invoker drains through the API and the broker.
		// After a graceful stop it has stopped already, and this returns at once.
		closers = append(closers, func() {
			if err := inv.Stop(); err != nil {
				log.Warn("in-process invoker stopped with an error", zap.Error(err))
			}
		})
		// "Ready" means an invoke works: wait until the balancer has seen the in-process invoker
		// healthy (its enclave owner started, its test action answered), instead of answering the
		// first callers 503. Bounded: a platform that cannot get healthy still starts and says so.
		// Without an executor ("none") the invoker never becomes healthy, by design.
		if choice.Sandbox != daemon.None && choice.Enclave != daemon.None && !waitHealthy(ctx, ctl, 60*time.Second) {
			log.Warn("the in-process invoker is not healthy yet: invocations answer 503 until it is")
		}
	}
	if cfg.Ready != nil {
		cfg.Ready(info)
	}

	select {
	case <-ctx.Done():
		drain(ctl, stopInvoker, cfg.DrainTimeout, log)
		return nil
	case err := <-fatal:
		return err
	}
}

// drain carries out steps 1 to 3 of Run's graceful stop; Run's closers do step 4.
func drain(ctl *embed.Controller, stopInvoker func(time.Duration), d time.Duration, log *zap.Logger) {
	start := time.Now()
	// The last quarter is for the abandoned activations' records and acks, the sandboxes'
	// removal and the closes.
	deadline := start.Add(d - d/4)
	log.Info("shutting down: no new invocations; answering those accepted", zap.Duration("drain_timeout", d))
	dctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := ctl.Drain(dctx); err != nil {
		log.Warn("shutting down: not every accepted invocation finished in time", zap.Error(err))
	}
	log.Info("shutting down: invocations answered; stopping the invoker", zap.Duration("elapsed", time.Since(start)))
	stopInvoker(time.Until(deadline))
	log.Info("shutting down: closing", zap.Duration("elapsed", time.Since(start)))
}

// startInvoker runs invoker 0 in this process (the invoker's composition root, daemon.Start) and
// waits until it consumes and pings. An invoker that stops by itself before Stop is reported on
// fatal.
func startInvoker(cfg Config, brokers []string, sasl kafka.SASL, apiHost string, c daemon.Choice, log *zap.Logger, fatal chan<- error) (*daemon.Running, error) {
	inv, err := daemon.Start(daemon.Config{
		ID: 0, Kafka: strings.Join(brokers, ","), KafkaSASL: sasl, KafkaTLS: cfg.KafkaTLS, APIHost: apiHost, StoreToken: cfg.InvokerToken,
		StateDir: filepath.Join(cfg.DataDir, "invoker"), Listen: "127.0.0.1:0",
		UserMemoryMB: cfg.InvokerMemoryMB, PingInterval: cfg.PingInterval, DrainTimeout: cfg.InvokerDrainTime,
		Logger: log.Named("invoker"),
	}, daemon.Backends{Sandbox: c.Sandbox, Enclave: c.Enclave, Model: c.Model, RepoDir: cfg.RepoDir, PoolSize: cfg.PoolSize, OCIRuntime: cfg.OCIRuntime,
		IsolateReuse: cfg.IsolateReuse, PagePoolMB: cfg.PagePoolMB, UnsafeOwnerAsRoot: cfg.UnsafeOwnerAsRoot, EgressAllow: cfg.EgressAllow, OwnerUser: cfg.OwnerUser})
	describe := fmt.Sprintf("in-process invoker (sandbox %s, enclave %s, model %s)", c.Sandbox, c.Enclave, c.Model)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", describe, err)
	}
	log.Info("in-process invoker started", zap.String("sandbox", c.Sandbox), zap.String("enclave", c.Enclave),
		zap.String("model", c.Model))
	go func() {
		<-inv.Done()
		if err := inv.Unexpected(); err != nil {
			fatal <- fmt.Errorf("%s: %w", describe, err)
		}
	}()
	return inv, nil
}

// startEmbedded starts the broker on addr, by default 127.0.0.1:9092 (Kafka's usual port, so
// other tools find it). A taken port is an error naming the flag: moving to another port silently
// would leave every tool configured with the old one talking to whatever holds it. Port 0 asks for
// any free port, which is then said loudly.
func startEmbedded(dataDir, addr string, log *zap.Logger, users []kafka.EmbeddedUser) (*kafka.Embedded, error) {
	if addr == "" {
		addr = defaultEmbeddedKafka
	}
	emb, err := kafka.StartEmbedded(kafka.EmbeddedOptions{DataDir: dataDir, Addr: addr, Logger: log, Users: users})
	if errors.Is(err, kafka.ErrAddrInUse) {
		host, port, _ := net.SplitHostPort(addr) // StartEmbedded has parsed it
		return nil, fmt.Errorf("the embedded Kafka broker's port %s on %s is taken by another program (another broker, or "+
			"another standalone platform?): choose another with --embedded-kafka-addr %s:PORT, or --embedded-kafka-addr %s:0 "+
			"for any free port: %w", port, host, host, host, err)
	}
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka: %w", err)
	}
	// StartEmbedded has parsed addr: the split cannot fail here.
	if _, port, _ := net.SplitHostPort(addr); port == "0" {
		log.Warn("the embedded Kafka broker listens on a port chosen at start, as asked (port 0): Kafka tools and "+
			"invokers outside this process must be given this address", zap.Strings("brokers", emb.Addrs()))
	}
	return emb, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// FindRepoDir guesses the repository root: the parent of the executable's directory (bin/), or
// the working directory or one of its parents, whichever holds enclave-runtime/.
func FindRepoDir() string {
	var starts []string
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(filepath.Dir(exe)))
	}
	wd, err := os.Getwd()
	if err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			starts = append(starts, d)
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, d := range starts {
		if fi, err := os.Stat(filepath.Join(d, "enclave-runtime")); err == nil && fi.IsDir() {
			return d
		}
	}
	return wd
}

// waitHealthy polls the balancer until an invoker is healthy, ctx ends or limit passes.
func waitHealthy(ctx context.Context, ctl *embed.Controller, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for ctl.HealthyInvokers() == 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
