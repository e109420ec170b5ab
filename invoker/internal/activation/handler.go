package activation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/metrics"
	"github.com/teemate/platform/invoker/internal/whiskapi"
	"github.com/teemate/platform/invoker/internal/wire"
	"github.com/teemate/platform/invoker/kafka"
	"github.com/teemate/platform/invoker/whisk"
)

// Fetcher loads actions by name and revision (whiskapi.Client).
type Fetcher interface {
	Fetch(ctx context.Context, name whisk.FullyQualifiedEntityName, rev *string, apiKey string) (*whisk.Action, bool, error)
}

// Store keeps finished activation records (whiskapi.Client). The invoker is the only writer of a
// record: the controller learns results from the acks and reads the record from the store when an
// ack carried only the id.
type Store interface {
	Store(ctx context.Context, act *whisk.WhiskActivation) error
}

// Producer puts acknowledgements on Kafka (kafka.Producer).
type Producer interface {
	Send(ctx context.Context, topic string, value []byte) error
}

// Config of the handler.
type Config struct {
	// Instance is this invoker's id, carried in every slot-freeing ack.
	Instance whisk.InvokerInstanceID
	// APIHost is given to actions as __OW_API_HOST.
	APIHost string
	// StaleAge: activations whose transaction started longer ago are answered, not run. 0 disables.
	StaleAge time.Duration
	// UserMemoryMB bounds the memory of running activations.
	UserMemoryMB int
	// DedupSize is how many answered activation ids are remembered in memory (default 10000).
	DedupSize int
	// Journal remembers started and answered activations and the records outbox across restarts
	// (durable.go). Nil keeps the memory-only de-duplication and the records' brief inline retries.
	Journal Journal
}

// Handler runs the pipeline for each message. Safe for concurrent use: the feed calls Handle from
// one goroutine per in-flight activation.
type Handler struct {
	cfg     Config
	log     *zap.Logger
	fetch   Fetcher
	store   Store
	acks    Producer
	exec    Executor
	metrics *metrics.Metrics
	dedup   *Dedup
	memory  *MemoryPool
	counter atomic.Uint64
	now     func() time.Time
	// noStore is set once the store said it keeps nothing (no invoker token), so that is said once.
	noStore atomic.Bool
	// journal is Config.Journal (durable.go); outboxWake tells its background loop that a record
	// went to the outbox.
	journal    Journal
	outboxWake chan struct{}
	// spill holds records neither the store nor the journal took (a full disk under both): the
	// background loop retries them from memory (durable.go).
	spill spill
}

// NewHandler wires a handler.
func NewHandler(cfg Config, log *zap.Logger, fetch Fetcher, store Store, acks Producer, exec Executor, m *metrics.Metrics) *Handler {
	if cfg.DedupSize <= 0 {
		cfg.DedupSize = 10000
	}
	if cfg.UserMemoryMB <= 0 {
		cfg.UserMemoryMB = 2048
	}
	return &Handler{
		cfg: cfg, log: log, fetch: fetch, store: store, acks: acks, exec: exec, metrics: m,
		dedup: NewDedup(cfg.DedupSize), memory: NewMemoryPool(cfg.UserMemoryMB), now: time.Now,
		journal: cfg.Journal, outboxWake: make(chan struct{}, 1),
	}
}

// Handle processes one record from the invoker topic. It returns when the activation's slot-freeing
// ack has been sent (or the record was skipped as unparseable). It never panics on bad input.
func (h *Handler) Handle(ctx context.Context, value []byte) {
	received := h.now()
	msg, err := whisk.ParseActivationMessage(value)
	if err != nil {
		h.metrics.Malformed.Inc()
		h.log.Warn("skipping malformed activation message", zap.Int("bytes", len(value)), zap.Error(err))
		return
	}
	log := h.log.With(zap.String("activation_id", msg.ActivationID), zap.String("transid", msg.TransID.ID))
	h.metrics.InFlight.Inc()
	defer h.metrics.InFlight.Dec()

	first, wait := h.dedup.Begin(msg.ActivationID)
	if !first {
		h.metrics.Duplicates.Inc()
		log.Info("redelivered activation: answering again without running it")
		acks, ok := wait(ctx.Done())
		if !ok {
			return
		}
		for _, a := range acks {
			if err := h.acks.Send(ctx, a.Topic, a.Value); err != nil {
				h.metrics.AckErrors.Inc()
				log.Error("resend ack failed", zap.String("topic", a.Topic), zap.Error(err))
			}
		}
		return
	}
	var sent []SentAck
	defer func() { h.dedup.Finish(msg.ActivationID, sent) }()
	sent = h.process(ctx, log, msg, received)
	h.metrics.ObservePhase(metrics.PhaseTotal, h.now().Sub(received))
}

