package api

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

// OpenWhisk's system throttles (ansible's and the standalone controller's defaults).
const (
	DefaultInvocationsPerMinute  = 60
	DefaultConcurrentInvocations = 30
	DefaultFiresPerMinute        = 60
)

// Throttles are the system's limits per namespace; a namespace's own limits (store.Limits, set
// with `controller-adapter namespace limits`) override them. Zero fields take OpenWhisk's
// defaults.
type Throttles struct {
	// InvocationsPerMinute: action invocations (REST and web) a namespace may start per clock
	// minute (whisk.limits.actions.invokes.perMinute, default 60).
	InvocationsPerMinute int
	// ConcurrentInvocations: activations of a namespace in flight at once, counted by the load
	// balancer (whisk.limits.actions.invokes.concurrent, default 30).
	ConcurrentInvocations int
	// FiresPerMinute: trigger fires a namespace may make per clock minute
	// (whisk.limits.triggers.fires.perMinute, default 60).
	FiresPerMinute int
}

func (t Throttles) withDefaults() Throttles {
	if t.InvocationsPerMinute <= 0 {
		t.InvocationsPerMinute = DefaultInvocationsPerMinute
	}
	if t.ConcurrentInvocations <= 0 {
		t.ConcurrentInvocations = DefaultConcurrentInvocations
	}
	if t.FiresPerMinute <= 0 {
		t.FiresPerMinute = DefaultFiresPerMinute
	}
	return t
}

// The limits a ThrottleError names (the "limit" label of the throttled metric).
const (
	LimitInvocationsPerMinute  = "invocationsPerMinute"
	LimitConcurrentInvocations = "concurrentInvocations"
	LimitFiresPerMinute        = "firesPerMinute"
)

// ThrottleError refuses an invocation or a trigger fire: the REST API answers 429 with its text,
// OpenWhisk's (Messages.tooManyRequests, tooManyConcurrentRequests).
type ThrottleError struct {
	Limit          string // one of the Limit constants
	Count, Allowed int
}

func (e *ThrottleError) Error() string {
	if e.Limit == LimitConcurrentInvocations {
		return fmt.Sprintf("Too many concurrent requests in flight (count: %d, allowed: %d).", e.Count, e.Allowed)
	}
	return fmt.Sprintf("Too many requests in the last minute (count: %d, allowed: %d).", e.Count, e.Allowed)
}

// throttle is OpenWhisk's entitlement throttling (RateThrottler, ActivationThrottler), per
// namespace. Rates count in clock-minute windows, as OpenWhisk's RateInfo does: the count starts
// over when the minute changes, and every check is charged, refused ones too (so the count in a
// refusal keeps rising). Concurrency is what the load balancer has in flight for the namespace;
// a check passes while that is below the limit (slack for the request being checked).
//
// What is checked where, as OpenWhisk does: every action invocation through the REST API or a
// web action charges the invoking namespace's rate and checks its concurrency (Invoke) before
// the action is even read; the components of a sequence or a conductor action are not checked
// (noThrottle), but they count as in flight. A trigger fire charges the fires rate only (Fire);
// each action a rule starts then is an invocation like any other (OpenWhisk posts it to its own
// REST API with the owner's key), so the rule records Invoke's refusal as its failure.
// One controller is assumed: OpenWhisk divides the limits among the controllers of a cluster.
type throttle struct {
	sys    Throttles
	active func(ns string) int // in-flight activations of a namespace (Invoker.ActiveActivationsFor)
	now    func() time.Time
	// refused is called for every refusal with its limit (metrics).
	refused func(limit string)

	mu      sync.Mutex
	invokes map[string]*minuteCount
	fires   map[string]*minuteCount
}

type minuteCount struct {
	minute int64
	count  int
}

// pruneAt is the number of namespaces a rate map holds before windows of past minutes are dropped.
const pruneAt = 4096

