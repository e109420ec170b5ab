package balancer

import (
	"fmt"
	"time"
)

// State is an invoker's health as the controller sees it (OpenWhisk's InvokerState).
type State int

// The four states. Only Healthy invokers are given user activations.
const (
	Offline State = iota
	Healthy
	Unhealthy
	Unresponsive
)

// String is the state's text in GET /invokers.
func (s State) String() string {
	switch s {
	case Offline:
		return "down"
	case Healthy:
		return "up"
	case Unhealthy:
		return "unhealthy"
	case Unresponsive:
		return "unresponsive"
	default:
		return fmt.Sprintf("State(%d)", int(s))
	}
}

// Result is how one activation ended, as far as the invoker's health is concerned.
type Result int

// Results kept in the health ring buffer. Only a whisk error (status code 3) is a SystemError;
// application and developer errors are the action's fault and count as Success. A forced
// completion (no slot-freeing ack in time) is a Timeout.
const (
	Success Result = iota + 1
	SystemError
	Timeout
)

func (r Result) String() string {
	switch r {
	case Success:
		return "success"
	case SystemError:
		return "system error"
	case Timeout:
		return "timeout"
	default:
		return fmt.Sprintf("Result(%d)", int(r))
	}
}

// HealthConfig holds the supervision constants. The zero value of a field means OpenWhisk's default.
type HealthConfig struct {
	// PingTimeout: an online invoker silent this long goes Offline (10 s).
	PingTimeout time.Duration
	// TestInterval between test actions while Unhealthy or Unresponsive (1 min).
	TestInterval time.Duration
	// BufferSize is how many recent results are kept (10).
	BufferSize int
	// ErrorTolerance: more system errors (or timeouts) than this in the buffer changes the state (3).
	ErrorTolerance int
}

// Defaults of OpenWhisk's InvokerSupervision.
const (
	DefaultPingTimeout    = 10 * time.Second
	DefaultTestInterval   = time.Minute
	DefaultBufferSize     = 10
	DefaultErrorTolerance = 3
)

func (c HealthConfig) withDefaults() HealthConfig {
	if c.PingTimeout <= 0 {
		c.PingTimeout = DefaultPingTimeout
	}
	if c.TestInterval <= 0 {
		c.TestInterval = DefaultTestInterval
	}
	if c.BufferSize <= 0 {
		c.BufferSize = DefaultBufferSize
	}
	if c.ErrorTolerance <= 0 {
		c.ErrorTolerance = DefaultErrorTolerance
	}
	return c
}

// Actions is what the caller must do after feeding an event to Health.
type Actions struct {
	// From and To are the states before and after the event (equal when nothing changed).
	From, To State
	// SendTest asks for one health test action to be sent to the invoker now.
	SendTest bool
}

// Changed reports a state transition.
func (a Actions) Changed() bool { return a.From != a.To }

// Health is one invoker's supervision state machine. It does no I/O and reads no clock: every
// event carries the time, and the returned Actions say what to send. The caller serialises
// access.
//
// The rules (OpenWhisk's InvokerSupervision):
//   - an invoker seen for the first time starts Unhealthy;
//   - entering Unhealthy or Unresponsive sends a test action at once, then one every TestInterval
//     while the state lasts;
//   - Healthy, Unhealthy and Unresponsive go Offline after PingTimeout without a ping; an enabled
//     ping brings an Offline invoker back as Unhealthy; a disabled ping takes it Offline at once;
//   - every finished activation adds its Result to a ring buffer. More than ErrorTolerance system
//     errors in it means Unhealthy, else more than ErrorTolerance timeouts means Unresponsive.
//     Otherwise a success means Healthy; an error leaves the state alone, except while the buffer
//     is still being primed (ErrorTolerance entries or fewer), when a system error means Unhealthy
//     and a timeout Unresponsive, so a new invoker whose first test fails is not trusted. A Healthy
//     invoker's success and any result while Offline change nothing. A success while Unhealthy
//     also sends another test action at once, so that test successes push the errors out of the
//     buffer quickly.
type Health struct {
	cfg      HealthConfig
	state    State
	lastPing time.Time
	nextTest time.Time
	ring     []Result
	next     int // where the next result goes once the ring is full
}

