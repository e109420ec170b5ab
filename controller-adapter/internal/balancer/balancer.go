package balancer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/internal/lograte"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

// Producer puts records on Kafka (kafka.Producer).
type Producer interface {
	Send(ctx context.Context, topic string, value []byte) error
}

// Records reads the activation records the invokers store (store.GetActivation). The balancer
// never writes one: the invoker is the only writer (see the package documentation).
type Records interface {
	GetActivation(ctx context.Context, ns, id string) (*whisk.WhiskActivation, error)
}

// Completion is the outcome of one published activation.
type Completion struct {
	// Activation is the record, for a blocking activation: from the ack that carried it, or, when
	// the slot-freeing ack carried only the id (the record was too large for Kafka) or the
	// completion was forced, read from Records. Nil for a non-blocking activation, and when the
	// record could not be had (forced, and the invoker stored none).
	Activation *whisk.WhiskActivation
	// ActivationID is always set.
	ActivationID string
	// Forced is true when no slot-freeing ack arrived within the ack timeout.
	Forced bool
}

// InvokerHealth is one row of GET /invokers.
type InvokerHealth struct {
	// Name is OpenWhisk's invoker id text, "invoker0/<uniqueName>/<displayedName>".
	Name string
	// State is "up", "unhealthy", "unresponsive" or "down".
	State string
	// Drain is "draining" or "drained" while an operator drains the invoker (drain.go), else "".
	Drain string
}

// Config of a Balancer. Zero values take the defaults noted.
type Config struct {
	// Kafka says where the brokers are (the logger in it is used for consumer errors).
	Kafka kafka.Config
	// Controller is this controller's instance; acks are read from completed{AsString}
	// (default "0").
	Controller whisk.ControllerInstanceID
	// Controllers is how many controllers share the invokers: each gets 1/Controllers of an
	// invoker's memory (default 1).
	Controllers int
	// SystemIdentity is the whisk.system subject the health test actions run as. The store keeps
	// only a hash of its key, so it normally has none: the invoker then reads the test action with
	// its invoker token (a key, when set, is sent and used as OpenWhisk's controller does).
	SystemIdentity whisk.Identity
	// Records is where a blocking activation's record is read when its ack carried only the id;
	// nil leaves such completions without a record.
	Records Records
	// RecordWait bounds how long such a read waits for the record to appear (default 10 s): when
	// the store could not take it at once, the invoker sends the slot-freeing ack anyway and
	// delivers the record from its journal's outbox, with backoff.
	RecordWait time.Duration
	// Health tunes supervision; zero fields take OpenWhisk's values.
	Health HealthConfig
	// TickInterval is how often the health state machines see the clock (default 1 s).
	TickInterval time.Duration
	// MinAckTimeout, AckTimeoutFactor and AckTimeoutAddon give the forced completion deadline,
	// max(action timeout, MinAckTimeout) * AckTimeoutFactor + AckTimeoutAddon
	// (defaults 60 s, 2, 60 s).
	MinAckTimeout    time.Duration
	AckTimeoutFactor float64
	AckTimeoutAddon  time.Duration
	// MaxInvokers bounds the instance numbers accepted from pings, so a bad ping cannot make the
	// invoker list huge (default 1024).
	MaxInvokers int
	// Now is the clock (default time.Now); tests of the shell keep the real one.
	Now func() time.Time
	// Drains keeps the operator's drains across restarts (drainsave.go); nil keeps them in
	// memory only.
	Drains DrainStore
	// PrepareTimeout bounds how long a drain waits for a destination to report an image warm and
	// keyed; the image is then given up (DrainStatus.NotMoved) and the source keeps serving it
	// (default 2 min).
	PrepareTimeout time.Duration
}