// process answers a first delivery and returns the acks it sent.
func (h *Handler) process(ctx context.Context, log *zap.Logger, msg *whisk.ActivationMessage, received time.Time) []SentAck {
	if sent, done := h.recall(ctx, log, msg); done {
		return sent
	}
	if IsStale(msg.TransID.Start, received, h.cfg.StaleAge) {
		h.metrics.Stale.Inc()
		age := received.Sub(msg.TransID.Start).Round(time.Second)
		log.Warn("stale activation answered without running", zap.Duration("age", age))
		return h.answerEarly(ctx, log, msg, nil, whisk.WhiskError(fmt.Sprintf(
			"The activation was not run because it waited %s, longer than the invoker's limit of %s.", age, h.cfg.StaleAge)))
	}

	t := h.now()
	action, hit, err := h.fetch.Fetch(ctx, msg.Action, msg.Revision, msg.User.AuthKey.APIKey)
	h.metrics.ObservePhase(metrics.PhaseFetch, h.now().Sub(t))
	if err != nil {
		if errors.Is(err, whiskapi.ErrNotFound) {
			log.Info("action not found", zap.String("action", msg.Action.String()), zap.Error(err))
			return h.answerEarly(ctx, log, msg, nil, whisk.ApplicationError(whisk.MsgActionNotFound))
		}
		log.Error("action fetch failed", zap.String("action", msg.Action.String()), zap.Error(err))
		return h.answerEarly(ctx, log, msg, nil, whisk.WhiskError(whisk.MsgActionNotFetched))
	}
	if hit {
		h.metrics.FetchCache.WithLabelValues("hit").Inc()
	} else {
		h.metrics.FetchCache.WithLabelValues("miss").Inc()
	}
	// Content too large for a Kafka record waits in the controller's store (whisk.ContentRef).
	if err := whiskapi.LoadContent(ctx, h.fetch, msg); err != nil {
		log.Error("activation content not fetched", zap.Error(err))
		return h.answerEarly(ctx, log, msg, action, whisk.WhiskError(whisk.MsgContentNotFetched))
	}
	image, err := whisk.ExecKind(action.Exec.Kind).Resolve()
	if err != nil || action.Exec.Kind == whisk.KindBlackbox || action.Exec.Kind == whisk.KindSequence {
		log.Info("unsupported action kind", zap.String("kind", action.Exec.Kind))
		return h.answerEarly(ctx, log, msg, action, whisk.ApplicationError(
			fmt.Sprintf("The action kind %q is not supported by this invoker.", action.Exec.Kind)))
	}

	t = h.now()
	memMB := action.Limits.Memory
	if err := h.memory.Acquire(ctx, memMB); err != nil {
		log.Error("no user memory for activation", zap.Int("memory_mb", memMB), zap.Error(err))
		return h.answerEarly(ctx, log, msg, action, whisk.WhiskError(whisk.MsgResourceProvisionError))
	}
	h.metrics.ObservePhase(metrics.PhaseMemoryWait, h.now().Sub(t))
	if !h.markStarted(ctx, log, msg.ActivationID) {
		h.memory.Release(memMB)
		return h.answerEarly(ctx, log, msg, action, whisk.WhiskError(MsgNoJournal))
	}
	job := h.buildJob(msg, action, string(image))
	log.Debug("running activation", zap.String("action", msg.Action.String()), zap.String("sandbox", job.Name))
	out := h.exec.Run(ctx, job)
	h.memory.Release(memMB)
	for phase, d := range out.Phases {
		h.metrics.ObservePhase(phase, d)
	}
	act := h.record(msg, action, job, out)
	h.countStatus(act.Response.StatusCode)
	log.Info("activation finished", zap.String("action", msg.Action.String()),
		zap.String("status", whisk.StatusMessage(act.Response.StatusCode)), zap.Int64("duration_ms", out.End.Sub(out.Start).Milliseconds()))
	return h.sendAcks(ctx, log, msg, act, PlanAcks(msg.Blocking, true, action.Limits.Logs))
}

