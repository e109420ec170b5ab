package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

// OpenWhisk's texts for rules (Rules.scala).
const (
	msgRuleNeedsTriggerAndAction = "rule requires a valid trigger and a valid action"
)

// ruleRoutes dispatches /namespaces/{ns}/rules[/{name}] (the router checked that ns is the
// caller's own); POST sets a rule's status.
func (h *handler) ruleRoutes(c *gin.Context, ns, entity string) {
	h.entityRoutes(c, ns, entity, entityHandlers{
		list: h.listRules, get: h.getRule, put: h.putRule, del: h.deleteRule, post: h.setRuleStatus})
}

// rulePutRequest is the body of PUT .../rules/{name} (WhiskRulePut).
type rulePutRequest struct {
	Trigger     json.RawMessage   `json:"trigger"`
	Action      json.RawMessage   `json:"action"`
	Version     *string           `json:"version"`
	Publish     *bool             `json:"publish"`
	Annotations *whisk.Parameters `json:"annotations"`
}

// ref reads an optional reference field resolved to namespace ns; nil when absent.
func ref(raw json.RawMessage, ns string) (*whisk.EntityRef, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	r, err := whisk.ParseEntityRef(raw)
	if err != nil {
		return nil, err
	}
	r = r.Resolve(ns)
	return &r, nil
}

// putRule is PUT /namespaces/{ns}/rules/{name}[?overwrite=true]: create or update a rule. The
// caller must be entitled to READ the trigger (its own) and the action (its own, or one of a
// package it may read); both must exist. A new rule is active.
func (h *handler) putRule(c *gin.Context, ns, name string) {
	body, ok := h.readBodyOrFail(c, MaxActionBytes)
	if !ok {
		return
	}
	var req rulePutRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			h.fail(c, http.StatusBadRequest, "The request content was malformed: "+jsonErrorText(err))
			return
		}
	}
	trigger, err := ref(req.Trigger, ns)
	if err == nil {
		var action *whisk.EntityRef
		if action, err = ref(req.Action, ns); err == nil {
			h.putRuleRefs(c, ns, name, &req, trigger, action)
			return
		}
	}
	h.fail(c, http.StatusBadRequest, "The request content was malformed: "+jsonErrorText(err))
}

func (h *handler) putRuleRefs(c *gin.Context, ns, name string, req *rulePutRequest, trigger, action *whisk.EntityRef) {
	if req.Version != nil && !validSemVer(*req.Version) {
		h.fail(c, http.StatusBadRequest, fmt.Sprintf("The request content was malformed: version '%s' is not major.minor.patch.", *req.Version))
		return
	}
	// Entitlement first (OpenWhisk checks READ on the referenced entities before anything else).
	if trigger != nil && trigger.Path != ns {
		h.fail(c, http.StatusForbidden, msgNotAuthorizedToAccess(trigger.String()))
		return
	}
	if action != nil && !h.checkRuleActionRead(c, *action) {
		return
	}
	ctx := c.Request.Context()
	overwrite := c.Query("overwrite") == "true"
	old, err := h.store.GetRule(ctx, ns, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		old = nil
	case err != nil:
		h.internalError(c, "read rule for update", err)
		return
	case !overwrite:
		h.fail(c, http.StatusConflict, msgConflict)
		return
	}
	r := &whisk.Rule{Namespace: ns, Name: name, Annotations: whisk.Parameters{}}
	if old != nil {
		r.Trigger, r.Action, r.Publish, r.Annotations = old.Trigger, old.Action, old.Publish, old.Annotations
	} else if trigger == nil || action == nil {
		h.fail(c, http.StatusBadRequest, msgRuleNeedsTriggerAndAction)
		return
	}
	if trigger != nil {
		r.Trigger = *trigger
	}
	if action != nil {
		r.Action = *action
	}
	if req.Publish != nil {
		r.Publish = *req.Publish
	}
	if req.Annotations != nil {
		r.Annotations = *req.Annotations
	}
	if req.Version != nil {
		r.Version = *req.Version
	}
	// The action must exist (through its package or binding); the trigger is checked in the
	// store's transaction, together with the link written into it.
	aroot, apkg, _ := strings.Cut(r.Action.Path, "/")
	if _, _, err := h.resolveAction(ctx, aroot, apkg, r.Action.Name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			h.fail(c, http.StatusBadRequest, fmt.Sprintf("action /%s does not exist", r.Action))
			return
		}
		h.internalError(c, "read rule action", err)
		return
	}
	saved, err := h.store.PutRule(ctx, r, overwrite)
	switch {
	case errors.Is(err, store.ErrTriggerNotFound):
		h.fail(c, http.StatusBadRequest, fmt.Sprintf("trigger /%s does not exist", r.Trigger))
		return
	case errors.Is(err, store.ErrConflict):
		h.fail(c, http.StatusConflict, msgConflict)
		return
	case err != nil:
		h.internalError(c, "store rule", err)
		return
	}
	h.log.Info("rule stored", zap.String("transid", tid(c).ID), zap.String("rule", saved.Path()),
		zap.String("trigger", saved.Trigger.String()), zap.String("action", saved.Action.String()), zap.String("status", saved.Status))
	writeJSON(c, http.StatusOK, saved)
}

