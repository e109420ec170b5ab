// Package daemon is the invoker's composition root: it assembles one invoker (Kafka feed,
// activation pipeline, acks, health pings, HTTP server) and its executor from the registry of
// backends and models (registry.go), the one place that names them. bin/invoker is a thin main
// around it; the controller-adapter's standalone mode asks it which backends this machine offers
// (ChooseBackends) and runs an invoker in-process (Start), as the bench does (RunWithBackends).
// Only this package imports backend packages. It runs on the untrusted host.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/internal/httpstop"
	"github.com/teemate/platform/invoker/credentials"
	"github.com/teemate/platform/invoker/internal/activation"
	"github.com/teemate/platform/invoker/internal/feed"
	"github.com/teemate/platform/invoker/internal/journal"
	"github.com/teemate/platform/invoker/internal/metrics"
	"github.com/teemate/platform/invoker/internal/server"
	"github.com/teemate/platform/invoker/internal/whiskapi"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

// Config of an invoker. Zero values take the defaults noted per field.
type Config struct {
	// ID is the invoker instance number N: it consumes invoker{N} in group invoker{N}.
	ID int
	// Kafka is "embedded" (start a Kafka-protocol broker in this process) or comma-separated brokers.
	Kafka string
	// EmbeddedKafkaAddr is where an embedded broker listens (default 127.0.0.1:9092).
	EmbeddedKafkaAddr string
	// APIHost is the OpenWhisk REST endpoint actions are fetched from (default http://127.0.0.1:3233).
	APIHost string
	// UserMemoryMB is the memory for running activations, announced in pings (default 2048).
	UserMemoryMB int
	// Listen is the HTTP address for /ping, /metrics, /enable, /disable, /isEnabled (default
	// 127.0.0.1:8081: the admin endpoints are for the host's operator; "-" disables the server).
	Listen string
	// StateDir holds the embedded broker's data, enclave sockets, sandbox directories and the
	// activation journal (journal-invoker{N}.db).
	StateDir string
	// StaleAge answers older activations without running them (default 10 min; negative disables).
	StaleAge time.Duration
	// AtMostOnce commits offsets before running (OpenWhisk's behaviour) instead of after the ack.
	AtMostOnce bool
	// StoreToken authenticates activation-record writes to the controller-adapter.
	StoreToken string
	// AdminUser and AdminPassword guard /metrics, /enable, /disable and /isEnabled (Basic auth).
	// AdminUser defaults to "admin"; an empty AdminPassword is read from AdminPasswordFile.
	AdminUser, AdminPassword string
	// AdminPasswordFile holds the admin password (mode 0600), generated on first start (default
	// StateDir/admin.password).
	AdminPasswordFile string
	// KafkaSASL and KafkaTLS are this invoker's credentials for real brokers (Kafka = host list).
	// With an embedded broker the invoker makes its own users (see credentials.KafkaUser).
	KafkaSASL kafka.SASL
	KafkaTLS  *tls.Config
	// PingInterval between health pings (default 1 s, as OpenWhisk).
	PingInterval time.Duration
	// DrainTimeout bounds how long shutdown waits for in-flight activations (default 60 s).
	DrainTimeout time.Duration
	// Executor runs activations. Nil means none is configured: activations get a whisk error.
	Executor activation.Executor
	// Logger; nil means a production zap logger.
	Logger *zap.Logger
	// Ready, when set, is called once the invoker consumes and pings.
	Ready func(Info)

	// warmChanged signals that an image became warm here for a drain (RunWithBackends): a ping
	// goes out at once instead of at the next tick, so the controller moves the image's traffic
	// up to a ping interval sooner and the source's switch window is that much shorter.
	warmChanged <-chan struct{}
}

// Info describes a started invoker.
type Info struct {
	Instance      whisk.InvokerInstanceID
	Brokers       []string
	HTTPAddr      string
	Topic         string
	ConsumerGroup string
}

func (c *Config) defaults() {
	if c.Kafka == "" {
		c.Kafka = "embedded"
	}
	if c.EmbeddedKafkaAddr == "" {
		c.EmbeddedKafkaAddr = "127.0.0.1:9092"
	}
	if c.APIHost == "" {
		c.APIHost = "http://127.0.0.1:3233"
	}
	if c.UserMemoryMB <= 0 {
		c.UserMemoryMB = 2048
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8081"
	}
	if c.AdminUser == "" {
		c.AdminUser = "admin"
	}
	if c.StateDir == "" {
		c.StateDir = ".state"
	}
	if c.StaleAge == 0 {
		c.StaleAge = 10 * time.Minute
	} else if c.StaleAge < 0 {
		c.StaleAge = 0
	}
	if c.PingInterval <= 0 {
		c.PingInterval = time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 60 * time.Second
	}
}