// NewHealth starts the state machine of an invoker registered by a ping at now: Unhealthy with a
// test action to send, or Offline when that ping says the invoker is disabled.
func NewHealth(cfg HealthConfig, now time.Time, enabled bool) (Health, Actions) {
	h := OfflineHealth(cfg)
	if !enabled {
		return h, Actions{From: Offline, To: Offline}
	}
	h.lastPing = now
	a := Actions{From: Offline}
	h.enter(Unhealthy, now, &a)
	return h, a
}

// OfflineHealth is the placeholder for an invoker index that has not pinged yet (instance numbers
// are dense, so a ping from invoker 2 implies invokers 0 and 1).
func OfflineHealth(cfg HealthConfig) Health {
	cfg = cfg.withDefaults()
	return Health{cfg: cfg, state: Offline, ring: make([]Result, 0, cfg.BufferSize)}
}

// State is the current state.
func (h *Health) State() State { return h.state }

// Ping handles a PingMessage received at now.
func (h *Health) Ping(now time.Time, enabled bool) Actions {
	a := Actions{From: h.state, To: h.state}
	if !enabled {
		if h.state != Offline {
			h.enter(Offline, now, &a)
		}
		return a
	}
	h.lastPing = now
	if h.state == Offline {
		h.enter(Unhealthy, now, &a)
	}
	return a
}

// Finished handles the end of one activation on this invoker (ack or forced completion).
func (h *Health) Finished(now time.Time, r Result) Actions {
	a := Actions{From: h.state, To: h.state}
	h.add(r)
	if h.state == Unhealthy && r == Success {
		a.SendTest = true
	}
	if h.state == Offline || h.state == Healthy && r == Success {
		return a
	}
	systemErrors, timeouts := h.counts()
	priming := len(h.ring) <= h.cfg.ErrorTolerance
	to := h.state
	switch {
	case systemErrors > h.cfg.ErrorTolerance:
		to = Unhealthy
	case timeouts > h.cfg.ErrorTolerance:
		to = Unresponsive
	case r == Success:
		to = Healthy
	case priming && r == SystemError:
		to = Unhealthy
	case priming && r == Timeout:
		to = Unresponsive
	}
	if to != h.state {
		h.enter(to, now, &a)
	}
	return a
}

// Tick advances time: the ping timeout and the periodic test action. Call it often enough for
// the timeouts' precision (the Balancer ticks every second).
func (h *Health) Tick(now time.Time) Actions {
	a := Actions{From: h.state, To: h.state}
	if h.state == Offline {
		return a
	}
	if now.Sub(h.lastPing) >= h.cfg.PingTimeout {
		h.enter(Offline, now, &a)
		return a
	}
	if (h.state == Unhealthy || h.state == Unresponsive) && !now.Before(h.nextTest) {
		a.SendTest = true
		h.nextTest = now.Add(h.cfg.TestInterval)
	}
	return a
}

// Buffer returns the results kept, oldest first (for tests and diagnostics).
func (h *Health) Buffer() []Result {
	out := make([]Result, 0, len(h.ring))
	if len(h.ring) < cap(h.ring) {
		return append(out, h.ring...)
	}
	out = append(out, h.ring[h.next:]...)
	return append(out, h.ring[:h.next]...)
}

func (h *Health) enter(s State, now time.Time, a *Actions) {
	h.state = s
	a.To = s
	if s == Unhealthy || s == Unresponsive {
		a.SendTest = true
		h.nextTest = now.Add(h.cfg.TestInterval)
	}
}

func (h *Health) add(r Result) {
	if len(h.ring) < cap(h.ring) {
		h.ring = append(h.ring, r)
		return
	}
	h.ring[h.next] = r
	h.next = (h.next + 1) % len(h.ring)
}

func (h *Health) counts() (systemErrors, timeouts int) {
	for _, r := range h.ring {
		switch r {
		case SystemError:
			systemErrors++
		case Timeout:
			timeouts++
		}
	}
	return systemErrors, timeouts
}
