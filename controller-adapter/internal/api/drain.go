package api

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/invoker/whisk"
)

// drainRetryAfter is the Retry-After, in seconds, of an invocation refused while the controller
// drains: another controller behind the same address takes it at once, and a restarting one is
// back within seconds.
const drainRetryAfter = "5"

// msgDraining is /ready's text while the controller drains.
const msgDraining = "The controller is shutting down: it answers the invocations it accepted and takes no new ones."

// Gate admits invocations until the controller drains: Drain closes it (new invocations and
// trigger fires answer 503 with Retry-After, reads and the invokers' endpoints keep working, /ready
// answers 503), Idle says when every admitted invocation has been answered, and Expire ends the
// blocking waits still running, whose callers then get 202 with their activation id, as when
// their own wait runs out. Its methods are safe for concurrent use.
type Gate struct {
	mu         sync.Mutex
	draining   bool
	inFlight   int
	idle       chan struct{} // closed once draining with nothing in flight
	expired    chan struct{} // closed by Expire
	expireOnce sync.Once
}

// NewGate returns an open gate.
func NewGate() *Gate { return &Gate{idle: make(chan struct{}), expired: make(chan struct{})} }

// Drain stops admitting invocations. It is idempotent.
func (g *Gate) Drain() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.draining {
		return
	}
	g.draining = true
	if g.inFlight == 0 {
		close(g.idle)
	}
}

// Draining reports whether Drain was called.
func (g *Gate) Draining() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.draining
}

// InFlight is the number of admitted invocations not answered yet.
func (g *Gate) InFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inFlight
}

// Idle is closed once the gate drains and every admitted invocation has been answered.
func (g *Gate) Idle() <-chan struct{} { return g.idle }

// Expire answers the blocking callers still waiting with 202 and their activation id. The
// activations run on; their records are stored as usual.
func (g *Gate) Expire() { g.expireOnce.Do(func() { close(g.expired) }) }

func (g *Gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.draining {
		return false
	}
	g.inFlight++
	return true
}

func (g *Gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inFlight--
	if g.draining && g.inFlight == 0 {
		close(g.idle)
	}
}

// drainGate is the middleware in front of every route: invocations pass the gate, or answer 503
// with Retry-After while the controller drains.
func (h *handler) drainGate(c *gin.Context) {
	if h.cfg.Gate == nil || !isInvocation(c) {
		c.Next()
		return
	}
	if !h.cfg.Gate.enter() {
		c.Header("Retry-After", drainRetryAfter)
		h.fail(c, http.StatusServiceUnavailable, msgUnavailable)
		return
	}
	defer h.cfg.Gate.leave()
	c.Next()
}

// isInvocation says whether a request would start an activation: a POST on an action or a trigger
// (a fire), or any web action request.
func isInvocation(c *gin.Context) bool {
	switch c.FullPath() {
	case "/api/v1/web/*path":
		return true
	case "/api/v1/namespaces/:ns/*rest":
		collection, entity, _ := strings.Cut(strings.Trim(c.Param("rest"), "/"), "/")
		return c.Request.Method == http.MethodPost && entity != "" && (collection == "actions" || collection == "triggers")
	}
	return false
}

// ready is GET /ready, for load balancers: 200 while the controller takes invocations, 503 with
// Retry-After once it drains.
func (h *handler) ready(c *gin.Context) {
	if h.cfg.Gate != nil && h.cfg.Gate.Draining() {
		c.Header("Retry-After", drainRetryAfter)
		h.fail(c, http.StatusServiceUnavailable, msgDraining)
		return
	}
	writeJSON(c, http.StatusOK, map[string]string{"status": "ready"})
}

// gatedInvoker ends a blocking caller's wait when the gate expires: its completion then carries no
// record, which the invoke path answers with 202 and the activation id.
type gatedInvoker struct {
	Invoker
	gate *Gate
}

func (g gatedInvoker) Publish(ctx context.Context, a *whisk.Action, msg *whisk.ActivationMessage) (<-chan balancer.Completion, error) {
	ch, err := g.Invoker.Publish(ctx, a, msg)
	if err != nil || !msg.Blocking {
		return ch, err // nobody waits for a non-blocking completion
	}
	out := make(chan balancer.Completion, 1)
	go func() {
		select {
		case comp := <-ch:
			out <- comp
		case <-g.gate.expired:
			out <- balancer.Completion{ActivationID: msg.ActivationID}
		}
	}()
	return out, nil
}