// Run starts the invoker and blocks until ctx ends, then shuts down gracefully: stop consuming,
// finish in-flight activations (bounded by DrainTimeout), send a disabled ping, close everything.
func Run(ctx context.Context, cfg Config) (err error) {
	cfg.defaults()
	log := cfg.Logger
	if log == nil {
		if log, err = zap.NewProduction(); err != nil {
			return fmt.Errorf("create logger: %w", err)
		}
	}
	unique := fmt.Sprint(cfg.ID)
	display := fmt.Sprintf("invoker%d", cfg.ID)
	inst := whisk.InvokerInstanceID{Instance: cfg.ID, UniqueName: &unique, DisplayedName: &display,
		UserMemory: whisk.MB(int64(cfg.UserMemoryMB)), Tags: []string{}, DedicatedNamespaces: []string{}}
	log = log.With(zap.String("invoker", inst.Name()))
	m := metrics.New(inst.Name())

	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()

	if err := prepareState(&cfg, log); err != nil {
		return err
	}

	brokers, sasl, closeBroker, err := kafkaBrokers(cfg, log)
	if err != nil {
		return err
	}
	closers = append(closers, closeBroker)
	kcfg := kafka.Config{Brokers: brokers, ClientID: inst.Name(), Logger: log, SASL: sasl, TLS: cfg.KafkaTLS}
	topic := kafka.InvokerTopic(cfg.ID)
	if err := kafka.EnsureTopic(ctx, kcfg, topic, 1, kafka.MaxMessageBytes); err != nil {
		return fmt.Errorf("ensure topic %s: %w", topic, err)
	}
	producer, err := kafka.NewProducer(kcfg)
	if err != nil {
		return fmt.Errorf("kafka producer: %w", err)
	}
	closers = append(closers, func() {
		if err := producer.Close(); err != nil {
			log.Warn("close producer", zap.Error(err))
		}
	})
	api, err := whiskapi.New(whiskapi.Config{APIHost: cfg.APIHost, StoreToken: cfg.StoreToken})
	if err != nil {
		return fmt.Errorf("rest client: %w", err)
	}
	exec := cfg.Executor
	if exec == nil {
		exec = activation.Unavailable{Reason: "no enclave or sandbox backend is configured."}
		log.Warn("no executor configured: every activation will be answered with a whisk error")
	}
	// Sandboxes are removed after the answer, so their teardown is observed apart from the outcome.
	if o, ok := exec.(interface{ ObserveTeardown(func(time.Duration)) }); ok {
		o.ObserveTeardown(func(d time.Duration) { m.ObservePhase(metrics.PhaseSandboxTeardown, d) })
	}
	jrnl, err := journal.Open(filepath.Join(cfg.StateDir, fmt.Sprintf("journal-%s.db", inst.Name())), journal.Options{})
	if err != nil {
		return fmt.Errorf("activation journal: %w", err)
	}
	closers = append(closers, func() {
		if err := jrnl.Close(); err != nil {
			log.Warn("close activation journal", zap.Error(err))
		}
	})
	handler := activation.NewHandler(activation.Config{
		Instance: inst, APIHost: cfg.APIHost, StaleAge: cfg.StaleAge, UserMemoryMB: cfg.UserMemoryMB, Journal: jrnl,
	}, log, api, api, producer, exec, m)
	closers = append(closers, handler.StartBackground())

	consumer, err := kafka.NewConsumer(kcfg, topic, topic, kafka.ConsumerOptions{AtMostOnce: cfg.AtMostOnce})
	if err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	consumerClosed := false
	closeConsumer := func() {
		if consumerClosed {
			return
		}
		consumerClosed = true
		if err := consumer.Close(); err != nil {
			log.Warn("close consumer", zap.Error(err))
		}
	}
	closers = append(closers, closeConsumer)

	f := feed.New(consumer, handler.Handle, activation.MaxPeek(cfg.UserMemoryMB))
	sw := &onOff{metrics: m, log: log}
	sw.enabled.Store(true)
	pinger := &feed.Pinger{Sender: producer, Instance: inst, Interval: cfg.PingInterval, Enabled: sw.Enabled,
		OnError: func(err error) { log.Warn("health ping failed", zap.Error(err)) },
		OnSent:  m.Pings.Inc, Warm: warmImages(exec)}
	sw.pinger = pinger
	m.Enabled.Set(1)

	httpAddr, closeAdmin, err := serveAdmin(cfg, sw, m, log)
	if err != nil {
		return err
	}
	closers = append(closers, closeAdmin)

	// work outlives ctx so that shutdown finishes in-flight activations; it is cancelled only when
	// the drain timeout passes.
	work, abandon := context.WithCancel(context.Background())
	defer abandon()
	pingCtx, stopPings := context.WithCancel(context.Background())
	var pingWG sync.WaitGroup
	pingWG.Add(1)
	go func() { defer pingWG.Done(); pinger.Run(pingCtx) }()
	if cfg.warmChanged != nil {
		pingWG.Add(1)
		go func() {
			defer pingWG.Done()
			for {
				select {
				case <-pingCtx.Done():
					return
				case <-cfg.warmChanged:
					if !sw.Enabled() {
						continue
					}
					if err := pinger.Announce(pingCtx); err != nil {
						log.Warn("health ping failed", zap.Error(err))
					}
				}
			}
		}()
	}

	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() { defer close(fed); f.Run(stop, work) }()
	log.Info("invoker started", zap.String("topic", topic), zap.Strings("brokers", brokers),
		zap.String("http", httpAddr), zap.Int("user_memory_mb", cfg.UserMemoryMB), zap.Bool("at_most_once", cfg.AtMostOnce))
	if cfg.Ready != nil {
		cfg.Ready(Info{Instance: inst, Brokers: brokers, HTTPAddr: httpAddr, Topic: topic, ConsumerGroup: topic})
	}

	<-ctx.Done()
	cfg.DrainTimeout = drainTimeout(ctx, cfg.DrainTimeout)
	// A stopping invoker is disabled: /isEnabled says so while it finishes what is in flight.
	sw.enabled.Store(false)
	shutdown(cfg, f, pinger, exec, log, stop, fed, abandon, func() { stopPings(); pingWG.Wait() }, closeConsumer)
	log.Info("invoker stopped")
	return nil
}

