package activation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/invoker/internal/journal"
	"github.com/teemate/platform/invoker/internal/whiskapi"
	"github.com/teemate/platform/invoker/whisk"
)

// Journal is the invoker's durable memory of activations (journal.Journal): how far each went
// (started, finished with its record, answered with its acks) and the outbox of records the
// activation store has not confirmed. The rules that use it:
//
//   - A delivery of an id found Answered is answered again with the saved acks, byte for byte,
//     and not run; one found Finished (the invoker died while answering) is answered from the
//     saved record, the same record a caller may already have seen in a Result.
//   - An id is marked Started just before it is handed to the executor, the last moment at which
//     none of the action's code has run. One found Started but not finished was interrupted by a
//     crash of the invoker: it is answered as a whisk internal error (MsgInterrupted) and never
//     run again, since its code may have run (and had its effects) already. A crash before the
//     mark (fetching the action, waiting for memory) leaves no mark: the redelivery runs it,
//     which is its first run.
//   - The record is kept (Finished, in the outbox) before the first ack goes out; when the
//     store cannot take it, the slot-freeing ack still goes, and one background goroutine
//     (StartBackground) delivers it with backoff until the store confirms it, across restarts.
type Journal interface {
	Lookup(ctx context.Context, id string) (journal.Entry, error)
	Start(ctx context.Context, id string) error
	Finish(ctx context.Context, id string, plan int, record []byte) error
	Answer(ctx context.Context, id string, acks []journal.Ack, delivered bool, retryAt time.Time) error
	Due(ctx context.Context, now time.Time, limit int) ([]journal.Pending, error)
	NextDue(ctx context.Context) (time.Time, bool, error)
	Delivered(ctx context.Context, id string) error
	Postpone(ctx context.Context, id string, attempts int, at time.Time) error
	Expedite(ctx context.Context) error
	Depth(ctx context.Context) (int, error)
	Prune(ctx context.Context) (int64, error)
}

// Texts of the whisk internal errors the journal's rules answer with.
const (
	// MsgInterrupted answers an activation that was running when its invoker died.
	MsgInterrupted = "The activation was interrupted by a restart of the invoker. It was not run again because its code may already have run."
	// MsgNoJournal answers an activation the invoker could not record in its journal: running it
	// could not be undone or told apart from a second run after a crash.
	MsgNoJournal = "The invoker could not record the activation in its journal, so it was not run."
)

// recall answers a delivery from the journal when the journal knows the id (done is true), and
// returns the acks sent.
func (h *Handler) recall(ctx context.Context, log *zap.Logger, msg *whisk.ActivationMessage) (sent []SentAck, done bool) {
	if h.journal == nil {
		return nil, false
	}
	// The journal is local and quick: a delivery abandoned at shutdown is still looked up.
	e, err := h.journal.Lookup(context.WithoutCancel(ctx), msg.ActivationID)
	if err != nil {
		log.Error("journal lookup failed: answering without running", zap.Error(err))
		return h.answerEarly(ctx, log, msg, nil, whisk.WhiskError(MsgNoJournal)), true
	}
	switch e.State {
	case journal.Answered:
		h.metrics.JournalRedeliveries.Inc()
		log.Info("redelivered activation answered before: resending its acks from the journal, not running it")
		return h.resend(ctx, log, e.Acks), true
	case journal.Finished:
		var act whisk.WhiskActivation
		if err := json.Unmarshal(e.Record, &act); err != nil {
			log.Error("journal: the saved record does not decode; answering as interrupted", zap.Error(err))
			break
		}
		h.metrics.JournalRedeliveries.Inc()
		log.Info("redelivered activation finished before: answering from the saved record, not running it")
		return h.sendAcks(ctx, log, msg, &act, AckPlan(e.Plan)), true
	case journal.Started:
	default:
		return nil, false
	}
	h.metrics.Interrupted.Inc()
	log.Warn("activation interrupted by an invoker restart: answering with a whisk error, not running it again")
	return h.answerEarly(ctx, log, msg, nil, whisk.WhiskError(MsgInterrupted)), true
}

// markStarted records that id is about to be handed to the executor. False means the journal
// could not record it: the activation must not run.
func (h *Handler) markStarted(ctx context.Context, log *zap.Logger, id string) bool {
	if h.journal == nil {
		return true
	}
	if err := h.journal.Start(context.WithoutCancel(ctx), id); err != nil {
		h.metrics.JournalWrites.WithLabelValues("error").Inc()
		log.Error("journal: start not recorded; the activation is not run", zap.Error(err))
		return false
	}
	h.metrics.JournalWrites.WithLabelValues("start").Inc()
	return true
}

