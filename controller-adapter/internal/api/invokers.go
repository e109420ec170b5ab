package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/balancer"
)

// The operator's routes on invokers (issue #20): drain an invoker (its images move, each only
// once another invoker has it warm and keyed), undrain it, and follow a drain. They need the
// controller's admin password (Basic auth, user AdminUser), as the invoker's /disable needs its
// own: a drain takes capacity out of service. The destinations take their prepare requests on
// /internal/v1/prepare with the invoker token.

// AdminUser is the user name of the controller's admin routes.
const AdminUser = "admin"

// Drainer drains invokers: *balancer.Balancer.
type Drainer interface {
	Drain(id, to int, force bool) (balancer.DrainStatus, error)
	Undrain(id int) (balancer.DrainStatus, error)
	DrainStatusOf(id int) (balancer.DrainStatus, error)
	Prepares(to int, epoch string, after int64) (string, []balancer.Prepare, <-chan struct{})
}

// msgNoDrain answers the drain routes of a controller whose invokers cannot be drained.
const msgNoDrain = "This controller cannot drain invokers."

// adminAuth guards the operator's routes: Basic auth with AdminUser and the admin password, which
// an unset password never matches. Every refusal is the same 401.
func (h *handler) adminAuth(c *gin.Context) {
	user, pw, ok := c.Request.BasicAuth()
	if !ok || h.cfg.AdminPassword == "" || subtle.ConstantTimeCompare([]byte(user), []byte(AdminUser)) != 1 ||
		subtle.ConstantTimeCompare([]byte(pw), []byte(h.cfg.AdminPassword)) != 1 {
		c.Header("WWW-Authenticate", `Basic realm="controller admin"`)
		h.fail(c, http.StatusUnauthorized, msgBadCredentials)
		return
	}
	c.Next()
}

// invokerID reads an invoker named as its instance number ("1") or its name ("invoker1").
func invokerID(s string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimPrefix(s, "invoker"))
	return n, err == nil && n >= 0 && n < maxInvokerIndex
}

// drainTarget reads the route's invoker and the drainer; ok false after answering.
func (h *handler) drainTarget(c *gin.Context) (int, bool) {
	if h.drainer == nil {
		h.fail(c, http.StatusNotImplemented, msgNoDrain)
		return 0, false
	}
	id, ok := invokerID(c.Param("invoker"))
	if !ok {
		h.fail(c, http.StatusBadRequest, "The invoker must be an instance number or invokerN.")
		return 0, false
	}
	return id, true
}

// drainInvoker is POST /invokers/{invoker}/drain, body (optional) {"to": N, "force": bool}: the
// drain starts and its status is answered (202; 200 when the invoker drains already). Draining the
// last invoker that takes activations needs force (409 without, saying what would fail).
func (h *handler) drainInvoker(c *gin.Context) {
	id, ok := h.drainTarget(c)
	if !ok {
		return
	}
	body, ok := h.readBodyOrFail(c, 4<<10)
	if !ok {
		return
	}
	var in struct {
		To    json.RawMessage `json:"to"` // a number or "invokerN"
		Force bool            `json:"force"`
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			h.fail(c, http.StatusBadRequest, `The body must be {"to": INVOKER, "force": true|false}, both optional.`)
			return
		}
	}
	to := -1
	if len(in.To) > 0 && string(in.To) != "null" {
		var name string
		if json.Unmarshal(in.To, &name) != nil {
			name = string(in.To) // a number
		}
		n, ok := invokerID(name)
		if !ok {
			h.fail(c, http.StatusBadRequest, "'to' must be an instance number or invokerN.")
			return
		}
		if n == id {
			h.fail(c, http.StatusBadRequest, fmt.Sprintf("invoker%d cannot be drained to itself.", id))
			return
		}
		to = n
	}
	before, err := h.drainer.DrainStatusOf(id)
	if err == nil {
		var s balancer.DrainStatus
		if s, err = h.drainer.Drain(id, to, in.Force); err == nil {
			status := http.StatusAccepted
			if before.State != "serving" {
				status = http.StatusOK
			}
			h.log.Info("invoker drain asked", zap.String("transid", tid(c).ID), zap.Int("invoker", id), zap.Int("to", to),
				zap.Bool("force", in.Force), zap.String("state", s.State))
			writeJSON(c, status, s)
			return
		}
	}
	h.drainError(c, err)
}