func (c *Config) defaults() {
	if c.Controller.AsString == "" {
		c.Controller = whisk.NewControllerInstanceID("0")
	}
	c.Controller.InstanceType = "controller"
	if c.Controllers <= 0 {
		c.Controllers = 1
	}
	c.Health = c.Health.withDefaults()
	if c.TickInterval <= 0 {
		c.TickInterval = time.Second
	}
	if c.MinAckTimeout <= 0 {
		c.MinAckTimeout = DefaultMinAckTimeout
	}
	if c.AckTimeoutFactor <= 0 {
		c.AckTimeoutFactor = DefaultAckTimeoutFactor
	}
	if c.AckTimeoutAddon <= 0 {
		c.AckTimeoutAddon = DefaultAckTimeoutAddon
	}
	if c.MaxInvokers <= 0 {
		c.MaxInvokers = 1024
	}
	if c.RecordWait <= 0 {
		c.RecordWait = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.PrepareTimeout <= 0 {
		c.PrepareTimeout = DefaultPrepareTimeout
	}
}

// DefaultPrepareTimeout is Config.PrepareTimeout's default: an owner start with its key and state
// transfer takes seconds; the invoker itself gives a preparation up after two minutes.
const DefaultPrepareTimeout = 2 * time.Minute

// Balancer is the controller's side of the Kafka protocol. It is safe for concurrent use.
type Balancer struct {
	cfg  Config
	prod Producer
	log  *zap.Logger
	// warn rate-limits the warnings that can come once per activation or per Kafka record (an
	// overloaded invoker, a dead one, a broken store, a hostile client on the topics).
	warn *lograte.Limiter
	// healthTID is the transid of every health test action of this controller's lifetime. The
	// test acks are recognised only by it (id and start millis), as OpenWhisk does.
	healthTID whisk.TransactionID

	mu       sync.Mutex
	invokers []*invoker
	inFlight map[string]*entry // by activation id
	rnd      *rand.Rand

	// prepares are the drains' requests to destinations (drain.go), numbered by prepSeq within
	// this run (epoch); prepared is closed and replaced at each new one.
	prepares []Prepare
	prepSeq  int64
	epoch    string
	prepared chan struct{}

	// saved are the drains read back at start, for invokers that have not pinged yet; undrained
	// the invokers whose saved drain is to be forgotten; saveMu orders the saves (drainsave.go).
	saved     map[int]SavedDrain
	undrained map[int]bool
	saveMu    sync.Mutex

	ensureMu sync.Mutex
	ensured  map[string]bool

	ctx       context.Context // ends at Close; bounds background sends
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	bgMu      sync.Mutex // guards closed against wg.Add racing with Close's Wait
	closed    bool
	consumers []*kafka.Consumer
	closeOnce sync.Once
}

type invoker struct {
	id whisk.InvokerInstanceID
	// pinged is false for the Offline placeholders of indexes that never pinged.
	pinged     bool
	health     Health
	capacityMB int
	freeMB     int
	// warm is what the invoker's last ping listed: image -> kid of its image key ("" when none).
	warm map[string]string
	// drain is the operator's drain of this invoker, nil when it serves as usual.
	drain *drain
}

type entry struct {
	id string
	// ns is the invoking namespace, the record's key in Records together with id.
	ns       string
	invoker  int
	memoryMB int
	blocking bool
	resolved bool
	ch       chan Completion
	timer    *time.Timer
	// settled is closed when the entry leaves inFlight: at the slot-freeing ack (the invoker
	// stored the record before sending it), the forced completion, or a failed publish.
	settled chan struct{}
}

// New connects the Balancer: it creates completed{C} and health if needed, joins their consumer
// groups (completed{C} and health{C}) and starts the health clock. Close stops it.
func New(cfg Config, prod Producer, log *zap.Logger) (*Balancer, error) {
	cfg.defaults()
	if prod == nil {
		return nil, errors.New("balancer: a producer is required")
	}
	if err := cfg.Controller.Validate(); err != nil {
		return nil, fmt.Errorf("balancer: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Kafka.Logger == nil {
		cfg.Kafka.Logger = log
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Balancer{
		cfg:       cfg,
		prod:      prod,
		log:       log,
		warn:      lograte.New(log, lograte.DefaultInterval),
		healthTID: whisk.NewTransactionID(whisk.TransIDInvokerHealth, cfg.Now()),
		inFlight:  map[string]*entry{},
		rnd:       rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		ensured:   map[string]bool{},
		epoch:     newEpoch(),
		prepared:  make(chan struct{}),
		undrained: map[int]bool{},
		ctx:       ctx,
		cancel:    cancel,
	}
	if err := b.loadDrains(); err != nil {
		cancel()
		return nil, err
	}
	completed := kafka.CompletedTopic(cfg.Controller.AsString)
	for _, t := range []string{completed, kafka.HealthTopic} {
		if err := b.ensureTopic(ctx, t); err != nil {
			cancel()
			return nil, err
		}
	}
	// Acks are at-least-once: committing before processing (at-most-once) costs a broker round
	// trip on every blocking invocation's path, while a redelivered ack is harmless (an
	// activation no longer in flight is ignored; acks write nothing).
	acks, err := kafka.NewConsumer(cfg.Kafka, completed, completed, kafka.ConsumerOptions{})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("balancer: consume %s: %w", completed, err)
	}
	healthGroup := "health" + cfg.Controller.AsString
	// Pings are read as acks are: handed out as they come, their offsets committed off their path.
	// They were once committed before each hand-out (at most once), the commit waiting behind the
	// fetch the broker held (200 ms): under a steady stream of pings (one invoker pinging every
	// 200 ms here) the consumer fell behind, each ping older than the last, until all looked stale
	// and a healthy invoker went down every few seconds (embed's
	// TestInvokerStaysUpUnderTightPingTimeout). A ping redelivered after a restart is no harm:
	// handlePing skips one older than PingTimeout, and a fresher one is a true ping.
	pings, err := kafka.NewConsumer(cfg.Kafka, healthGroup, kafka.HealthTopic, kafka.ConsumerOptions{})
	if err != nil {
		cancel()
		_ = acks.Close() // the constructor's error is the one worth reporting
		return nil, fmt.Errorf("balancer: consume %s: %w", kafka.HealthTopic, err)
	}
	b.consumers = []*kafka.Consumer{acks, pings}
	b.wg.Add(3)
	go b.consume(acks, b.handleAck)
	go b.consume(pings, b.handlePing)
	go b.clock()
	log.Info("load balancer started", zap.String("acks", completed), zap.String("health_group", healthGroup),
		zap.Strings("brokers", cfg.Kafka.Brokers))
	return b, nil
}

// Close stops consuming and the timers. Activations still in flight are not resolved.
func (b *Balancer) Close() error {
	var errs []error
	b.closeOnce.Do(func() {
		b.bgMu.Lock()
		b.closed = true
		b.bgMu.Unlock()
		b.cancel()
		for _, c := range b.consumers {
			if err := c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		b.wg.Wait()
		if err := b.saveDrains(); err != nil {
			errs = append(errs, err)
		}
		b.mu.Lock()
		for _, e := range b.inFlight {
			e.timer.Stop()
		}
		b.mu.Unlock()
		b.warn.Flush()
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("balancer: close: %w", err)
	}
	return nil
}

// HealthTransactionID is the transid carried by this controller's health test actions.
func (b *Balancer) HealthTransactionID() whisk.TransactionID { return b.healthTID }

// Publish picks an invoker for msg and sends it to invoker{N}. The channel yields exactly one
// Completion: for a blocking activation at the first ack carrying its result (Result or
// Combined), otherwise at the slot-freeing ack (Completion or Combined), or as Forced after the
// ack timeout. The memory slot is held until the slot-freeing ack or the forced completion.
func (b *Balancer) Publish(ctx context.Context, action *whisk.Action, msg *whisk.ActivationMessage) (<-chan Completion, error) {
	if action == nil || msg == nil {
		return nil, errors.New("balancer: publish: action and message are required")
	}
	value, err := msg.Serialize()
	if err != nil {
		return nil, fmt.Errorf("balancer: publish: %w", err)
	}
	memoryMB := action.Limits.Memory
	if memoryMB <= 0 {
		memoryMB = whisk.MemoryDefaultMB
	}
	timeout := time.Duration(action.Limits.Timeout) * time.Millisecond
	if action.Limits.Timeout <= 0 {
		timeout = whisk.TimeoutDefaultMs * time.Millisecond
	}
	hash := ActionHash(msg.User.Namespace.Name, msg.Action.String())
	image := "" // an unknown kind is warm nowhere: a drain routes it away at once
	if k, err := whisk.ExecKind(action.Exec.Kind).Resolve(); err == nil {
		image = string(k)
	}

	b.mu.Lock()
	if _, dup := b.inFlight[msg.ActivationID]; dup {
		b.mu.Unlock()
		return nil, fmt.Errorf("balancer: publish: activation %s is already in flight", msg.ActivationID)
	}
	cands := make([]Candidate, len(b.invokers))
	for i, inv := range b.invokers {
		cands[i] = Candidate{Healthy: inv.health.State() == Healthy, FreeMB: inv.freeMB}
	}
	p, err := Route(cands, b.drainedLocked(image), hash, memoryMB, b.rnd.IntN(1<<30))
	if err != nil {
		b.mu.Unlock()
		return nil, err
	}
	inv := b.invokers[p.Invoker]
	inv.freeMB -= memoryMB
	e := &entry{id: msg.ActivationID, ns: msg.User.Namespace.Name, invoker: p.Invoker, memoryMB: memoryMB, blocking: msg.Blocking,
		ch: make(chan Completion, 1), settled: make(chan struct{})}
	ackTimeout := AckTimeout(timeout, b.cfg.MinAckTimeout, b.cfg.AckTimeoutFactor, b.cfg.AckTimeoutAddon)
	// The entry exists before the send: the ack can arrive before Send returns.
	e.timer = time.AfterFunc(ackTimeout, func() { b.forceComplete(e.id) })
	b.inFlight[e.id] = e
	name := inv.id.String()
	b.mu.Unlock()

	if p.Forced {
		b.warn.Warn("no healthy invoker has free memory: overcommitting a random healthy one",
			zap.String("invoker", name), zap.String("activation_id", e.id), zap.Int("memory_mb", memoryMB))
	}
	topic := kafka.InvokerTopic(p.Invoker)
	err = b.ensureTopic(ctx, topic)
	if err == nil {
		err = b.prod.Send(ctx, topic, value)
	}
	if err != nil {
		b.mu.Lock()
		if b.inFlight[e.id] == e {
			delete(b.inFlight, e.id)
			close(e.settled)
			e.timer.Stop()
			inv.freeMB += memoryMB
		}
		b.mu.Unlock()
		return nil, fmt.Errorf("balancer: publish activation %s to %s: %w", e.id, topic, err)
	}
	b.log.Debug("activation published", zap.String("activation_id", e.id), zap.String("invoker", name),
		zap.String("action", msg.Action.String()), zap.Bool("blocking", msg.Blocking))
	return e.ch, nil
}

// Storing returns a channel closed when activation ns/id settles (its slot-freeing ack arrives,
// or its completion is forced) if its blocking caller has already been answered from a Result ack
// and the settling is still to come: the short window in which the invoker stores the record.
// Otherwise it returns nil. The REST API waits on it, so that a record it has just answered
// from is readable at once.
func (b *Balancer) Storing(ns, id string) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.inFlight[id]; e != nil && e.ns == ns && e.blocking && e.resolved {
		return e.settled
	}
	return nil
}

// ActiveActivationsFor is how many activations of namespace ns are in flight: published and not
// yet settled by their slot-freeing ack or a forced completion (OpenWhisk's
// activeActivationsFor, which the concurrent-invocations throttle reads).
func (b *Balancer) ActiveActivationsFor(ns string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, e := range b.inFlight {
		if e.ns == ns {
			n++
		}
	}
	return n
}

// Invokers lists every invoker index with its state, for GET /invokers.
func (b *Balancer) Invokers() []InvokerHealth {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]InvokerHealth, len(b.invokers))
	for i, inv := range b.invokers {
		out[i] = InvokerHealth{Name: inv.id.String(), State: inv.health.State().String(), Drain: inv.drainState()}
	}
	return out
}

// HealthyCount is the number of invokers in state Healthy.
func (b *Balancer) HealthyCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, inv := range b.invokers {
		if inv.health.State() == Healthy {
			n++
		}
	}
	return n
}