// keepRecord saves the record and its plan before the first ack goes out, which also puts it in
// the outbox. It reports whether the journal holds it.
func (h *Handler) keepRecord(ctx context.Context, log *zap.Logger, act *whisk.WhiskActivation, plan AckPlan) bool {
	if h.journal == nil {
		return false
	}
	b, err := json.Marshal(act)
	if err == nil {
		err = h.journal.Finish(ctx, act.ActivationID, int(plan), b)
	}
	if err != nil {
		h.metrics.JournalWrites.WithLabelValues("error").Inc()
		log.Error("journal: record not kept; a crash before the answer loses it, and so does a store that cannot take it now", zap.Error(err))
		return false
	}
	h.metrics.JournalWrites.WithLabelValues("finish").Inc()
	return true
}

// answered records the acks sent. delivered says the store has the record; otherwise the outbox
// delivers it, from the first backoff step on (the inline attempts just failed).
func (h *Handler) answered(ctx context.Context, log *zap.Logger, id string, sent []SentAck, delivered bool) {
	if h.journal == nil {
		return
	}
	acks := make([]journal.Ack, len(sent))
	for i, a := range sent {
		acks[i] = journal.Ack{Topic: a.Topic, Value: a.Value}
	}
	if err := h.journal.Answer(ctx, id, acks, delivered, h.now().Add(OutboxBackoff(1))); err != nil {
		h.metrics.JournalWrites.WithLabelValues("error").Inc()
		log.Error("journal: answer not recorded; a redelivery after a restart answers from the record instead", zap.Error(err))
		return
	}
	h.metrics.JournalWrites.WithLabelValues("answer").Inc()
	if !delivered {
		h.wakeOutbox()
	}
}

// resend sends saved acks again, retrying briefly, and returns those that went out.
func (h *Handler) resend(ctx context.Context, log *zap.Logger, acks []journal.Ack) []SentAck {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var sent []SentAck
	for _, a := range acks {
		backoff := 50 * time.Millisecond
		for attempt := 1; ; attempt++ {
			err := h.acks.Send(ctx, a.Topic, a.Value)
			if err == nil {
				sent = append(sent, SentAck{Topic: a.Topic, Value: a.Value})
				break
			}
			if attempt == 5 || ctx.Err() != nil {
				h.metrics.AckErrors.Inc()
				log.Error("resend ack failed", zap.String("topic", a.Topic), zap.Error(err))
				break
			}
			time.Sleep(backoff)
			backoff *= 2
		}
	}
	return sent
}

// OutboxBackoff is the wait after the n-th consecutive failed delivery to the store (n >= 1):
// 250 ms doubling, at most 15 s, so a store back from an outage has every record within 15 s.
func OutboxBackoff(n int) time.Duration {
	const first, most = 250 * time.Millisecond, 15 * time.Second
	if n < 1 {
		n = 1
	}
	if n > 7 { // 250 ms << 6 = 16 s is already past the cap
		return most
	}
	return min(first<<(n-1), most)
}

// StartBackground starts the goroutine that delivers the outbox and prunes the journal, and
// returns the function that stops it and waits for it. Without a journal it does nothing.
func (h *Handler) StartBackground() (stop func()) {
	if h.journal == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.keepJournal(ctx) }()
	return func() { cancel(); <-done }
}

func (h *Handler) wakeOutbox() {
	select {
	case h.outboxWake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// pruneEvery is how often the journal is pruned.
const pruneEvery = time.Minute

// keepJournal is the background loop: deliver due outbox records, one at a time, backing off
// while the store fails; prune every pruneEvery.
func (h *Handler) keepJournal(ctx context.Context) {
	h.prune(ctx)
	lastPrune := h.now()
	failures := 0 // consecutive failed deliveries: the store is down while > 0
	spillFailures := 0
	for ctx.Err() == nil {
		failures = h.deliverDue(ctx, failures)
		if h.deliverSpilled(ctx) {
			spillFailures = 0
		} else {
			spillFailures++
		}
		h.refreshDepth(ctx)
		if h.now().Sub(lastPrune) >= pruneEvery {
			h.prune(ctx)
			lastPrune = h.now()
		}
		wait := pruneEvery
		if failures > 0 || spillFailures > 0 {
			wait = OutboxBackoff(max(failures, spillFailures))
		} else if at, ok, err := h.journal.NextDue(ctx); err != nil {
			h.log.Error("journal: outbox not readable", zap.Error(err))
			wait = OutboxBackoff(7)
		} else if ok {
			wait = min(max(at.Sub(h.now()), 0), pruneEvery)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-h.outboxWake:
		case <-t.C:
		}
		t.Stop()
	}
}

// deliverDue stores the due outbox records until none is due or the store fails, and returns the
// new count of consecutive failures. While the store was failing, one record probes it first.
func (h *Handler) deliverDue(ctx context.Context, failures int) int {
	for ctx.Err() == nil {
		limit := 16
		if failures > 0 {
			limit = 1
		}
		f, n := h.deliverBatch(ctx, failures, limit)
		if f > 0 || n < limit {
			return f
		}
		failures = f
	}
	return failures
}

// deliverBatch tries up to limit due records, stopping at the first failure; it returns the new
// count of consecutive failures and how many records were due.
func (h *Handler) deliverBatch(ctx context.Context, failures, limit int) (int, int) {
	due, err := h.journal.Due(ctx, h.now(), limit)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Error("journal: outbox not readable", zap.Error(err))
		}
		return max(failures, 1), 0
	}
	for _, p := range due {
		err := h.deliver(ctx, p)
		if err == nil {
			if failures > 0 {
				h.log.Info("activation store reachable again: delivering the outbox", zap.Int("after_failures", failures))
				if err := h.journal.Expedite(ctx); err != nil {
					h.log.Error("journal: outbox not expedited", zap.Error(err))
				}
			}
			failures = 0
			continue
		}
		if ctx.Err() != nil {
			return failures, len(due)
		}
		failures++
		h.metrics.OutboxRetries.Inc()
		if failures == 1 {
			h.log.Warn("activation store unreachable: records wait in the journal's outbox", zap.String("activation_id", p.ID), zap.Error(err))
		}
		if perr := h.journal.Postpone(ctx, p.ID, p.Attempts+1, h.now().Add(OutboxBackoff(failures))); perr != nil {
			h.metrics.JournalWrites.WithLabelValues("error").Inc()
			h.log.Error("journal: outbox retry not recorded", zap.String("activation_id", p.ID), zap.Error(perr))
		} else {
			h.metrics.JournalWrites.WithLabelValues("postpone").Inc()
		}
		return failures, len(due)
	}
	return failures, len(due)
}