// prepareState makes the state directory private (it holds the broker's log, every activation's
// parameters, and the admin password) and loads or creates the admin password.
func prepareState(cfg *Config, log *zap.Logger) error {
	fixed, err := credentials.PrivateDir(cfg.StateDir, "kafka", "kafka-users")
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	credentials.WarnFixed(log, fixed)
	if cfg.AdminPassword != "" {
		return nil
	}
	if cfg.AdminPasswordFile == "" {
		cfg.AdminPasswordFile = filepath.Join(cfg.StateDir, "admin.password")
	}
	pw, created, err := credentials.Secret(cfg.AdminPasswordFile)
	if err != nil {
		return fmt.Errorf("admin password: %w", err)
	}
	cfg.AdminPassword = pw
	if created {
		log.Info("created the admin password for /metrics, /enable, /disable and /isEnabled",
			zap.String("user", cfg.AdminUser), zap.String("file", cfg.AdminPasswordFile))
	}
	return nil
}

// kafkaBrokers returns the Kafka brokers and this invoker's credentials: the configured ones, or those
// of a broker embedded in this process (started here; the returned func stops it).
func kafkaBrokers(cfg Config, log *zap.Logger) ([]string, kafka.SASL, func(), error) {
	if cfg.Kafka != "embedded" {
		if !cfg.KafkaSASL.Enabled() {
			log.Warn("kafka without credentials: anyone who reaches the brokers can read activations and forge acks (see deploy/kafka)")
		}
		return splitBrokers(cfg.Kafka), cfg.KafkaSASL, func() {}, nil
	}
	users := filepath.Join(cfg.StateDir, "kafka-users")
	emb, own, err := startEmbedded(cfg, users, log)
	if err != nil {
		return nil, kafka.SASL{}, nil, err
	}
	log.Info("embedded kafka started", zap.Strings("brokers", emb.Addrs()), zap.String("credentials", users))
	return emb.Addrs(), own, emb.Close, nil
}

// serveAdmin serves /metrics, /enable, /disable and /isEnabled on cfg.Listen ("-": not at all) and
// returns the address and the func that shuts the server down.
func serveAdmin(cfg Config, sw *onOff, m *metrics.Metrics, log *zap.Logger) (string, func(), error) {
	if cfg.Listen == "-" {
		return "", func() {}, nil
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return "", nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	scfg := server.Config{User: cfg.AdminUser, Password: cfg.AdminPassword}
	if k, ok := cfg.Executor.(server.KeyRotator); ok {
		scfg.Keys = k // the warm enclaves' image keys: POST /keys/rotate
	}
	srv := &http.Server{Handler: server.Handler(scfg, sw, m.Registry),
		ReadHeaderTimeout: 10 * time.Second}
	// A connection dialed ahead and never used (a controller's health check, a scrape that gave
	// up) must not hold the invoker's stop for 5 s; one whose request is being written as the
	// stop begins gets an answer.
	fresh := httpstop.CloseFresh(srv)
	var stopping atomic.Bool
	served := make(chan struct{})
	go func() {
		defer close(served)
		err := srv.Serve(ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !(stopping.Load() && errors.Is(err, net.ErrClosed)) {
			log.Error("http server stopped", zap.Error(err))
		}
	}()
	return ln.Addr().String(), func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopping.Store(true)
		if err := fresh.Quiesce(sctx, ln, httpstop.FreshGrace); err != nil {
			log.Warn("admin http server shutdown", zap.Error(err))
		}
		select { // Serve returns at once once its listener is closed
		case <-served:
		case <-sctx.Done():
		}
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("admin http server shutdown", zap.Error(err))
		}
	}, nil
}