// ensureTopic creates an invoker or controller topic once per process (a topic that exists is
// left as it is apart from its size limit; see kafka.EnsureTopic).
func (b *Balancer) ensureTopic(ctx context.Context, topic string) error {
	b.ensureMu.Lock()
	defer b.ensureMu.Unlock()
	if b.ensured[topic] {
		return nil
	}
	if err := kafka.EnsureTopic(ctx, b.cfg.Kafka, topic, 1, kafka.MaxMessageBytes); err != nil {
		return fmt.Errorf("balancer: %w", err)
	}
	b.ensured[topic] = true
	return nil
}

func (b *Balancer) consume(c *kafka.Consumer, handle func(*kafka.Message)) {
	defer b.wg.Done()
	for m := range c.Messages() {
		handle(m)
		c.Done(m)
	}
}

func (b *Balancer) clock() {
	defer b.wg.Done()
	t := time.NewTicker(b.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		now := b.cfg.Now()
		b.mu.Lock()
		acts := make([]Actions, len(b.invokers))
		for i, inv := range b.invokers {
			acts[i] = inv.health.Tick(now)
		}
		b.advanceDrainsLocked(now)
		b.mu.Unlock()
		for i, a := range acts {
			b.act(i, a)
		}
		if err := b.saveDrains(); err != nil {
			b.warn.Warn("saving the drains failed; trying again at the next tick", zap.Error(err))
		}
	}
}

