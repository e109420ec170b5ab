package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/balancer"
	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

// OpenWhisk's texts for triggers (Triggers.scala, Messages).
const (
	msgFeedNameInvalid = "Feed name is not valid"
	// owHeaders is the parameter a rule's action gets the fire request's headers in
	// (WebApiDirectives.headers).
	owHeaders = "__ow_headers"
)

func msgTriggerWithInactiveRule(rule, action string) string {
	return fmt.Sprintf("Rule '%s' is inactive, action '%s' was not activated.", rule, action)
}

// triggerRoutes dispatches /namespaces/{ns}/triggers[/{name}] (the router checked that ns is the
// caller's own: triggers are never shared); POST fires a trigger.
func (h *handler) triggerRoutes(c *gin.Context, ns, entity string) {
	h.entityRoutes(c, ns, entity, entityHandlers{
		list: h.listTriggers, get: h.getTrigger, put: h.putTrigger, del: h.deleteTrigger, post: h.fireTrigger})
}

// triggerPutRequest is the body of PUT .../triggers/{name} (WhiskTriggerPut). Absent fields keep
// the stored value on overwrite.
type triggerPutRequest struct {
	Parameters  *whisk.Parameters `json:"parameters"`
	Limits      json.RawMessage   `json:"limits"`
	Version     *string           `json:"version"`
	Publish     *bool             `json:"publish"`
	Annotations *whisk.Parameters `json:"annotations"`
}

// validFeedName is EntityPath.validate for a trigger's feed annotation: "name", "pkg/name",
// "ns/pkg/name", with an optional leading slash.
func validFeedName(v json.RawMessage) bool {
	var s string
	if json.Unmarshal(v, &s) != nil {
		return false
	}
	parts := strings.Split(strings.TrimPrefix(s, "/"), "/")
	if len(parts) > 3 {
		return false
	}
	for _, p := range parts {
		if p != "_" && !whisk.ValidEntityName(p) {
			return false
		}
	}
	return true
}

// putTrigger is PUT /namespaces/{ns}/triggers/{name}[?overwrite=true].
func (h *handler) putTrigger(c *gin.Context, ns, name string) {
	body, ok := h.readBodyOrFail(c, MaxActionBytes)
	if !ok {
		return
	}
	var req triggerPutRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			h.fail(c, http.StatusBadRequest, "The request content was malformed: "+jsonErrorText(err))
			return
		}
	}
	if req.Version != nil && !validSemVer(*req.Version) {
		h.fail(c, http.StatusBadRequest, fmt.Sprintf("The request content was malformed: version '%s' is not major.minor.patch.", *req.Version))
		return
	}
	if l := bytes.TrimSpace(req.Limits); len(l) > 0 && string(l) != "null" && l[0] != '{' {
		h.fail(c, http.StatusBadRequest, "The request content was malformed: limits must be an object.")
		return
	}
	ctx := c.Request.Context()
	overwrite := c.Query("overwrite") == "true"
	old, err := h.store.GetTrigger(ctx, ns, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		old = nil
	case err != nil:
		h.internalError(c, "read trigger for update", err)
		return
	case !overwrite:
		h.fail(c, http.StatusConflict, msgConflict)
		return
	}
	t := &whisk.Trigger{Namespace: ns, Name: name, Parameters: whisk.Parameters{}, Annotations: whisk.Parameters{}}
	if old != nil {
		t.Parameters, t.Limits, t.Publish, t.Annotations = old.Parameters, old.Limits, old.Publish, old.Annotations
	}
	if req.Parameters != nil {
		t.Parameters = *req.Parameters
	}
	if l := bytes.TrimSpace(req.Limits); len(l) > 0 && string(l) != "null" {
		// OpenWhisk's TriggerLimits has no fields: whatever was sent reads back as {}.
		t.Limits = json.RawMessage("{}")
	}
	if req.Publish != nil {
		t.Publish = *req.Publish
	}
	if req.Annotations != nil {
		t.Annotations = *req.Annotations
	}
	if req.Version != nil {
		t.Version = *req.Version
	}
	if old == nil {
		// Only a created trigger's feed is checked, as OpenWhisk's validateTriggerFeed.
		if f, ok := t.Annotations.Get(annFeed); ok && !validFeedName(f) {
			h.fail(c, http.StatusBadRequest, msgFeedNameInvalid)
			return
		}
	}
	saved, err := h.store.PutTrigger(ctx, t, overwrite)
	switch {
	case errors.Is(err, store.ErrConflict):
		h.fail(c, http.StatusConflict, msgConflict)
		return
	case err != nil:
		h.internalError(c, "store trigger", err)
		return
	}
	h.log.Info("trigger stored", zap.String("transid", tid(c).ID), zap.String("trigger", saved.Path()),
		zap.String("rev", saved.Revision), zap.Bool("update", old != nil))
	writeJSON(c, http.StatusOK, saved)
}