// answerEarly answers an activation that is not run, with a fallback record as OpenWhisk builds it
// (annotations path and kind "unknown" unless the action is known, duration 0).
func (h *Handler) answerEarly(ctx context.Context, log *zap.Logger, msg *whisk.ActivationMessage, action *whisk.Action, resp whisk.ActivationResponse) []SentAck {
	now := h.now()
	act := &whisk.WhiskActivation{
		Namespace: msg.User.Namespace.Name, Name: msg.Action.Name, Subject: msg.User.Subject,
		ActivationID: msg.ActivationID, Start: now, End: now, Cause: msg.Cause, Response: resp,
		Version: msg.Action.Version,
	}
	if act.Version == "" {
		act.Version = whisk.DefaultVersion
	}
	kind := "unknown"
	if action != nil {
		kind = action.Exec.Kind
		act.Version = action.Version
	}
	h.annotate(act, whisk.AnnotationPath, msg.Action.String())
	h.annotate(act, "kind", kind)
	h.countStatus(resp.StatusCode)
	return h.sendAcks(ctx, log, msg, act, PlanAcks(msg.Blocking, false, 0))
}

func (h *Handler) countStatus(code int) {
	h.metrics.Activations.WithLabelValues(strings.ReplaceAll(whisk.StatusMessage(code), " ", "_")).Inc()
}

// sendAcks stores the record and sends the planned acks; it returns what went out, for Dedup.
// With a journal, the record is kept there before the first ack and the acks after the last
// (durable.go), and a record the store did not take stays in the journal's outbox.
//
// The record is stored before the ack that frees the slot, always: a slot-freeing ack means the
// record is in the store, which is what lets the controller read it when an ack carries only the id
// (a record too large for Kafka: sendOne shrinks it) and answer a read of it at once. The one ack
// sent before the store is a blocking activation's Result, which answers the caller early from
// the record without logs; if that Result is too large it goes as the id alone, and the caller is
// answered from the store after the Completion.
func (h *Handler) sendAcks(ctx context.Context, log *zap.Logger, msg *whisk.ActivationMessage, act *whisk.WhiskActivation, plan AckPlan) []SentAck {
	// Acks go out even when the run was abandoned (shutdown past the drain timeout): every parsed
	// activation gets its slot-freeing ack, so they get a context of their own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	topic := msg.RootControllerIndex.AckTopic()
	inst := h.cfg.Instance
	var sent []SentAck
	send := func(a whisk.Ack, kind string) {
		if v, ok := h.sendOne(ctx, log, topic, a, kind); ok {
			sent = append(sent, SentAck{Topic: topic, Value: v})
		}
	}
	kept := h.keepRecord(ctx, log, act, plan)
	delivered := false
	storeRecord := func() { delivered = h.storeRecord(ctx, log, act, kept) }
	switch plan {
	case ResultThenCompletion:
		send(whisk.NewResult(msg.TransID, act.WithoutLogs()), "result")
		storeRecord()
		send(whisk.NewCompletion(msg.TransID, act, inst), "completion")
	case Combined:
		storeRecord()
		send(whisk.NewCombined(msg.TransID, act, inst), "combined")
	case CombinedShrunk:
		storeRecord()
		send(whisk.NewCombined(msg.TransID, act, inst).Shrink(), "combined")
	case CompletionOnly:
		storeRecord()
		send(whisk.NewCompletion(msg.TransID, act, inst), "completion")
	}
	h.answered(ctx, log, msg.ActivationID, sent, delivered)
	return sent
}

