package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/store"
)

// ErrGone is what a Target returns when a schedule's trigger can no longer be fired: the trigger
// or the key it fires as is gone. The schedule is then disabled (the alarms provider disables a
// trigger whose fire answers 4xx) and fires no more until updated or created again.
var ErrGone = errors.New("alarms: the trigger or its owner is gone")

// Target is where due schedules go: the REST API's trigger fire, run as the schedule's owner.
type Target interface {
	// Fire fires the schedule's trigger with payload.
	Fire(ctx context.Context, s *store.Schedule, payload json.RawMessage) error
	// DeleteTrigger deletes the trigger of a once schedule with deleteAfterFire, and its rules
	// when withRules.
	DeleteTrigger(ctx context.Context, s *store.Schedule, withRules bool) error
}

// Options of a Scheduler. Zero values take the defaults noted.
type Options struct {
	// Now is the clock (default time.Now); tests move a fake one and call Tick.
	Now func() time.Time
	// MaxSleep bounds how long the loop sleeps without looking at the store (default 1 min): it
	// picks up a schedule another controller registered in a shared store.
	MaxSleep time.Duration
	Logger   *zap.Logger
}

// Scheduler keeps the alarms feed's schedules in the store and fires each trigger when it is due.
// Its lifecycle methods (Create, Read, Update, Delete, SetActive) are the feed actions' work; Start
// runs the firing loop until Stop.
type Scheduler struct {
	st       *store.Store
	now      func() time.Time
	maxSleep time.Duration
	log      *zap.Logger
	wake     chan struct{}

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a scheduler over st; nothing fires before Start.
func New(st *store.Store, o Options) *Scheduler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxSleep <= 0 {
		o.MaxSleep = time.Minute
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return &Scheduler{st: st, now: o.Now, maxSleep: o.MaxSleep, log: o.Logger, wake: make(chan struct{}, 1)}
}

// Start runs the firing loop in a goroutine, firing into t. A second Start is refused.
func (s *Scheduler) Start(t Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return errors.New("alarms: scheduler already started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go s.loop(ctx, t, s.done)
	return nil
}

// Stop ends the loop and waits for a fire in progress to finish. Safe to call more than once, and
// before Start.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Wake makes the loop look at the store now (after a schedule changed).
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Scheduler) loop(ctx context.Context, t Target, done chan struct{}) {
	defer close(done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.wake:
		}
		if _, err := s.Tick(ctx, t); err != nil && ctx.Err() == nil {
			s.log.Error("alarms: firing due schedules", zap.Error(err))
		}
		sleep := s.maxSleep
		next, ok, err := s.st.NextDue(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error("alarms: next due schedule", zap.Error(err))
			sleep = time.Second
		case ok:
			sleep = min(sleep, max(next.Sub(s.now()), 0))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(sleep)
	}
}

// Tick fires every schedule due now, once each, and returns how many it fired. The loop calls it;
// tests with a fake clock call it directly.
//
// A schedule whose due time passed while no controller ran (or several passed) fires once now,
// and moves on to its first due time after now: missed fires coalesce into one, never repeat.
// Each fire is claimed in the store before it happens (store.ClaimFire), so a restart, or another
// controller sharing the store, never fires the same due time twice; a crash between the claim
// and the fire loses that one fire.
func (s *Scheduler) Tick(ctx context.Context, t Target) (int, error) {
	now := s.now()
	due, err := s.st.DueSchedules(ctx, now)
	if err != nil {
		return 0, err
	}
	fired := 0
	var errs []error
	for _, sc := range due {
		ok, err := s.fireOne(ctx, t, sc, now)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			fired++
		}
	}
	return fired, errors.Join(errs...)
}