// undrainInvoker is POST /invokers/{invoker}/undrain: the invoker takes its activations again.
func (h *handler) undrainInvoker(c *gin.Context) {
	id, ok := h.drainTarget(c)
	if !ok {
		return
	}
	s, err := h.drainer.Undrain(id)
	if err != nil {
		h.drainError(c, err)
		return
	}
	h.log.Info("invoker undrained", zap.String("transid", tid(c).ID), zap.Int("invoker", id))
	writeJSON(c, http.StatusOK, s)
}

// drainStatus is GET /invokers/{invoker}/drain: the drain's progress.
func (h *handler) drainStatus(c *gin.Context) {
	id, ok := h.drainTarget(c)
	if !ok {
		return
	}
	s, err := h.drainer.DrainStatusOf(id)
	if err != nil {
		h.drainError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, s)
}

func (h *handler) drainError(c *gin.Context, err error) {
	switch {
	case errors.Is(err, balancer.ErrNoSuchInvoker):
		h.fail(c, http.StatusNotFound, "No such invoker: "+err.Error()+".")
	case errors.Is(err, balancer.ErrBadDestination), errors.Is(err, balancer.ErrLastInvoker):
		h.fail(c, http.StatusConflict, err.Error()+".")
	default:
		h.internalError(c, "drain", err)
	}
}

// pollPrepare is GET /internal/v1/prepare?invoker=N&epoch=E&after=SEQ[&timeout=MS]: invoker N
// waits for the requests to prepare images there (a drain moves them to it) numbered above SEQ in
// this controller run E (every request, when E is another run's).
func (h *handler) pollPrepare(c *gin.Context) {
	to, ok := h.invokerParam(c, true)
	if !ok {
		return
	}
	wait, ok := h.pollTimeout(c)
	if !ok {
		return
	}
	after, err := strconv.ParseInt(c.DefaultQuery("after", "0"), 10, 64)
	if err != nil || after < 0 {
		h.fail(c, http.StatusBadRequest, "The query parameter 'after' must be a sequence number.")
		return
	}
	if h.drainer == nil {
		h.fail(c, http.StatusNotImplemented, msgNoDrain)
		return
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	epoch := c.Query("epoch")
	for {
		e, list, changed := h.drainer.Prepares(to, epoch, after)
		if len(list) > 0 || e != epoch {
			writeJSON(c, http.StatusOK, map[string]any{"epoch": e, "prepare": list})
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			writeJSON(c, http.StatusOK, map[string]any{"epoch": e, "prepare": list})
			return
		case <-shuttingDown(c):
			writeJSON(c, http.StatusOK, map[string]any{"epoch": e, "prepare": list})
			return
		case <-c.Request.Context().Done():
			return
		}
	}
}

// shutdownKey carries, in a request's context, the channel closed when the server shuts down
// (WithShutdown).
type shutdownKey struct{}

// WithShutdown makes ctx, a server's base context, carry shutdown, closed when the server starts
// shutting down: the invokers' long polls (prepare requests, key requests and offers) then answer
// at once, as at their own timeout, so that a controller stops (or restarts) without waiting for
// them, and the invokers poll again, reaching its successor.
func WithShutdown(ctx context.Context, shutdown <-chan struct{}) context.Context {
	return context.WithValue(ctx, shutdownKey{}, shutdown)
}

// shuttingDown is the request's shutdown channel; nil (never ready) without WithShutdown.
func shuttingDown(c *gin.Context) <-chan struct{} {
	ch, _ := c.Request.Context().Value(shutdownKey{}).(<-chan struct{}) // absent: nil, a poll that never ends early
	return ch
}