// getTrigger is GET /namespaces/{ns}/triggers/{name}: the trigger with its rules.
func (h *handler) getTrigger(c *gin.Context, ns, name string) {
	t, err := h.store.GetTrigger(c.Request.Context(), ns, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case err != nil:
		h.internalError(c, "read trigger", err)
		return
	}
	writeJSON(c, http.StatusOK, t)
}

// deleteTrigger is DELETE /namespaces/{ns}/triggers/{name}: 200 with what was deleted. Its rules
// stay, inactive (OpenWhisk's behaviour). A feed's registration is the client's to remove first
// (wsk and the npm client send the feed a DELETE); one left behind disables itself at its next
// fire.
func (h *handler) deleteTrigger(c *gin.Context, ns, name string) {
	t, err := h.store.DeleteTrigger(c.Request.Context(), ns, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case err != nil:
		h.internalError(c, "delete trigger", err)
		return
	}
	h.log.Info("trigger deleted", zap.String("transid", tid(c).ID), zap.String("trigger", t.Path()))
	writeJSON(c, http.StatusOK, t)
}

// triggerSummary is a trigger as a list shows it (WhiskTrigger's list view: no parameters, no
// rules).
type triggerSummary struct {
	Namespace   string           `json:"namespace"`
	Name        string           `json:"name"`
	Version     string           `json:"version"`
	Publish     bool             `json:"publish"`
	Annotations whisk.Parameters `json:"annotations"`
	Updated     int64            `json:"updated"`
}

// listTriggers is GET /namespaces/{ns}/triggers?limit=&skip=&count=.
func (h *handler) listTriggers(c *gin.Context, ns string) {
	limit, skip, err := listParams(c.Query("limit"), c.Query("skip"), "triggers")
	if err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	}
	ctx := c.Request.Context()
	if c.Query("count") == "true" {
		n, err := h.store.CountTriggers(ctx, ns, skip)
		if err != nil {
			h.internalError(c, "count triggers", err)
			return
		}
		writeJSON(c, http.StatusOK, map[string]int{"triggers": n})
		return
	}
	ts, err := h.store.ListTriggers(ctx, ns, limit, skip)
	if err != nil {
		h.internalError(c, "list triggers", err)
		return
	}
	out := make([]triggerSummary, len(ts))
	for i, t := range ts {
		out[i] = triggerSummary{Namespace: t.Namespace, Name: t.Name, Version: t.Version, Publish: t.Publish,
			Annotations: t.Annotations, Updated: t.Updated}
		if out[i].Annotations == nil {
			out[i].Annotations = whisk.Parameters{}
		}
	}
	writeJSON(c, http.StatusOK, out)
}

