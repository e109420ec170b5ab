package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/daemon"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

// DirectConfig configures the in-process controller.
type DirectConfig struct {
	RepoDir  string
	ShimPath string // the teemate model's shim
	Sandbox  string // process (default), docker, oci
	// Concurrency is the largest burst; it sizes the invoker's user memory and TCS slots.
	Concurrency int
	// Slots is the number of TCS slots of teemate's warm enclave; 0 means DefaultSlots(). Requests
	// beyond it wait for an enclave thread; the owner's memory grows with it.
	Slots int
	// PoolSize is the sandbox backend's pool of created sandboxes (daemon.Backends.PoolSize).
	PoolSize int
	// UnsafeOwnerAsRoot and EgressAllow: the enclave owners' confinement (daemon.Backends). The
	// object store Run starts is added to the egress allow-list (AllowEgress).
	UnsafeOwnerAsRoot bool
	EgressAllow       string
	// ActionMemoryMB is every action's memory limit.
	ActionMemoryMB int
	StateDir       string
	Logger         *zap.Logger
}

const (
	benchNamespace = "guest"
	benchUUID      = "7a1ae1a1-7be8-4c4a-8d2c-9c4f3ac0b1e5"
	controllerID   = "0"
)

// Direct is the harness acting as the controller.
type Direct struct {
	cfg     DirectConfig
	apiKey  string
	token   string
	emb     *kafka.Embedded
	kcfg    kafka.Config
	prod    *kafka.Producer
	acks    *kafka.Consumer
	srv     *http.Server
	apiHost string

	mu       sync.Mutex
	actions  map[string][]byte // name -> document
	records  map[string]*whisk.WhiskActivation
	waiters  map[string]chan *whisk.WhiskActivation
	invoker  int      // id of the running invoker, -1 when none
	egress   []string // AllowEgress endpoints
	nextID   int
	shrunk   int
	unparsed int
}