// storeRecord writes the record, retrying transient failures briefly: the slot-freeing ack waits
// for it, and without it a caller whose ack carried only the id gets no answer until the outbox
// delivers it (kept: the journal holds it). It reports whether the store needs nothing more.
func (h *Handler) storeRecord(ctx context.Context, log *zap.Logger, act *whisk.WhiskActivation, kept bool) (delivered bool) {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := h.store.Store(ctx, act)
		switch {
		case err == nil:
			return true
		case errors.Is(err, whiskapi.ErrNoToken):
			if h.noStore.CompareAndSwap(false, true) {
				log.Warn("activation records are not stored: the invoker has no token for the controller-adapter", zap.Error(err))
			}
			return true
		case (attempt == 3 || ctx.Err() != nil) && kept:
			log.Warn("activation record not stored yet: the journal's outbox delivers it", zap.Int("attempts", attempt), zap.Error(err))
			return false
		case (attempt == 3 || ctx.Err() != nil) && h.journal != nil:
			// The journal could not keep it either (a full disk): memory holds it until the store
			// takes it; only a crash of the invoker before then loses it.
			if h.spill.add(act) {
				log.Warn("activation record not stored and not journaled: retried from memory", zap.Int("attempts", attempt), zap.Error(err))
			} else {
				log.Error("activation record not stored: the in-memory retry queue is full", zap.Int("attempts", attempt), zap.Error(err))
			}
			h.wakeOutbox()
			return false
		case attempt == 3 || ctx.Err() != nil:
			log.Error("activation record not stored", zap.Int("attempts", attempt), zap.Error(err))
			return false
		}
		time.Sleep(backoff)
		backoff *= 2
	}
}

// sendOne serialises and sends an ack, shrinking it to the activation id when Kafka refuses its size
// (OpenWhisk resends on RecordTooLargeException the same way). Transient failures are retried briefly.
func (h *Handler) sendOne(ctx context.Context, log *zap.Logger, topic string, a whisk.Ack, kind string) ([]byte, bool) {
	// Serialize, not json.Marshal: encoding/json compacts a MarshalJSON result, and the transid must
	// go back byte for byte as the controller sent it.
	v, err := a.Serialize()
	if err != nil {
		h.metrics.AckErrors.Inc()
		log.Error("ack not serialisable", zap.String("kind", kind), zap.Error(err))
		return nil, false
	}
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err = h.acks.Send(ctx, topic, v)
		if errors.Is(err, kafka.ErrMessageTooLarge) {
			log.Warn("ack too large for Kafka: sending the activation id only", zap.String("kind", kind), zap.Int("bytes", len(v)))
			if v, err = a.Shrink().Serialize(); err != nil {
				break
			}
			h.metrics.Acks.WithLabelValues(kind + "_shrunk").Inc()
			continue
		}
		if err == nil {
			h.metrics.Acks.WithLabelValues(kind).Inc()
			return v, true
		}
		if attempt == 5 || ctx.Err() != nil {
			break
		}
		time.Sleep(backoff)
		backoff *= 2
	}
	h.metrics.AckErrors.Inc()
	log.Error("ack not sent", zap.String("kind", kind), zap.String("topic", topic), zap.Error(err))
	return nil, false
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// buildJob computes what /init and /run need, as OpenWhisk's ContainerProxy does.
func (h *Handler) buildJob(msg *whisk.ActivationMessage, action *whisk.Action, image string) *Job {
	timeout := time.Duration(action.Limits.Timeout) * time.Millisecond
	deadline := h.now().Add(timeout)
	deadlineStr := strconv.FormatInt(deadline.UnixMilli(), 10)
	// OpenWhisk's rule (truthy or missing annotation), and only when the message carries a key:
	// the controller-adapter sends one only to actions that ask for it.
	provideKey := action.Annotations.IsTruthy("provide-api-key", true) && msg.User.AuthKey.APIKey != ""
	actionName := msg.Action.QualifiedNameWithLeadingSlash()

	value, initEnv := splitInitArgs(msg.Content, msg.InitArgs)
	env := map[string]string{
		"__OW_NAMESPACE":      msg.User.Namespace.Name,
		"__OW_ACTION_NAME":    actionName,
		"__OW_ACTION_VERSION": action.Version,
		"__OW_ACTIVATION_ID":  msg.ActivationID,
		"__OW_TRANSACTION_ID": msg.TransID.ID,
		"__OW_DEADLINE":       deadlineStr,
	}
	if h.cfg.APIHost != "" {
		env["__OW_API_HOST"] = h.cfg.APIHost
	}
	run := wire.Run{
		Value: value, Namespace: msg.User.Namespace.Name, ActionName: actionName, ActionVersion: action.Version,
		ActivationID: msg.ActivationID, TransactionID: msg.TransID.ID, Deadline: deadlineStr,
	}
	if provideKey {
		env["__OW_API_KEY"] = msg.User.AuthKey.APIKey
		run.APIKey = msg.User.AuthKey.APIKey
	}
	for k, v := range initEnv {
		env[k] = v
	}
	main := action.Exec.Main
	if main == "" {
		main = "main"
	}
	n := h.counter.Add(1)
	name := fmt.Sprintf("wsk%d_%d_%s_%s", h.cfg.Instance.Instance, n,
		unsafeName.ReplaceAllString(msg.User.Namespace.Name, ""), unsafeName.ReplaceAllString(msg.Action.Name, ""))
	return &Job{
		Msg: msg, Action: action, Name: name, Image: image,
		Init:     wire.Init{Name: action.Name, Main: main, Code: action.Exec.Code, Binary: action.Exec.Binary, Env: env},
		Run:      run,
		Deadline: deadline, Timeout: timeout, MemoryMB: action.Limits.Memory,
		LogLimitBytes: int64(action.Limits.LogsBytes()),
		Network:       action.Annotations.IsTruthy("network", false),
	}
}