// fireTrigger is POST /namespaces/{ns}/triggers/{name}: fire the trigger with the body (empty or
// a JSON object). 202 with the trigger activation's id when it has an active rule, 204 without
// one (and no record), as OpenWhisk.
func (h *handler) fireTrigger(c *gin.Context, ns, name string) {
	// A fire is throttled before the trigger is looked at, as in OpenWhisk.
	if !h.admitFire(c, identityOf(c)) {
		return
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
	headers := map[string]string{}
	for k, vs := range c.Request.Header {
		// The caller's key is not handed on to the rules' actions (OpenWhisk passes every header;
		// an action that needs the key gets it as __OW_API_KEY).
		if k = strings.ToLower(k); k != "authorization" && len(vs) > 0 {
			headers[k] = vs[0]
		}
	}
	id, err := h.fire(c.Request.Context(), tid(c), identityOf(c), ns, name, payload, headers)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
	case err != nil:
		h.internalError(c, "fire trigger", err)
	case id == "":
		c.Status(http.StatusNoContent)
	default:
		c.Header(HeaderActivationID, id)
		writeJSON(c, http.StatusAccepted, map[string]string{"activationId": id})
	}
}

// ruleOutcome is one line of a trigger activation's logs (Triggers.scala RuleActivationResult):
// the rule, its action, and the action's activation id or why it did not run.
type ruleOutcome struct {
	StatusCode   int    `json:"statusCode"`
	Success      bool   `json:"success"`
	ActivationID string `json:"activationId,omitempty"`
	Error        string `json:"error,omitempty"`
	Rule         string `json:"rule"`
	Action       string `json:"action"`
}

// fire fires trigger ns/name as user: the trigger's parameters under headers (as __ow_headers,
// when not nil) and payload are each rule's action's arguments; every active rule's action is
// invoked non-blocking through the invoke path, with the trigger activation as its cause; the
// trigger activation (its logs one outcome per rule) is stored. It returns the trigger
// activation's id, or "" when no rule is active (nothing runs, nothing is stored). ErrNotFound
// when the trigger does not exist. REST fires and the alarms feed's fires both come here.
func (h *handler) fire(ctx context.Context, tx whisk.TransactionID, user whisk.Identity, ns, name string,
	payload map[string]json.RawMessage, headers map[string]string) (string, error) {
	t, err := h.store.GetTrigger(ctx, ns, name)
	if err != nil {
		return "", err
	}
	active := false
	for _, rr := range t.Rules {
		active = active || rr.Status == whisk.RuleActive
	}
	if !active {
		h.log.Debug("trigger without an active rule fired; no activation", zap.String("transid", tx.ID), zap.String("trigger", t.Path()))
		return "", nil
	}
	args := map[string]json.RawMessage{}
	if headers != nil {
		b, err := marshal(headers)
		if err != nil {
			return "", fmt.Errorf("encode headers: %w", err)
		}
		args[owHeaders] = b
	}
	for k, v := range payload {
		args[k] = v
	}
	result := json.RawMessage("{}")
	if payload != nil {
		b, err := marshal(payload)
		if err != nil {
			return "", fmt.Errorf("encode payload: %w", err)
		}
		result = b
	}
	rec := &whisk.WhiskActivation{
		// All activations land in the firing user's namespace, whatever the trigger's (OpenWhisk).
		Namespace: user.Namespace.Name, Name: t.Name, Subject: user.Subject,
		ActivationID: whisk.ActivationIDNew(), Start: time.Now(),
		Response: whisk.Success(result), Version: t.Version, Annotations: whisk.Parameters{},
	}
	ruleIDs := make([]string, 0, len(t.Rules))
	for id := range t.Rules {
		ruleIDs = append(ruleIDs, id)
	}
	sort.Strings(ruleIDs)
	for _, id := range ruleIDs {
		rr := t.Rules[id]
		out := ruleOutcome{Rule: id, Action: rr.Action.String()}
		if rr.Status != whisk.RuleActive {
			out.StatusCode, out.Error = whisk.StatusApplicationError, msgTriggerWithInactiveRule(id, out.Action)
		} else {
			out.StatusCode, out.ActivationID, out.Error = h.activateRule(ctx, tx, user, rr.Action, t.Parameters, args, rec.ActivationID)
		}
		out.Success = out.StatusCode == whisk.StatusSuccess
		line, err := marshal(out)
		if err != nil {
			return "", fmt.Errorf("encode rule outcome: %w", err)
		}
		rec.Logs = append(rec.Logs, string(line))
	}
	// The controller writes a trigger's activation, as OpenWhisk's controller does: no invoker
	// runs a trigger.
	if err := h.store.PutActivation(ctx, rec); err != nil {
		return "", fmt.Errorf("store trigger activation: %w", err)
	}
	h.log.Info("trigger fired", zap.String("transid", tx.ID), zap.String("trigger", t.Path()),
		zap.String("activation_id", rec.ActivationID), zap.Int("rules", len(ruleIDs)))
	return rec.ActivationID, nil
}