// StartDirect starts the broker, the REST endpoint and the ack reader.
func StartDirect(cfg DirectConfig) (_ *Direct, err error) {
	if cfg.Sandbox == "" {
		cfg.Sandbox = "process"
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	d := &Direct{cfg: cfg, apiKey: benchUUID + ":" + randHex(32), token: randHex(16),
		actions: map[string][]byte{}, records: map[string]*whisk.WhiskActivation{},
		waiters: map[string]chan *whisk.WhiskActivation{}, invoker: -1}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.emb, err = kafka.StartEmbedded(kafka.EmbeddedOptions{DataDir: filepath.Join(cfg.StateDir, "kafka"),
		Addr: "127.0.0.1:0", Logger: cfg.Logger}); err != nil {
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	d.kcfg = kafka.Config{Brokers: d.emb.Addrs(), ClientID: "bench", Logger: cfg.Logger}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ackTopic := kafka.CompletedTopic(controllerID)
	if err = kafka.EnsureTopic(ctx, d.kcfg, ackTopic, 1, kafka.MaxMessageBytes); err != nil {
		return nil, fmt.Errorf("ack topic: %w", err)
	}
	if d.prod, err = kafka.NewProducer(d.kcfg); err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	if d.acks, err = kafka.NewConsumer(d.kcfg, "bench-"+ackTopic, ackTopic, kafka.ConsumerOptions{Buffer: 256}); err != nil {
		return nil, fmt.Errorf("ack consumer: %w", err)
	}
	go d.readAcks()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("rest listener: %w", err)
	}
	d.apiHost = "http://" + ln.Addr().String()
	d.srv = &http.Server{Handler: http.HandlerFunc(d.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = d.srv.Serve(ln) }() // Serve returns ErrServerClosed on Close; nothing to report
	return d, nil
}

func randHex(n int) string {
	b := make([]byte, n/2)
	_, _ = rand.Read(b) // crypto/rand does not fail on Linux
	return hex.EncodeToString(b)
}

// serve is the REST stand-in: action documents for the invoker and its activation-record writes.
func (d *Direct) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/namespaces/"):
		if u, p, ok := r.BasicAuth(); !ok || u+":"+p != d.apiKey {
			http.Error(w, `{"error":"The supplied authentication is invalid"}`, http.StatusUnauthorized)
			return
		}
		parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/namespaces/"), "/")
		if len(parts) != 3 || parts[0] != benchNamespace || parts[1] != "actions" {
			http.Error(w, `{"error":"The requested resource does not exist."}`, http.StatusNotFound)
			return
		}
		d.mu.Lock()
		doc, ok := d.actions[parts[2]]
		d.mu.Unlock()
		if !ok {
			http.Error(w, `{"error":"The requested resource does not exist."}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/internal/v1/activations/"):
		if r.Header.Get("X-Teemate-Invoker-Token") != d.token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20)) // a record carries up to 10 MB of logs
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var a whisk.WhiskActivation
		if err := json.Unmarshal(body, &a); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d.mu.Lock()
		if _, waiting := d.waiters[a.ActivationID]; waiting {
			d.records[a.ActivationID] = &a
		}
		d.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

// readAcks hands each result to its waiter. A result shrunk to its id (too large for Kafka) is
// completed from the record the invoker stored.
func (d *Direct) readAcks() {
	for m := range d.acks.Messages() {
		ack, err := whisk.ParseAcknowledgement(m.Value)
		d.acks.Done(m)
		if err != nil {
			d.mu.Lock()
			d.unparsed++
			d.mu.Unlock()
			continue
		}
		resp := ack.AckResponse()
		if resp == nil {
			continue // a completion: frees a slot, carries no result
		}
		id := resp.ID()
		act := resp.Activation
		if act == nil {
			go d.fromRecord(id)
			continue
		}
		d.deliver(id, act)
	}
}

func (d *Direct) fromRecord(id string) {
	d.mu.Lock()
	d.shrunk++
	d.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		a := d.records[id]
		d.mu.Unlock()
		if a != nil {
			d.deliver(id, a)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *Direct) deliver(id string, a *whisk.WhiskActivation) {
	d.mu.Lock()
	ch := d.waiters[id]
	delete(d.waiters, id)
	delete(d.records, id)
	d.mu.Unlock()
	if ch != nil {
		ch <- a
	}
}

// Deploy stores the action documents the invoker fetches.
func (d *Direct) Deploy(_ context.Context, actions []ActionSpec) error {
	for _, a := range actions {
		doc, err := actionDoc(benchNamespace, "1-"+randHex(16), a)
		if err != nil {
			return err
		}
		d.mu.Lock()
		d.actions[a.Name] = doc
		d.mu.Unlock()
	}
	return nil
}

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
	cfg := daemon.Config{ID: id, Kafka: strings.Join(d.emb.Addrs(), ","), APIHost: d.apiHost, Listen: "-",
		StateDir: filepath.Join(d.cfg.StateDir, fmt.Sprintf("invoker%d", id)), StoreToken: d.token,
		UserMemoryMB: (conc + 2) * d.cfg.ActionMemoryMB, Logger: d.cfg.Logger,
		Ready: func(daemon.Info) { close(ready) }}
	b := daemon.Backends{Sandbox: d.cfg.Sandbox, Enclave: "direct", Model: model, RepoDir: d.cfg.RepoDir,
		ShimPath: d.cfg.ShimPath, SlotsPerOwner: d.cfg.Slots,
		PoolSize: d.cfg.PoolSize, UnsafeOwnerAsRoot: d.cfg.UnsafeOwnerAsRoot, EgressAllow: d.egressAllow()}
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
		<-done
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		cancel()
		<-done
		return nil, fmt.Errorf("%w: invoker for %s did not start within 60 s", ErrUnavailable, model)
	}
	d.mu.Lock()
	d.invoker = id
	d.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				d.cfg.Logger.Warn("invoker stopped with an error", zap.String("model", model), zap.Error(err))
			}
			d.mu.Lock()
			d.invoker = -1
			d.mu.Unlock()
		})
	}, nil
}

// Invoke publishes an ActivationMessage shaped like the Scala controller's and waits for its result.
func (d *Direct) Invoke(ctx context.Context, action string, params json.RawMessage) (Reply, error) {
	d.mu.Lock()
	inv := d.invoker
	d.mu.Unlock()
	if inv < 0 {
		return Reply{}, errors.New("direct: no invoker running")
	}
	id := whisk.ActivationIDNew()
	now := time.Now()
	msg := whisk.ActivationMessage{
		TransID: whisk.NewRandomTransactionID(now),
		Action:  whisk.FullyQualifiedEntityName{Path: benchNamespace, Name: action, Version: "0.0.1"},
		User: whisk.Identity{Subject: benchNamespace, Namespace: whisk.Namespace{Name: benchNamespace, UUID: benchUUID},
			AuthKey: whisk.AuthKey{APIKey: d.apiKey}, Rights: []string{"READ", "PUT", "DELETE", "ACTIVATE"}},
		ActivationID:        id,
		RootControllerIndex: whisk.NewControllerInstanceID(controllerID),
		Blocking:            true,
		Content:             params,
	}
	d.mu.Lock()
	if doc := d.actions[action]; doc != nil {
		var rev struct {
			Rev string `json:"rev"`
		}
		_ = json.Unmarshal(doc, &rev) // our own document; the field is always there
		msg.Revision = &rev.Rev
	}
	d.mu.Unlock()
	b, err := msg.Serialize()
	if err != nil {
		return Reply{}, err
	}
	ch := make(chan *whisk.WhiskActivation, 1)
	d.mu.Lock()
	d.waiters[id] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.waiters, id)
		delete(d.records, id)
		d.mu.Unlock()
	}()
	start := time.Now()
	if err := d.prod.Send(ctx, kafka.InvokerTopic(inv), b); err != nil {
		return Reply{}, fmt.Errorf("publish activation: %w", err)
	}
	select {
	case a := <-ch:
		return Reply{ClientMs: float64(time.Since(start).Microseconds()) / 1000, Activation: a}, nil
	case <-ctx.Done():
		return Reply{}, fmt.Errorf("activation %s: %w", id, ctx.Err())
	}
}

// DefaultSlots is the warm enclave's TCS count for a machine with cores CPUs: four per core
// (at least four). More threads than that add an isolate's memory each without adding
// throughput (the activations are CPU-bound); requests beyond them wait for a thread.
func DefaultSlots(cores int) int { return max(4, 4*cores) }

// MemoryRoot is this process: the in-process invoker's enclave owners and sandboxes are its children.
func (d *Direct) MemoryRoot() int { return os.Getpid() }

// Close stops everything StartDirect started.
func (d *Direct) Close() {
	if d.srv != nil {
		_ = d.srv.Close()
	}
	if d.acks != nil {
		_ = d.acks.Close()
	}
	if d.prod != nil {
		_ = d.prod.Close()
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
