package embed

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/alarms"
	"github.com/teemate/platform/controller-adapter/internal/api"
	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/internal/httpstop"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

// systemNamespace is OpenWhisk's whisk.system, the subject of the invoker health test actions.
const systemNamespace = "whisk.system"

// Config of an embedded controller. Zero values take the defaults noted.
type Config struct {
	// DataDir holds the store, controller.db (required).
	DataDir string
	// Kafka says where the brokers are, with their credentials if any (required: Brokers).
	Kafka kafka.Config
	// ControllerID is the controller's instance; acks come on completed{ControllerID} (default "0").
	ControllerID string
	// Listen is the API's address (default 127.0.0.1:0, a free loopback port).
	Listen string
	// InvokerToken authenticates invokers on the /internal endpoints (default: a random one).
	InvokerToken string
	// AdminPassword guards the operator's routes on invokers (drain, undrain) as user admin
	// (default: a random one, AdminPassword tells it).
	AdminPassword string
	// Logger; nil discards.
	Logger *zap.Logger
	// Namespaces are created at start if missing, with these keys (bin/controller-adapter's
	// standalone mode seeds OpenWhisk's well-known guest and whisk.system ones). A whisk.system
	// not among them is created with a random key nobody is given.
	Namespaces []Namespace
	// EvidencePolicy, when set, is the policy sgx-dcap evidence an invoker publishes must verify
	// under before the API serves it (api.Config.EvidencePolicy).
	EvidencePolicy *attest.Policy
	// Throttles are the system's limits per namespace (zero fields: OpenWhisk's 60 invocations a
	// minute, 30 concurrent, 60 trigger fires a minute); a namespace's own override them.
	// Invoke (in-process callers) is not throttled.
	Throttles Throttles
	// PrepareTimeout bounds how long an invoker drain waits for a destination to report an image
	// warm and keyed before it gives the image up, the source serving it on (default
	// balancer.DefaultPrepareTimeout).
	PrepareTimeout time.Duration

	// Health tuning for tests of the controller-adapter; zero values take the production defaults.
	Health     balancer.HealthConfig
	HealthTick time.Duration
}

// Throttles are the REST API's limits per namespace (api.Throttles).
type Throttles = api.Throttles

// Namespace is a tenant with one of its API keys ("uuid:key").
type Namespace struct{ Name, UUID, Key string }

// Controller is a running embedded controller. Its methods are safe for concurrent use.
type Controller struct {
	ctrl     whisk.ControllerInstanceID
	token    string
	admin    string
	apiHost  string
	log      *zap.Logger
	st       *store.Store
	alarms   *alarms.Scheduler // the built-in alarms feed's firing loop
	prod     *kafka.Producer
	bal      *balancer.Balancer
	gate     *api.Gate
	srv      *http.Server
	ln       net.Listener
	fresh    *httpstop.Fresh
	served   chan struct{} // closed when the API server stops serving; serveErr says why
	serveErr error
	stopping atomic.Bool // Close began: the listener's close is not an error
}