// activateRule invokes action ref as user, non-blocking, with the trigger's parameters under args:
// what OpenWhisk's controller does by POSTing to its own invoke route, with the same checks (READ
// on a package's action, final parameters) and texts. It returns the outcome's status code and the
// activation id, or the error text.
func (h *handler) activateRule(ctx context.Context, tx whisk.TransactionID, user whisk.Identity, ref whisk.EntityRef,
	triggerParams whisk.Parameters, args map[string]json.RawMessage, cause string) (int, string, string) {
	ns, pkg, _ := strings.Cut(ref.Path, "/")
	if pkg != "" {
		switch a, err := h.packageReadable(ctx, user.Namespace.Name, ns, pkg); {
		case err != nil:
			h.log.Error("rule action entitlement", zap.String("transid", tx.ID), zap.Error(err))
			return whisk.StatusWhiskError, "", msgInternal
		case a == accessMissing:
			return whisk.StatusApplicationError, "", msgNotFound
		case a == accessDenied:
			return whisk.StatusApplicationError, "", msgNotAuthorizedToAccess(ref.String())
		}
	} else if ns != user.Namespace.Name {
		return whisk.StatusApplicationError, "", msgNotAuthorized
	}
	a, binding, err := h.resolveAction(ctx, ns, pkg, ref.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return whisk.StatusApplicationError, "", msgNotFound
	case err != nil:
		h.log.Error("rule action", zap.String("transid", tx.ID), zap.Error(err))
		return whisk.StatusWhiskError, "", msgInternal
	}
	// The trigger's parameters and the fire's arguments are one request payload to the action.
	payload := map[string]json.RawMessage{}
	for _, kv := range triggerParams {
		payload[kv.Key] = kv.Value
	}
	for k, v := range args {
		payload[k] = v
	}
	if finalViolation(a, payload) {
		return whisk.StatusApplicationError, "", msgParamsNotAllowed
	}
	// A rule's action is charged like any invocation (OpenWhisk re-posts it to its own invoke
	// route); a refusal is the rule's outcome.
	var throttled *ThrottleError
	switch err := h.throttle.Invoke(user); {
	case errors.As(err, &throttled):
		return whisk.StatusApplicationError, "", throttled.Error()
	case err != nil:
		h.log.Error("rule action throttle", zap.String("transid", tx.ID), zap.Error(err))
		return whisk.StatusWhiskError, "", msgInternal
	}
	msg, err := buildMessage(h.ctrl, tx, a, user, payload, false)
	if err != nil {
		h.log.Error("rule activation message", zap.String("transid", tx.ID), zap.Error(err))
		return whisk.StatusWhiskError, "", msgInternal
	}
	msg.Action.Binding = binding
	msg.Cause = cause
	if _, err := h.inv.Publish(ctx, a, msg); err != nil {
		if errors.Is(err, balancer.ErrNoInvokers) {
			return whisk.StatusWhiskError, "", msgUnavailable
		}
		h.log.Error("publish rule activation", zap.String("transid", tx.ID), zap.Error(err))
		return whisk.StatusWhiskError, "", msgInternal
	}
	return whisk.StatusSuccess, msg.ActivationID, ""
}