// handlePing registers or refreshes an invoker. Pings older than the ping timeout (replayed from
// the topic after a restart) say nothing about the invoker now and are skipped.
func (b *Balancer) handlePing(m *kafka.Message) {
	p, err := whisk.ParsePingMessage(m.Value)
	if err != nil {
		b.warn.Warn("skipping malformed ping", zap.Int64("offset", m.Offset), zap.Error(err))
		return
	}
	now := b.cfg.Now()
	if !m.Timestamp.IsZero() && now.Sub(m.Timestamp) > b.cfg.Health.PingTimeout {
		return
	}
	idx := p.Name.Instance
	if idx >= b.cfg.MaxInvokers {
		b.warn.Warn("skipping ping from an invoker beyond the supported count",
			zap.Int("instance", idx), zap.Int("max_invokers", b.cfg.MaxInvokers))
		return
	}
	capacity := int(p.Name.UserMemory.MBytes()) / b.cfg.Controllers
	b.mu.Lock()
	for len(b.invokers) <= idx {
		i := len(b.invokers)
		b.invokers = append(b.invokers, &invoker{
			id:     whisk.InvokerInstanceID{Instance: i, Tags: []string{}, DedicatedNamespaces: []string{}},
			health: OfflineHealth(b.cfg.Health),
		})
		b.restoreLocked(i, b.invokers[i])
	}
	inv := b.invokers[idx]
	var a Actions
	if !inv.pinged {
		// First ping from this invoker: it starts Unhealthy and is tested at once.
		inv.health, a = NewHealth(b.cfg.Health, now, p.IsEnabled)
		inv.pinged = true
	} else {
		a = inv.health.Ping(now, p.IsEnabled)
	}
	inv.id = p.Name
	// A changed memory size (an invoker restarted with another setting) moves the free memory
	// by the difference, so reservations in flight stay accounted.
	inv.freeMB += capacity - inv.capacityMB
	inv.capacityMB = capacity
	inv.warm = make(map[string]string, len(p.Warm))
	for _, w := range p.Warm {
		inv.warm[w.Image] = w.Kid
	}
	b.advanceDrainsLocked(now)
	b.mu.Unlock()
	b.act(idx, a)
}