// splitInitArgs separates init arguments (sent to /init as strings) from the run value. A content
// that is not an object (an array) is passed through as is; a missing one becomes {}.
func splitInitArgs(content json.RawMessage, initArgs []string) (json.RawMessage, map[string]string) {
	if len(content) == 0 || string(content) == "null" {
		return json.RawMessage("{}"), nil
	}
	if len(initArgs) == 0 || content[0] != '{' {
		return content, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(content, &obj); err != nil {
		return content, nil
	}
	env := make(map[string]string, len(initArgs))
	for _, k := range initArgs {
		v, ok := obj[k]
		if !ok {
			continue
		}
		delete(obj, k)
		var s string
		switch {
		case string(v) == "null":
			s = ""
		case json.Unmarshal(v, &s) == nil:
		default:
			s = string(v)
		}
		env[k] = s
	}
	rest, err := json.Marshal(obj)
	if err != nil {
		return content, nil
	}
	return rest, env
}

// annotate sets one annotation of a record. The values set here (strings, numbers, booleans and
// maps of them) always encode, so a failure is a bug: logged, not dropped.
func (h *Handler) annotate(act *whisk.WhiskActivation, key string, value any) {
	if err := act.Annotations.Set(key, value); err != nil {
		h.log.Error("activation record: annotation not set", zap.String("annotation", key), zap.Error(err))
	}
}

// record builds the WhiskActivation of a run, with OpenWhisk's annotations plus our per-phase timings.
func (h *Handler) record(msg *whisk.ActivationMessage, action *whisk.Action, job *Job, out Outcome) *whisk.WhiskActivation {
	act := &whisk.WhiskActivation{
		Namespace: msg.User.Namespace.Name, Name: msg.Action.Name, Subject: msg.User.Subject,
		ActivationID: msg.ActivationID, Start: out.Start, End: out.End, Cause: msg.Cause,
		Response: out.Response, Logs: out.Logs, Version: action.Version,
	}
	if act.Logs == nil {
		act.Logs = []string{}
	}
	d := out.End.Sub(out.Start).Milliseconds()
	act.Duration = &d
	limits := action.Limits
	h.annotate(act, whisk.AnnotationPath, msg.Action.String())
	h.annotate(act, "kind", action.Exec.Kind)
	h.annotate(act, "limits", map[string]int{"concurrency": limits.Concurrency, "logs": limits.Logs, "memory": limits.Memory, "timeout": limits.Timeout})
	h.annotate(act, "waitTime", WaitTime(msg.TransID.Start, out.Start).Milliseconds())
	if out.InitTime > 0 {
		h.annotate(act, "initTime", out.InitTime.Milliseconds())
	}
	h.annotate(act, whisk.AnnotationTimeout, out.TimedOut)
	if out.Retried != "" {
		h.annotate(act, "retried", true)
		h.annotate(act, "retryReason", out.Retried)
	}
	if msg.Cause != "" {
		h.annotate(act, "causedBy", "sequence")
	}
	if msg.Action.Binding != "" {
		// Invoked through a package binding (OpenWhisk's ContainerProxy adds the same).
		h.annotate(act, whisk.AnnotationBinding, msg.Action.Binding)
	}
	if len(out.Phases) > 0 {
		ms := make(map[string]float64, len(out.Phases))
		for k, v := range out.Phases {
			ms[k] = float64(v.Microseconds()) / 1000
		}
		h.annotate(act, "timings", ms)
	}
	return act
}