func newThrottle(sys Throttles, active func(string) int, now func() time.Time, refused func(string)) *throttle {
	return &throttle{sys: sys.withDefaults(), active: active, now: now, refused: refused,
		invokes: map[string]*minuteCount{}, fires: map[string]*minuteCount{}}
}

// limits are the namespace's effective limits: its own where set, the system's elsewhere.
func (t *throttle) limits(id whisk.Identity) (Throttles, error) {
	own, err := store.ParseLimits(id.Limits)
	if err != nil {
		return Throttles{}, fmt.Errorf("limits of namespace %s: %w", id.Namespace.Name, err)
	}
	l := t.sys
	if own.InvocationsPerMinute != nil {
		l.InvocationsPerMinute = *own.InvocationsPerMinute
	}
	if own.ConcurrentInvocations != nil {
		l.ConcurrentInvocations = *own.ConcurrentInvocations
	}
	if own.FiresPerMinute != nil {
		l.FiresPerMinute = *own.FiresPerMinute
	}
	return l, nil
}

// Invoke charges one action invocation to id's namespace and checks its concurrency. It returns
// a *ThrottleError when either limit refuses it (the caller answers 429 with its text), or
// another error when the namespace's limits do not read.
func (t *throttle) Invoke(id whisk.Identity) error {
	l, err := t.limits(id)
	if err != nil {
		return err
	}
	ns := id.Namespace.Name
	if n := t.charge(t.invokes, ns); n > l.InvocationsPerMinute {
		return t.refuse(LimitInvocationsPerMinute, n, l.InvocationsPerMinute)
	}
	if n := t.active(ns); n >= l.ConcurrentInvocations {
		return t.refuse(LimitConcurrentInvocations, n, l.ConcurrentInvocations)
	}
	return nil
}

// Fire charges one trigger fire to id's namespace: the hook POST .../triggers/{name} calls
// before it looks at the trigger. Errors as Invoke's.
func (t *throttle) Fire(id whisk.Identity) error {
	l, err := t.limits(id)
	if err != nil {
		return err
	}
	if n := t.charge(t.fires, id.Namespace.Name); n > l.FiresPerMinute {
		return t.refuse(LimitFiresPerMinute, n, l.FiresPerMinute)
	}
	return nil
}

func (t *throttle) refuse(limit string, count, allowed int) error {
	if t.refused != nil {
		t.refused(limit)
	}
	return &ThrottleError{Limit: limit, Count: count, Allowed: allowed}
}

// charge counts one operation of ns in the current minute and returns the minute's count.
func (t *throttle) charge(m map[string]*minuteCount, ns string) int {
	minute := t.now().UnixMilli() / 60000
	t.mu.Lock()
	defer t.mu.Unlock()
	w := m[ns]
	if w == nil {
		if len(m) >= pruneAt {
			for k, old := range m {
				if old.minute != minute {
					delete(m, k)
				}
			}
		}
		w = &minuteCount{minute: minute}
		m[ns] = w
	}
	if w.minute != minute {
		w.minute, w.count = minute, 0
	}
	w.count++
	return w.count
}

// admitInvoke charges an invocation by id (throttle.Invoke) and answers 429 (or 500) itself when
// it is refused.
func (h *handler) admitInvoke(c *gin.Context, id whisk.Identity) bool {
	return h.admit(c, h.throttle.Invoke(id))
}

// admitFire charges a trigger fire by id (throttle.Fire) and answers 429 (or 500) itself when it
// is refused: the hook for POST .../triggers/{name}.
func (h *handler) admitFire(c *gin.Context, id whisk.Identity) bool {
	return h.admit(c, h.throttle.Fire(id))
}

func (h *handler) admit(c *gin.Context, err error) bool {
	if err == nil {
		return true
	}
	var te *ThrottleError
	if errors.As(err, &te) {
		h.fail(c, http.StatusTooManyRequests, te.Error())
		return false
	}
	h.internalError(c, "throttle", err)
	return false
}
