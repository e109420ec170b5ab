package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

// HeaderActivationID is on every invoke reply (and web action reply).
const HeaderActivationID = "x-openwhisk-activation-id"

// storingWaitMax bounds how long a read of an answered activation waits for
// the invoker to store its record (see balancer.Storing); it is normally there
// within milliseconds.
const storingWaitMax = 5 * time.Second

// parsePayload checks an invoke body: empty, or a JSON object.
func parsePayload(body []byte) (map[string]json.RawMessage, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, nil
	}
	if !json.Valid(body) {
		return nil, badRequest("The request content was malformed: the body is not valid JSON.")
	}
	if body[0] != '{' {
		return nil, badRequest("The request content was malformed: the body must be a JSON object.")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, badRequest("The request content was malformed: " + jsonErrorText(err))
	}
	return m, nil
}

// finalViolation reports whether payload overrides a parameter the action
// protects: with the annotation final truthy, its defined parameters may not
// be overridden by a request.
func finalViolation(a *whisk.Action, payload map[string]json.RawMessage) bool {
	if !a.Annotations.IsTruthy(annFinal, false) {
		return false
	}
	for k := range payload {
		if _, ok := a.Parameters.Get(k); ok {
			return true
		}
	}
	return false
}

// mergeContent is the message content: the action's parameters (its package's
// and binding's merged under them already, see resolveAction) with the payload
// on top (payload keys in sorted order for a stable message).
func mergeContent(params whisk.Parameters, payload map[string]json.RawMessage) (json.RawMessage, error) {
	p := append(whisk.Parameters{}, params...)
	keys := make([]string, 0, len(payload))
	for k := range payload {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := payload[k]
		if len(bytes.TrimSpace(v)) == 0 {
			v = json.RawMessage("null")
		}
		if err := p.Set(k, v); err != nil {
			return nil, fmt.Errorf("merge parameter %q: %w", k, err)
		}
	}
	return p.ToObject()
}

// buildMessage builds the ActivationMessage the way the Scala controller
// does: transid [id, start], the action's path, name and version, its
// revision, the invoking identity, a fresh activation id, this controller,
// blocking, the merged content, the init parameter names and no locked args.
func buildMessage(ctrl whisk.ControllerInstanceID, tid whisk.TransactionID, a *whisk.Action, user whisk.Identity,
	payload map[string]json.RawMessage, blocking bool) (*whisk.ActivationMessage, error) {
	content, err := mergeContent(a.Parameters, payload)
	if err != nil {
		return nil, err
	}
	version := a.Version
	if version == "" {
		version = whisk.DefaultVersion
	}
	var rev *string
	if a.Revision != "" {
		r := a.Revision
		rev = &r
	}
	// The key travels (and sits in the Kafka log) only for actions that get it as __OW_API_KEY:
	// OpenWhisk's rule, the annotation truthy or missing. Others carry "authkey":{}, and the
	// invoker reads their action with its own token.
	if !a.Annotations.IsTruthy(annProvideAPIKey, true) {
		user.AuthKey = whisk.AuthKey{}
	}
	return &whisk.ActivationMessage{
		TransID:             tid,
		Action:              whisk.FullyQualifiedEntityName{Path: a.Namespace, Name: a.Name, Version: version},
		Revision:            rev,
		User:                user,
		ActivationID:        whisk.ActivationIDNew(),
		RootControllerIndex: ctrl,
		Blocking:            blocking,
		Content:             content,
		InitArgs:            a.Parameters.InitKeys(),
		LockedArgs:          map[string]string{},
	}, nil
}

// httpStatusFor maps an activation status code to a blocking invoke's HTTP
// status: success 200, application and developer errors 502, whisk errors 500.
func httpStatusFor(code int) int {
	switch code {
	case whisk.StatusSuccess:
		return http.StatusOK
	case whisk.StatusApplicationError, whisk.StatusDeveloperError:
		return http.StatusBadGateway
	default:
		return http.StatusInternalServerError
	}
}

// invokeReply is the blocking invoke's body: the result alone when asked
// for (or when the result is an array, as OpenWhisk does), otherwise the
// whole activation in its external form.
func invokeReply(a *whisk.WhiskActivation, resultOnly bool) (int, []byte, error) {
	status := httpStatusFor(a.Response.StatusCode)
	res := bytes.TrimSpace(a.Response.Result)
	if len(res) > 0 && res[0] == '[' {
		return status, res, nil
	}
	if resultOnly {
		if len(res) == 0 {
			res = []byte("{}")
		}
		return status, res, nil
	}
	b, err := a.External()
	if err != nil {
		return 0, nil, fmt.Errorf("external form of %s: %w", a.ActivationID, err)
	}
	return status, b, nil
}