// deliver stores one outbox record and takes it out of the outbox. A record that does not decode
// can never be stored: it is dropped, with an error.
func (h *Handler) deliver(ctx context.Context, p journal.Pending) error {
	var act whisk.WhiskActivation
	if err := json.Unmarshal(p.Record, &act); err != nil {
		h.log.Error("journal: an outbox record does not decode; dropped", zap.String("activation_id", p.ID), zap.Error(err))
	} else {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := h.store.Store(sctx, &act)
		cancel()
		if err != nil && !errors.Is(err, whiskapi.ErrNoToken) {
			return fmt.Errorf("deliver record %s: %w", p.ID, err)
		}
	}
	if err := h.journal.Delivered(ctx, p.ID); err != nil {
		h.metrics.JournalWrites.WithLabelValues("error").Inc()
		// Stored but still in the outbox: it is stored again later, a harmless replace.
		h.log.Error("journal: delivered record not marked", zap.String("activation_id", p.ID), zap.Error(err))
		return nil
	}
	h.metrics.JournalWrites.WithLabelValues("delivered").Inc()
	return nil
}

// spillLimit bounds the records held in memory when neither the store nor the journal takes them.
const spillLimit = 10000

// spill is the in-memory last resort of records: those the store refused and the journal could not
// keep (both on a full disk). The background loop stores them once the store takes writes again;
// they are lost only if the invoker dies first (ARCHITECTURE.md, "Delivery guarantees").
type spill struct {
	mu   sync.Mutex
	acts []*whisk.WhiskActivation
}

// add queues a record; false when the queue is full and the record is dropped.
func (s *spill) add(act *whisk.WhiskActivation) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.acts) >= spillLimit {
		return false
	}
	s.acts = append(s.acts, act)
	return true
}

// putBack returns records taken but not stored to the front of the queue (they are older than
// any added meanwhile; the limit is not applied to them: they were already counted).
func (s *spill) putBack(acts []*whisk.WhiskActivation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acts = append(append([]*whisk.WhiskActivation(nil), acts...), s.acts...)
}

// take removes and returns every queued record.
func (s *spill) take() []*whisk.WhiskActivation {
	s.mu.Lock()
	defer s.mu.Unlock()
	acts := s.acts
	s.acts = nil
	return acts
}

// deliverSpilled stores the records held in memory, oldest first, and reports whether all were
// stored; the rest go back to the queue.
func (h *Handler) deliverSpilled(ctx context.Context) bool {
	acts := h.spill.take()
	for i, act := range acts {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := h.store.Store(sctx, act)
		cancel()
		if err != nil && !errors.Is(err, whiskapi.ErrNoToken) {
			h.spill.putBack(acts[i:])
			return false
		}
		h.metrics.JournalWrites.WithLabelValues("delivered").Inc()
	}
	return true
}

func (h *Handler) refreshDepth(ctx context.Context) {
	n, err := h.journal.Depth(ctx)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Error("journal: outbox depth not readable", zap.Error(err))
		}
		return
	}
	h.metrics.OutboxDepth.Set(float64(n))
}

func (h *Handler) prune(ctx context.Context) {
	n, err := h.journal.Prune(ctx)
	if err != nil {
		if ctx.Err() == nil {
			h.metrics.JournalWrites.WithLabelValues("error").Inc()
			h.log.Error("journal: prune failed", zap.Error(err))
		}
		return
	}
	h.metrics.JournalWrites.WithLabelValues("prune").Inc()
	if n > 0 {
		h.log.Debug("journal pruned", zap.Int64("rows", n))
	}
}