// Start opens the store, seeds the namespaces, whisk.system and the invoker health test action,
// connects the load balancer to the brokers and serves the API: bin/controller-adapter builds its
// controller here too. Close stops it.
func Start(ctx context.Context, cfg Config) (_ *Controller, err error) {
	if cfg.DataDir == "" || len(cfg.Kafka.Brokers) == 0 {
		return nil, errors.New("embed: a data directory and brokers are required")
	}
	if cfg.ControllerID == "" {
		cfg.ControllerID = "0"
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.InvokerToken == "" {
		cfg.InvokerToken = rand.Text()
	}
	if cfg.AdminPassword == "" {
		cfg.AdminPassword = rand.Text()
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	c := &Controller{ctrl: whisk.NewControllerInstanceID(cfg.ControllerID), token: cfg.InvokerToken, admin: cfg.AdminPassword, log: log}
	if err := c.ctrl.Validate(); err != nil {
		return nil, fmt.Errorf("embed: controller id: %w", err)
	}
	defer func() {
		if err != nil {
			// The start failed; its error is the one to report.
			_ = c.Close() //nolint:errcheck // see above
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embed: data directory: %w", err)
	}
	if c.st, err = store.Open(filepath.Join(cfg.DataDir, "controller.db")); err != nil {
		return nil, fmt.Errorf("embed: open store: %w", err)
	}
	system, err := c.seed(ctx, cfg.Namespaces)
	if err != nil {
		return nil, err
	}
	kcfg := cfg.Kafka
	if kcfg.ClientID == "" {
		kcfg.ClientID = "controller" + c.ctrl.AsString
	}
	if kcfg.Logger == nil {
		kcfg.Logger = log
	}
	if c.prod, err = kafka.NewProducer(kcfg); err != nil {
		return nil, fmt.Errorf("embed: kafka producer: %w", err)
	}
	if c.bal, err = balancer.New(balancer.Config{Kafka: kcfg, Controller: c.ctrl, SystemIdentity: system, Records: c.st,
		Health: cfg.Health, TickInterval: cfg.HealthTick, Drains: drainStore{c.st}, PrepareTimeout: cfg.PrepareTimeout}, c.prod, log.Named("balancer")); err != nil {
		return nil, fmt.Errorf("embed: load balancer: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("embed: listen for the API: %w", err)
	}
	c.apiHost = "http://" + advertised(ln.Addr().(*net.TCPAddr))
	c.gate = api.NewGate()
	c.alarms = alarms.New(c.st, alarms.Options{Logger: log.Named("alarms")})
	h := api.New(api.Config{ControllerID: c.ctrl.AsString, InvokerToken: c.token, APIHost: c.apiHost,
		EvidencePolicy: cfg.EvidencePolicy, Gate: c.gate, Alarms: c.alarms, Throttles: cfg.Throttles, AdminPassword: c.admin}, c.st, c.bal, log.Named("api"))
	c.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// While draining, every reply closes its connection: a client's next request opens a
			// new one (to another controller, or to this one's successor) instead of racing the
			// close of an idle keep-alive connection at the end.
			if c.gate.Draining() {
				w.Header().Set("Connection", "close")
			}
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// The invokers' long polls end when the server shuts down (api.WithShutdown): a stop or a
	// restart does not wait for them.
	shutdown := make(chan struct{})
	c.srv.BaseContext = func(net.Listener) context.Context { return api.WithShutdown(context.Background(), shutdown) }
	c.srv.RegisterOnShutdown(func() { close(shutdown) })
	// A connection dialed ahead and never used (a stopping invoker's next long poll) must not
	// hold a Close for 5 s; one whose request is being written as Close begins gets an answer.
	c.fresh = httpstop.CloseFresh(c.srv)
	c.ln = ln
	c.served = make(chan struct{})
	go func() {
		err := c.srv.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) && !(c.stopping.Load() && errors.Is(err, net.ErrClosed)) {
			c.serveErr = err
		}
		close(c.served)
	}()
	return c, nil
}

// advertised is the address clients on this machine use for a listener: loopback when it listens
// on every interface.
func advertised(a *net.TCPAddr) string {
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(a.Port))
}

// seed creates namespaces, then whisk.system if it does not exist (with a random key nobody is
// given: the test actions run under its identity, and the invoker reads their action with its
// token), upserts the health test action and creates whisk.system's packages and actions that
// are missing (api.SystemPackages, api.SystemActions: the alarms feed). It returns whisk.system's identity, which the health
// test actions carry.
func (c *Controller) seed(ctx context.Context, namespaces []Namespace) (whisk.Identity, error) {
	for _, ns := range namespaces {
		if err := c.st.EnsureNamespace(ctx, ns.Name, ns.UUID, ns.Key); err != nil {
			return whisk.Identity{}, fmt.Errorf("embed: seed namespace %s: %w", ns.Name, err)
		}
	}
	system, err := c.st.IdentityForNamespace(ctx, systemNamespace)
	if errors.Is(err, store.ErrNotFound) {
		uuid, key := store.NewCredentials()
		if err := c.st.EnsureNamespace(ctx, systemNamespace, uuid, key); err != nil {
			return whisk.Identity{}, fmt.Errorf("embed: create namespace %s: %w", systemNamespace, err)
		}
		c.log.Info("created the whisk.system namespace with a new random key")
		system, err = c.st.IdentityForNamespace(ctx, systemNamespace)
	}
	if err != nil {
		return whisk.Identity{}, fmt.Errorf("embed: %s identity: %w", systemNamespace, err)
	}
	if _, err := c.st.PutAction(ctx, balancer.HealthTestActionDoc(c.ctrl), true); err != nil {
		return whisk.Identity{}, fmt.Errorf("embed: upsert the invoker health test action: %w", err)
	}
	for _, p := range api.SystemPackages() {
		if _, err := c.st.EnsurePackage(ctx, p); err != nil {
			return whisk.Identity{}, fmt.Errorf("embed: seed package %s: %w", p.Path(), err)
		}
	}
	for _, a := range api.SystemActions() {
		if _, err := c.st.PutAction(ctx, a, false); err != nil && !errors.Is(err, store.ErrConflict) {
			return whisk.Identity{}, fmt.Errorf("embed: seed action %s/%s: %w", a.Namespace, a.Name, err)
		}
	}
	return system, nil
}

// APIHost is the API's base URL, e.g. http://127.0.0.1:40123: the REST API for clients, and the
// endpoint invokers read actions from and store records through.
func (c *Controller) APIHost() string { return c.apiHost }

// InvokerToken is what invokers present on the /internal endpoints (daemon.Config.StoreToken).
func (c *Controller) InvokerToken() string { return c.token }

// AdminPassword is the password of the operator's routes on invokers (user admin).
func (c *Controller) AdminPassword() string { return c.admin }

// Done is closed when the API server stops serving: after Close, or when it fails (Err).
func (c *Controller) Done() <-chan struct{} { return c.served }

// Err is why the API server stopped serving by itself, once Done is closed; nil after Close.
func (c *Controller) Err() error {
	<-c.served
	return c.serveErr
}

// HealthyInvokers is how many invokers the load balancer sees healthy now.
func (c *Controller) HealthyInvokers() int { return c.bal.HealthyCount() }

// AddNamespace creates namespace name if needed and makes uuid:key one of its API keys.
func (c *Controller) AddNamespace(ctx context.Context, name, uuid, key string) error {
	if err := c.st.EnsureNamespace(ctx, name, uuid, key); err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	return nil
}

// WaitInvoker waits until invoker instance is healthy (its pings arrive and its health test action
// succeeded) and no other invoker is, so that activations go to it alone, or until ctx ends.
func (c *Controller) WaitInvoker(ctx context.Context, instance int) error {
	for {
		up, others := false, 0
		for i, inv := range c.bal.Invokers() {
			switch {
			case inv.State != "up":
			case i == instance:
				up = true
			default:
				others++
			}
		}
		if up && others == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("embed: invoker%d not the only healthy invoker (healthy: %v, others: %d): %w", instance, up, others, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Invoke runs action (a name in the caller's namespace) blocking, as the owner of auth
// ("uuid:key"), with params (a JSON object, or empty), and returns its record: POST
// .../actions/{name}?blocking=true without the HTTP round trip, waiting until ctx ends rather than
// the REST API's 60 s.
func (c *Controller) Invoke(ctx context.Context, auth, action string, params json.RawMessage) (*whisk.WhiskActivation, error) {
	uuid, key, _ := strings.Cut(auth, ":")
	user, err := c.st.Authenticate(ctx, uuid, key)
	if err != nil {
		return nil, fmt.Errorf("embed: invoke %s: %w", action, err)
	}
	a, err := c.st.GetAction(ctx, user.Namespace.Name, action)
	if err != nil {
		return nil, fmt.Errorf("embed: invoke %s: %w", action, err)
	}
	wait := 24 * time.Hour // bounded by ctx
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	act, err := api.Activate(ctx, c.bal, c.st, c.ctrl, a, user, params, wait)
	if err != nil {
		return nil, fmt.Errorf("embed: invoke %s: %w", action, err)
	}
	return act, nil
}

// ErrDrainExpired is Drain's error when invocations were still unanswered at its deadline (their
// blocking callers were answered 202).
var ErrDrainExpired = errors.New("embed: drain deadline passed")

// Drain is the first step of a graceful stop: the API stops accepting invocations (503 with
// Retry-After; reads and the invokers' endpoints keep working, /ready answers 503) and Drain waits
// until every invocation it accepted has been answered. When ctx ends first, the blocking callers
// still waiting are answered 202 with their activation id (their activations run on and are
// recorded), and Drain returns ErrDrainExpired once those answers are written, or after
// answerGrace if a handler is stuck before it publishes. Close follows.
func (c *Controller) Drain(ctx context.Context) error {
	c.gate.Drain()
	select {
	case <-c.gate.Idle():
		return nil
	case <-ctx.Done():
	}
	c.gate.Expire()
	select {
	case <-c.gate.Idle():
		return fmt.Errorf("%w: blocking callers still waiting were answered 202", ErrDrainExpired)
	case <-time.After(answerGrace):
		return fmt.Errorf("%w: %d invocations still unanswered", ErrDrainExpired, c.gate.InFlight())
	}
}

// answerGrace bounds how long Drain waits, after its deadline, for the expired callers' 202s.
const answerGrace = 2 * time.Second

// Draining reports whether Drain was called.
func (c *Controller) Draining() bool { return c.gate.Draining() }

// Close stops the API, the load balancer and the producer, and closes the store. Without Drain
// before, invocations in flight are cut off after 5 s.
func (c *Controller) Close() error {
	var errs []error
	if c.alarms != nil {
		// No fire may start once the store is closing.
		c.alarms.Stop()
		c.alarms = nil
	}
	if c.srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		// No new connection from here; a request its client was writing on a connection just
		// opened is still answered (Shutdown would drop it unanswered).
		c.stopping.Store(true)
		if err := c.fresh.Quiesce(sctx, c.ln, httpstop.FreshGrace); err != nil {
			errs = append(errs, fmt.Errorf("api server: %w", err))
		}
		select { // Serve returns at once once its listener is closed
		case <-c.served:
		case <-sctx.Done():
		}
		if err := c.srv.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("api server: %w", err))
		}
		cancel()
		<-c.served
		if c.serveErr != nil {
			errs = append(errs, fmt.Errorf("api server: %w", c.serveErr))
		}
		c.srv = nil
	}
	if c.bal != nil {
		errs = append(errs, c.bal.Close())
		c.bal = nil
	}
	if c.prod != nil {
		errs = append(errs, c.prod.Close())
		c.prod = nil
	}
	if c.st != nil {
		errs = append(errs, c.st.Close())
		c.st = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("embed: close: %w", err)
	}
	return nil
}

// drainStore keeps the balancer's drains in the store (balancer.DrainStore).
type drainStore struct{ st *store.Store }

func (d drainStore) Drains(ctx context.Context) ([]balancer.SavedDrain, error) {
	rows, err := d.st.InvokerDrains(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]balancer.SavedDrain, len(rows))
	for i, r := range rows {
		out[i] = balancer.SavedDrain(r)
	}
	return out, nil
}

func (d drainStore) SaveDrain(ctx context.Context, s balancer.SavedDrain) error {
	return d.st.PutInvokerDrain(ctx, store.InvokerDrain(s))
}

func (d drainStore) ForgetDrain(ctx context.Context, id int) error {
	return d.st.DeleteInvokerDrain(ctx, id)
}