// invoke is POST /namespaces/{ns}/actions/{[pkg/]name}?blocking=&result=&timeout=.
func (h *handler) invoke(c *gin.Context, ns, entity string) {
	// Throttled before the action is read, as OpenWhisk's entitlement check comes first.
	if !h.admitInvoke(c, identityOf(c)) {
		return
	}
	a, binding, ok := h.lookupAction(c, ns, entity)
	if !ok || h.serveFeed(c, a) {
		return
	}
	blocking := c.Query("blocking") == "true"
	resultOnly := c.Query("result") == "true"
	wait := h.cfg.BlockingWait
	if t := c.Query("timeout"); t != "" {
		ms, err := strconv.Atoi(t)
		if err != nil || ms <= 0 || ms > maxWaitMs {
			h.fail(c, http.StatusBadRequest, msgInvalidTimeout())
			return
		}
		wait = time.Duration(ms) * time.Millisecond
	}
	body, ok := h.readBodyOrFail(c, MaxPayloadBytes)
	if !ok {
		return
	}
	payload, err := parsePayload(body)
	if err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	}
	if finalViolation(a, payload) {
		h.fail(c, http.StatusBadRequest, msgParamsNotAllowed)
		return
	}
	if isComposed(a) {
		// Sequences and conductor actions run in the controller (sequences.go).
		h.invokeComposed(c, a, binding, payload, blocking, resultOnly, wait)
		return
	}
	msg, err := buildMessage(h.ctrl, tid(c), a, identityOf(c), payload, blocking)
	if err != nil {
		h.internalError(c, "build activation message", err)
		return
	}
	msg.Action.Binding = binding
	act, ready, ok := h.run(c, a, msg, blocking, wait)
	if !ok {
		return
	}
	if !blocking || !ready {
		writeJSON(c, http.StatusAccepted, map[string]string{"activationId": msg.ActivationID})
		return
	}
	status, reply, err := invokeReply(act, resultOnly)
	if err != nil {
		h.internalError(c, "invoke reply", err)
		return
	}
	c.Data(status, "application/json", reply)
}

// run publishes msg and, when blocking, waits up to wait for the record.
// It sets the activation id header, and answers 413/503/500 itself when the
// publish fails (ok false). ready is false when a blocking wait expired.
func (h *handler) run(c *gin.Context, a *whisk.Action, msg *whisk.ActivationMessage, blocking bool, wait time.Duration) (act *whisk.WhiskActivation, ready, ok bool) {
	ch, err := publish(c.Request.Context(), h.inv, h.store, a, msg)
	switch {
	case errors.Is(err, ErrContentTooLarge):
		h.log.Info("activation content too large", zap.String("transid", msg.TransID.ID), zap.Error(err))
		h.fail(c, http.StatusRequestEntityTooLarge, msgContentTooLarge)
		return nil, false, false
	case errors.Is(err, balancer.ErrNoInvokers):
		h.log.Warn("no invokers available", zap.String("transid", msg.TransID.ID), zap.String("action", msg.Action.String()))
		h.fail(c, http.StatusServiceUnavailable, msgUnavailable)
		return nil, false, false
	case err != nil:
		h.internalError(c, "publish activation", err)
		return nil, false, false
	}
	c.Header(HeaderActivationID, msg.ActivationID)
	h.log.Debug("activation published", zap.String("transid", msg.TransID.ID),
		zap.String("activation_id", msg.ActivationID), zap.String("action", msg.Action.String()), zap.Bool("blocking", blocking))
	if !blocking {
		return nil, false, true
	}
	act, err = await(c.Request.Context(), ch, wait)
	if err != nil {
		if c.Request.Context().Err() != nil {
			// The caller went away; the activation runs on and is recorded.
			c.Abort()
			return nil, false, false
		}
		h.internalError(c, "await activation", err)
		return nil, false, false
	}
	return act, act != nil, true
}

// await waits up to wait for the completion and returns its record: the
// balancer has it from the ack, or from the store when the ack carried only
// the id. A nil record means not ready (the wait expired, or the completion
// was forced and the invoker stored nothing).
func await(ctx context.Context, ch <-chan balancer.Completion, wait time.Duration) (*whisk.WhiskActivation, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case comp := <-ch:
		return comp.Activation, nil
	case <-timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ErrNotReady: a blocking activation has no record within the wait.
var ErrNotReady = errors.New("the activation has not finished within the wait")

// Activate runs action a as user with params (empty, or a JSON object) and
// waits up to wait for its record: what POST .../actions/{name}?blocking=true
// does once the caller is authenticated, with the same checks, message and
// completion, for callers in this process (controller-adapter/embed); st keeps
// content too large for a Kafka record. Errors: a client error's text (the REST
// API answers 400 with it), an error wrapping ErrContentTooLarge (413 there) or
// balancer.ErrNoInvokers, ErrNotReady, or ctx's.
func Activate(ctx context.Context, inv Invoker, st *store.Store, ctrl whisk.ControllerInstanceID, a *whisk.Action, user whisk.Identity,
	params json.RawMessage, wait time.Duration) (*whisk.WhiskActivation, error) {
	payload, err := parsePayload(params)
	if err != nil {
		return nil, err
	}
	if finalViolation(a, payload) {
		return nil, badRequest(msgParamsNotAllowed)
	}
	msg, err := buildMessage(ctrl, whisk.NewRandomTransactionID(time.Now()), a, user, payload, true)
	if err != nil {
		return nil, err
	}
	ch, err := publish(ctx, inv, st, a, msg)
	if err != nil {
		return nil, fmt.Errorf("activate %s: %w", msg.Action, err)
	}
	act, err := await(ctx, ch, wait)
	switch {
	case err != nil:
		return nil, fmt.Errorf("activation %s: %w", msg.ActivationID, err)
	case act == nil:
		return nil, fmt.Errorf("activation %s: %w", msg.ActivationID, ErrNotReady)
	}
	return act, nil
}