// shutdown drains the invoker: first it tells the controllers it is disabled (a last ping; they
// stop placing activations here, so none wait in its topic for a restart), stops taking records,
// lets the activations in flight finish and send their acks (abandoning them after
// cfg.DrainTimeout: their acks still go out, as whisk errors), then closes the consumer, which
// commits what was answered, and the executor, which removes what it still holds.
func shutdown(cfg Config, f *feed.Feed, pinger *feed.Pinger, exec activation.Executor, log *zap.Logger,
	stop chan struct{}, fed <-chan struct{}, abandon, stopPings, closeConsumer func()) {
	log.Info("invoker shutting down: finishing in-flight activations", zap.Int("in_flight", f.InFlight()),
		zap.Duration("drain_timeout", cfg.DrainTimeout))
	stopPings()
	f.Disable()
	pctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pinger.Ping(pctx, false); err != nil {
		log.Warn("disabled ping failed", zap.Error(err))
	}
	close(stop)
	select {
	case <-fed:
	case <-time.After(cfg.DrainTimeout):
		log.Warn("drain timeout: abandoning in-flight activations", zap.Int("in_flight", f.InFlight()))
		abandon()
		<-fed
	}
	closeConsumer()
	cctx, cancelClose := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelClose()
	if c, ok := exec.(interface{ Close(context.Context) error }); ok {
		if err := c.Close(cctx); err != nil {
			log.Warn("close executor", zap.Error(err))
		}
	}
}

// startEmbedded starts a broker in this process whose only users are this invoker and controller
// 0 (whose credentials the operator hands to the controller-adapter with --kafka-sasl-file), and
// returns it with this invoker's own credentials.
func startEmbedded(cfg Config, usersDir string, log *zap.Logger) (*kafka.Embedded, kafka.SASL, error) {
	own, err := credentials.KafkaUser(usersDir, kafka.InvokerUser(cfg.ID))
	if err != nil {
		return nil, kafka.SASL{}, fmt.Errorf("embedded kafka: %w", err)
	}
	ctrl, err := credentials.KafkaUser(usersDir, kafka.ControllerUser("0"))
	if err != nil {
		return nil, kafka.SASL{}, fmt.Errorf("embedded kafka: %w", err)
	}
	emb, err := kafka.StartEmbedded(kafka.EmbeddedOptions{
		DataDir: filepath.Join(cfg.StateDir, "kafka"), Addr: cfg.EmbeddedKafkaAddr, Logger: log,
		Users: []kafka.EmbeddedUser{
			{SASL: own, Grants: kafka.InvokerGrants(cfg.ID)},
			{SASL: ctrl, Grants: kafka.ControllerGrants("0")},
		}})
	if err != nil {
		return nil, kafka.SASL{}, fmt.Errorf("start embedded kafka: %w", err)
	}
	return emb, own, nil
}

func splitBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// onOff is the /enable and /disable switch, with OpenWhisk's meaning (InvokerReactive): /disable
// sends one disabled ping at once and stops the pings, so the controllers stop placing activations
// here; the feed keeps taking what is already in this invoker's topic, so the activations placed
// before the controllers learned are run and answered, not stranded until an /enable. /enable
// resumes the pings. Taking nothing more is the shutdown's (SIGTERM), not the switch's.
type onOff struct {
	enabled atomic.Bool
	pinger  *feed.Pinger
	metrics *metrics.Metrics
	log     *zap.Logger
}

func (s *onOff) Enable() {
	s.enabled.Store(true)
	s.metrics.Enabled.Set(1)
	s.log.Info("invoker enabled")
}

func (s *onOff) Disable() {
	s.enabled.Store(false)
	s.metrics.Enabled.Set(0)
	s.log.Info("invoker disabled: no more pings; what its topic holds is still run")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.pinger.Announce(ctx); err != nil {
		s.log.Warn("disabled ping failed", zap.Error(err))
	}
}

func (s *onOff) Enabled() bool { return s.enabled.Load() }