func (s *Scheduler) fireOne(ctx context.Context, t Target, sc *store.Schedule, now time.Time) (bool, error) {
	var cfg Config
	if err := json.Unmarshal(sc.Config, &cfg); err != nil {
		return false, s.disable(ctx, sc.Trigger, "Trigger automatically disabled: its configuration is unreadable")
	}
	next := cfg.Next(now, sc.Fires+1)
	won, err := s.st.ClaimFire(ctx, sc.Trigger, sc.NextDue, next, now)
	if err != nil || !won {
		return false, err
	}
	log := s.log.With(zap.String("trigger", sc.Trigger), zap.String("feed", sc.Feed), zap.Time("due", sc.NextDue))
	if late := now.Sub(sc.NextDue); late > time.Minute {
		log.Info("alarms: firing a due time missed while down, once", zap.Duration("late", late))
	}
	err = t.Fire(ctx, sc, cfg.Payload)
	switch {
	case errors.Is(err, ErrGone):
		log.Info("alarms: trigger gone, schedule disabled", zap.Error(err))
		return true, s.disable(ctx, sc.Trigger, "Trigger automatically disabled: "+err.Error())
	case err != nil:
		// The alarms provider retries a failed fire a few times; a claimed due time is not fired
		// again here, so that no fire ever repeats.
		log.Warn("alarms: fire failed", zap.Error(err))
	default:
		log.Debug("alarms: fired")
	}
	if sc.Feed == FeedOnce {
		if cfg.DeleteAfterFire == "true" || cfg.DeleteAfterFire == "rules" {
			if err := t.DeleteTrigger(ctx, sc, cfg.DeleteAfterFire == "rules"); err != nil && !errors.Is(err, store.ErrNotFound) {
				log.Warn("alarms: delete after fire", zap.Error(err))
			}
			if err := s.st.DeleteSchedule(ctx, sc.Trigger); err != nil && !errors.Is(err, store.ErrNotFound) {
				return true, err
			}
			return true, nil
		}
		return true, s.disable(ctx, sc.Trigger, "Automatically disabled after firing once")
	}
	if next.IsZero() {
		reason := "Automatically disabled after firing last scheduled trigger before the stop date"
		if cfg.MaxTriggers > 0 {
			reason = "Automatically disabled after reaching max triggers"
		}
		return true, s.disable(ctx, sc.Trigger, reason)
	}
	return true, nil
}