// handleAck processes one message from completed{C}. It writes nothing: the invoker has stored
// the record before it sent the slot-freeing ack.
func (b *Balancer) handleAck(m *kafka.Message) {
	ack, err := whisk.ParseAcknowledgement(m.Value)
	if err != nil {
		b.warn.Warn("skipping malformed ack", zap.Int64("offset", m.Offset), zap.Error(err))
		return
	}
	id := ack.AckActivationID()
	var record *whisk.WhiskActivation
	if r := ack.AckResponse(); r != nil {
		record = r.Activation
	}

	slot := ack.SlotFree()
	if slot == nil { // ResultMessage: answers a blocking caller, frees nothing
		// A Result shrunk to the id (too large for Kafka) answers nobody: the record is not
		// stored yet, and the slot-freeing ack that follows the store brings the caller its
		// answer.
		if record == nil {
			return
		}
		b.mu.Lock()
		if e := b.inFlight[id]; e != nil && e.blocking {
			e.resolve(Completion{Activation: record, ActivationID: id})
		}
		b.mu.Unlock()
		return
	}

	sysErr, _ := ack.SystemError()
	result := Success
	if sysErr {
		result = SystemError
	}
	now := b.cfg.Now()
	idx := -1
	var a Actions
	var fromStore *entry
	b.mu.Lock()
	if e := b.inFlight[id]; e != nil {
		delete(b.inFlight, id)
		close(e.settled)
		e.timer.Stop()
		idx = e.invoker
		inv := b.invokers[idx]
		inv.freeMB += e.memoryMB
		a = inv.health.Finished(now, result)
		if inv.drain != nil {
			b.advanceLocked(idx, inv, now) // the drain may be waiting for this activation
		}
		if record == nil && e.blocking && !e.resolved {
			e.resolved = true // answered by resolveFromStore below
			fromStore = e
		} else {
			e.resolve(Completion{Activation: record, ActivationID: id})
		}
	} else if ack.Transaction().Equal(b.healthTID) {
		// Test actions hold no slot; the ack counts for the invoker it names.
		if i := slot.Instance; i >= 0 && i < len(b.invokers) {
			idx = i
			a = b.invokers[i].health.Finished(now, result)
		}
	}
	b.mu.Unlock()
	if fromStore != nil {
		b.resolveFromStore(fromStore, false)
	}
	if idx < 0 {
		// Acks after a forced completion, for another controller's activations, or from before
		// a restart.
		b.log.Debug("ack for an activation not in flight", zap.String("activation_id", id),
			zap.Stringer("kind", ack.Kind()))
		return
	}
	if ack.Transaction().Equal(b.healthTID) {
		b.log.Debug("health test action finished", zap.Int("invoker", idx), zap.Stringer("result", result))
	}
	b.act(idx, a)
}