// checkRuleActionRead answers 403/500 itself unless the caller may READ action ref: its own
// namespace's, or one in a package it may read (a missing package of its own is left to the
// existence check, which answers 400).
func (h *handler) checkRuleActionRead(c *gin.Context, ref whisk.EntityRef) bool {
	ns, pkg, inPackage := strings.Cut(ref.Path, "/")
	if !inPackage {
		if ns != identityOf(c).Namespace.Name {
			h.fail(c, http.StatusForbidden, msgNotAuthorizedToAccess(ref.String()))
			return false
		}
		return true
	}
	switch a, err := h.packageReadable(c.Request.Context(), identityOf(c).Namespace.Name, ns, pkg); {
	case err != nil:
		h.internalError(c, "rule action entitlement", err)
		return false
	case a == accessDenied:
		h.fail(c, http.StatusForbidden, msgNotAuthorizedToAccess(ref.String()))
		return false
	}
	return true
}

// getRule is GET /namespaces/{ns}/rules/{name}: the rule with its status.
func (h *handler) getRule(c *gin.Context, ns, name string) {
	r, err := h.store.GetRule(c.Request.Context(), ns, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case err != nil:
		h.internalError(c, "read rule", err)
		return
	}
	writeJSON(c, http.StatusOK, r)
}

// setRuleStatus is POST /namespaces/{ns}/rules/{name} with {"status":"active"|"inactive"}:
// enable or disable the rule. 200 whether it changed or already was in that state (OpenWhisk
// answers both with an empty OK).
func (h *handler) setRuleStatus(c *gin.Context, ns, name string) {
	body, ok := h.readBodyOrFail(c, MaxPayloadBytes)
	if !ok {
		return
	}
	var req struct {
		Status *string `json:"status"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Status == nil {
		h.fail(c, http.StatusBadRequest, "The request content was malformed: the body must be {\"status\": \"active\" or \"inactive\"}.")
		return
	}
	if *req.Status != whisk.RuleActive && *req.Status != whisk.RuleInactive {
		h.fail(c, http.StatusBadRequest, fmt.Sprintf("The request content was malformed: '%s' is not a recognized rule state, must be one of ['%s', '%s']",
			*req.Status, whisk.RuleActive, whisk.RuleInactive))
		return
	}
	changed, err := h.store.SetRuleStatus(c.Request.Context(), ns, name, *req.Status)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case errors.Is(err, store.ErrTriggerNotFound):
		h.fail(c, http.StatusNotFound, msgRuleTriggerMissing)
		return
	case err != nil:
		h.internalError(c, "set rule status", err)
		return
	}
	if changed {
		h.log.Info("rule state changed", zap.String("transid", tid(c).ID), zap.String("rule", ns+"/"+name), zap.String("status", *req.Status))
	}
	c.Status(http.StatusOK)
}

// deleteRule is DELETE /namespaces/{ns}/rules/{name}: 200 with the deleted rule, inactive.
func (h *handler) deleteRule(c *gin.Context, ns, name string) {
	r, err := h.store.DeleteRule(c.Request.Context(), ns, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.fail(c, http.StatusNotFound, msgNotFound)
		return
	case err != nil:
		h.internalError(c, "delete rule", err)
		return
	}
	h.log.Info("rule deleted", zap.String("transid", tid(c).ID), zap.String("rule", r.Path()))
	writeJSON(c, http.StatusOK, r)
}

// listRules is GET /namespaces/{ns}/rules?limit=&skip=&count=. Each rule carries its status (an
// addition to OpenWhisk's list view, which omits it).
func (h *handler) listRules(c *gin.Context, ns string) {
	limit, skip, err := listParams(c.Query("limit"), c.Query("skip"), "rules")
	if err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return
	}
	ctx := c.Request.Context()
	if c.Query("count") == "true" {
		n, err := h.store.CountRules(ctx, ns, skip)
		if err != nil {
			h.internalError(c, "count rules", err)
			return
		}
		writeJSON(c, http.StatusOK, map[string]int{"rules": n})
		return
	}
	rs, err := h.store.ListRules(ctx, ns, limit, skip)
	if err != nil {
		h.internalError(c, "list rules", err)
		return
	}
	writeJSON(c, http.StatusOK, rs)
}