func (s *Scheduler) disable(ctx context.Context, trigger, reason string) error {
	_, err := s.st.UpdateSchedule(ctx, trigger, func(sc *store.Schedule) error {
		sc.Active, sc.Reason = false, reason
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// Registration names the trigger a feed request is about and who makes it.
type Registration struct {
	Namespace string // the trigger's namespace, the caller's own
	Trigger   string // the trigger's name
	OwnerUUID string // the uuid of the caller's key: the schedule fires as its namespace
}

func (r Registration) id() string { return r.Namespace + "/" + r.Trigger }

// Create registers (or registers again) the trigger's schedule with feed and params.
func (s *Scheduler) Create(ctx context.Context, r Registration, feed string, p map[string]json.RawMessage) error {
	now := s.now()
	cfg, err := NewConfig(feed, p, now)
	if err != nil {
		return err
	}
	doc, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("alarms: encode config: %w", err)
	}
	sc := &store.Schedule{Trigger: r.id(), Namespace: r.Namespace, Feed: feed, OwnerUUID: r.OwnerUUID, Config: doc,
		Active: true, NextDue: cfg.Next(now, 0)}
	if err := s.st.PutSchedule(ctx, sc); err != nil {
		return err
	}
	s.Wake()
	return nil
}

// notRegistered is the error for a feed request about a trigger that has no schedule of feed.
func notRegistered(r Registration) error {
	return Error(fmt.Sprintf("trigger /%s has no alarm registered", r.id()))
}

// get reads the registration's schedule, checking it belongs to feed.
func (s *Scheduler) get(ctx context.Context, r Registration, feed string) (*store.Schedule, error) {
	sc, err := s.st.GetSchedule(ctx, r.id())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, notRegistered(r)
	case err != nil:
		return nil, err
	case sc.Feed != feed:
		return nil, Error(fmt.Sprintf("trigger /%s is registered with the %s feed, not %s", r.id(), sc.Feed, feed))
	}
	return sc, nil
}

// Read is READ: the schedule's configuration and status, in the alarms provider's shape.
func (s *Scheduler) Read(ctx context.Context, r Registration, feed string) (json.RawMessage, error) {
	sc, err := s.get(ctx, r, feed)
	if err != nil {
		return nil, err
	}
	var cfg Config
	if err := json.Unmarshal(sc.Config, &cfg); err != nil {
		return nil, fmt.Errorf("alarms: decode config of %s: %w", sc.Trigger, err)
	}
	config := map[string]any{"name": r.Trigger, "namespace": r.Namespace, "payload": cfg.Payload, "strict": true}
	iso := func(ms int64) any {
		if ms == 0 {
			return nil
		}
		return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
	}
	switch sc.Feed {
	case FeedOnce:
		config["date"] = iso(cfg.Date)
		config["deleteAfterFire"] = cfg.DeleteAfterFire
	case FeedInterval:
		config["minutes"], config["startDate"], config["stopDate"] = cfg.Minutes, iso(cfg.StartDate), iso(cfg.StopDate)
	case FeedAlarm:
		config["cron"], config["timezone"] = cfg.Cron, cfg.Timezone
		config["startDate"], config["stopDate"] = iso(cfg.StartDate), iso(cfg.StopDate)
		if cfg.MaxTriggers > 0 {
			config["maxTriggers"] = cfg.MaxTriggers
		}
	}
	status := map[string]any{"active": sc.Active, "dateChanged": sc.Updated.UnixMilli(),
		"dateChangedISO": sc.Updated.UTC().Format(time.RFC3339), "fires": sc.Fires}
	if sc.Reason != "" {
		status["reason"] = map[string]string{"kind": "AUTO", "message": sc.Reason}
	}
	if !sc.NextDue.IsZero() && sc.Active {
		status["nextFire"] = sc.NextDue.UTC().Format(time.RFC3339Nano)
	}
	if !sc.LastFired.IsZero() {
		status["lastFired"] = sc.LastFired.UTC().Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(map[string]any{"config": config, "status": status})
	if err != nil {
		return nil, fmt.Errorf("alarms: encode READ of %s: %w", sc.Trigger, err)
	}
	return b, nil
}

// Update is UPDATE: change the given parameters; the next due time is computed again from now.
func (s *Scheduler) Update(ctx context.Context, r Registration, feed string, p map[string]json.RawMessage) error {
	now := s.now()
	_, err := s.st.UpdateSchedule(ctx, r.id(), func(sc *store.Schedule) error {
		if sc.Feed != feed {
			return Error(fmt.Sprintf("trigger /%s is registered with the %s feed, not %s", r.id(), sc.Feed, feed))
		}
		var cfg Config
		if err := json.Unmarshal(sc.Config, &cfg); err != nil {
			return fmt.Errorf("alarms: decode config of %s: %w", sc.Trigger, err)
		}
		cfg, err := cfg.Update(feed, p, now)
		if err != nil {
			return err
		}
		if sc.Config, err = json.Marshal(cfg); err != nil {
			return fmt.Errorf("alarms: encode config: %w", err)
		}
		sc.NextDue = cfg.Next(now, sc.Fires)
		sc.Reason = "updated"
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return notRegistered(r)
	}
	if err != nil {
		return err
	}
	s.Wake()
	return nil
}

// SetActive is PAUSE (false) and UNPAUSE (true). Unpausing moves on to the first due time after
// now: what was due while paused is not fired.
func (s *Scheduler) SetActive(ctx context.Context, r Registration, feed string, active bool) error {
	now := s.now()
	_, err := s.st.UpdateSchedule(ctx, r.id(), func(sc *store.Schedule) error {
		if sc.Feed != feed {
			return Error(fmt.Sprintf("trigger /%s is registered with the %s feed, not %s", r.id(), sc.Feed, feed))
		}
		sc.Active = active
		sc.Reason = "paused"
		if active {
			var cfg Config
			if err := json.Unmarshal(sc.Config, &cfg); err != nil {
				return fmt.Errorf("alarms: decode config of %s: %w", sc.Trigger, err)
			}
			sc.NextDue, sc.Reason = cfg.Next(now, sc.Fires), ""
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return notRegistered(r)
	}
	if err != nil {
		return err
	}
	s.Wake()
	return nil
}

// Delete is DELETE: forget the trigger's schedule. A trigger with none is not an error (the
// provider tolerates a DELETE of what it does not know, so that wsk trigger delete completes).
func (s *Scheduler) Delete(ctx context.Context, r Registration) error {
	err := s.st.DeleteSchedule(ctx, r.id())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// IsFeed reports whether name is one of the alarms feeds.
func IsFeed(name string) bool {
	for _, f := range Feeds {
		if name == f {
			return true
		}
	}
	return false
}