// resolveFromStore answers a blocking caller whose activation ended without a record in its acks
// (the record was too large for Kafka, or the completion was forced) with the record the invoker
// stored. The read runs off the ack loop, so one slow read does not hold up other acks. The
// caller has set e.resolved under b.mu: this is the entry's only answer.
func (b *Balancer) resolveFromStore(e *entry, forced bool) {
	comp := Completion{ActivationID: e.id, Forced: forced}
	if b.cfg.Records == nil {
		e.ch <- comp
		return
	}
	b.bgMu.Lock()
	defer b.bgMu.Unlock()
	if b.closed {
		e.ch <- comp
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.RecordWait)
		defer cancel()
		rec, err := b.readRecord(ctx, e, forced)
		switch {
		case err == nil:
			comp.Activation = rec
		case forced:
			// Expected when the invoker never finished: the caller is told the activation is
			// not ready.
			b.log.Debug("forced completion without a stored record", zap.String("activation_id", e.id), zap.Error(err))
		default:
			b.warn.Warn("activation completed but its record is not in the store",
				zap.String("activation_id", e.id), zap.Error(err))
		}
		e.ch <- comp
	}()
}

// readRecord reads e's record. After a slot-freeing ack it polls until the record is there or ctx
// ends: the ack can come first when the store could not take the record at once. After a forced
// completion one read says whether the invoker stored anything.
func (b *Balancer) readRecord(ctx context.Context, e *entry, forced bool) (*whisk.WhiskActivation, error) {
	wait := 50 * time.Millisecond
	for {
		rec, err := b.cfg.Records.GetActivation(ctx, e.ns, e.id)
		if err == nil || forced {
			return rec, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// forceComplete frees the slot of an activation whose slot-freeing ack did not come in time and
// counts a Timeout against its invoker.
func (b *Balancer) forceComplete(id string) {
	b.mu.Lock()
	e := b.inFlight[id]
	if e == nil {
		b.mu.Unlock()
		return
	}
	delete(b.inFlight, id)
	close(e.settled)
	inv := b.invokers[e.invoker]
	inv.freeMB += e.memoryMB
	a := inv.health.Finished(b.cfg.Now(), Timeout)
	// A blocking caller still waiting gets the record if the invoker stored one (its ack may
	// have been lost); nobody waits for a non-blocking one.
	lookup := e.blocking && !e.resolved
	if lookup {
		e.resolved = true // answered by resolveFromStore below
	} else {
		e.resolve(Completion{ActivationID: id, Forced: true})
	}
	name := inv.id.String()
	b.mu.Unlock()
	if lookup {
		b.resolveFromStore(e, true)
	}
	b.warn.Warn("forced completion: no slot-freeing ack in time", zap.String("activation_id", id),
		zap.String("invoker", name))
	b.act(e.invoker, a)
}

// resolve hands the caller its Completion once; b.mu is held.
func (e *entry) resolve(c Completion) {
	if e.resolved {
		return
	}
	e.resolved = true
	e.ch <- c
}

// act carries out what a health event asked for: log a transition, send a test action.
func (b *Balancer) act(idx int, a Actions) {
	if a.Changed() {
		b.mu.Lock()
		name := b.invokers[idx].id.String()
		b.mu.Unlock()
		b.log.Info("invoker state changed", zap.String("invoker", name),
			zap.Stringer("from", a.From), zap.Stringer("to", a.To))
	}
	if !a.SendTest {
		return
	}
	b.bgMu.Lock()
	defer b.bgMu.Unlock()
	if b.closed {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := b.sendTestAction(idx); err != nil {
			b.log.Warn("health test action not sent", zap.Int("invoker", idx), zap.Error(err))
		}
	}()
}

// sendTestAction sends whisk.system/invokerHealthTestAction{C} to invoker idx: no slot, not
// blocking, revision null (the invoker fetches the latest), no content.
func (b *Balancer) sendTestAction(idx int) error {
	msg := &whisk.ActivationMessage{
		TransID:             b.healthTID,
		Action:              whisk.HealthTestAction(b.cfg.Controller),
		User:                b.cfg.SystemIdentity,
		ActivationID:        whisk.ActivationIDNew(),
		RootControllerIndex: b.cfg.Controller,
		InitArgs:            []string{},
		LockedArgs:          map[string]string{},
	}
	value, err := msg.Serialize()
	if err != nil {
		return fmt.Errorf("health test action: %w", err)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	topic := kafka.InvokerTopic(idx)
	if err := b.ensureTopic(ctx, topic); err != nil {
		return fmt.Errorf("health test action: %w", err)
	}
	if err := b.prod.Send(ctx, topic, value); err != nil {
		return fmt.Errorf("health test action %s to %s: %w", msg.ActivationID, topic, err)
	}
	b.log.Debug("health test action sent", zap.String("topic", topic), zap.String("activation_id", msg.ActivationID))
	return nil
}

// HealthTestActionDoc is the document of controller c's health test action, upserted into the
// entity store at start: kind nodejs:default, the identity function, minimum memory.
func HealthTestActionDoc(c whisk.ControllerInstanceID) *whisk.Action {
	name := whisk.HealthTestAction(c)
	limits := whisk.DefaultLimits()
	limits.Memory = whisk.MemoryMinMB
	return &whisk.Action{
		Namespace:   name.Path,
		Name:        name.Name,
		Version:     whisk.DefaultVersion,
		Exec:        whisk.Exec{Kind: "nodejs:default", Code: whisk.HealthTestActionCode},
		Parameters:  whisk.Parameters{},
		Annotations: whisk.Parameters{},
		Limits:      limits,
	}
}
