package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/teemate/platform/controller-adapter/internal/alarms"
	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

// The alarms feed is built in. Its actions, /whisk.system/alarms/{alarm,interval,once}, are real
// action documents (annotated feed, so package get lists them as feeds and wsk accepts them as
// --feed), but an invocation of one is served here, by the controller, and never reaches an
// invoker: the lifecycle event (CREATE, READ, UPDATE, DELETE, PAUSE, UNPAUSE) goes to the
// scheduler (internal/alarms), and the answer is recorded as the feed action's activation, as if
// the action had run. A feed needs no user code and no network from a sandbox this way, and a
// fire never leaves the controller. The stored code only answers an error, should anything run it.

// alarmsPackage is the path of the alarms package's actions.
const alarmsPackage = SystemNamespace + "/alarms"

// feedStubCode is the feed actions' stored code: never run by the REST API.
const feedStubCode = `function main() {
  return { error: 'The alarms feed is served by the controller: invoke this action through the REST API.' }
}`

// Feed lifecycle events (OpenWhisk's feed protocol; PAUSE and UNPAUSE as some providers add).
const (
	feedCreate  = "CREATE"
	feedRead    = "READ"
	feedUpdate  = "UPDATE"
	feedDelete  = "DELETE"
	feedPause   = "PAUSE"
	feedUnpause = "UNPAUSE"
)

// msgFeedAuth is the alarms provider's text when the trigger cannot be read with the caller's key.
const msgFeedAuth = "Trigger authentication request failed."

// SystemActions are the actions whisk.system holds from the first start (the controller creates
// the missing ones and never changes one that exists): the alarms package's three feeds, with the
// catalog's annotations.
func SystemActions() []*whisk.Action {
	type feed struct{ name, description, params string }
	feeds := []feed{
		{alarms.FeedAlarm, "Fire trigger when alarm occurs",
			`[{"name":"cron","required":true},{"name":"timezone","required":false},{"name":"startDate","required":false},{"name":"stopDate","required":false},{"name":"trigger_payload","required":false}]`},
		{alarms.FeedInterval, "Fire trigger at specified interval",
			`[{"name":"minutes","required":true},{"name":"startDate","required":false},{"name":"stopDate","required":false},{"name":"trigger_payload","required":false}]`},
		{alarms.FeedOnce, "Fire trigger once when alarm occurs",
			`[{"name":"date","required":true},{"name":"deleteAfterFire","required":false},{"name":"trigger_payload","required":false}]`},
	}
	out := make([]*whisk.Action, 0, len(feeds))
	for _, f := range feeds {
		out = append(out, &whisk.Action{
			Namespace: alarmsPackage, Name: f.name,
			Exec:       whisk.Exec{Kind: "nodejs:20", Code: feedStubCode},
			Limits:     whisk.DefaultLimits(),
			Parameters: whisk.Parameters{},
			Annotations: whisk.Parameters{
				{Key: "description", Value: jsonString(f.description)},
				{Key: "parameters", Value: json.RawMessage(f.params)},
				{Key: annFeed, Value: json.RawMessage("true")},
				{Key: annExec, Value: jsonString("nodejs:20")},
			},
		})
	}
	return out
}

// builtinFeed reports whether action a is one of the built-in alarms feeds.
func builtinFeed(a *whisk.Action) bool {
	if a.Namespace != alarmsPackage || !alarms.IsFeed(a.Name) {
		return false
	}
	_, ok := a.Annotations.Get(annFeed)
	return ok
}

// serveFeed serves an invocation of a built-in feed action a (resolved, with its package's
// parameters) and reports true, or reports false for any other action. It answers as an invoke
// does: the activation (or its result) when blocking, 202 otherwise; the activation is stored.
func (h *handler) serveFeed(c *gin.Context, a *whisk.Action) bool {
	if !builtinFeed(a) {
		return false
	}
	body, ok := h.readBodyOrFail(c, MaxPayloadBytes)
	if !ok {
		return true
	}
	payload, err := parsePayload(body)
	if err != nil {
		h.fail(c, http.StatusBadRequest, err.Error())
		return true
	}
	content, err := mergeContent(a.Parameters, payload)
	if err != nil {
		h.internalError(c, "feed parameters", err)
		return true
	}
	var params map[string]json.RawMessage
	if err := json.Unmarshal(content, &params); err != nil {
		h.internalError(c, "feed parameters", err)
		return true
	}
	user := identityOf(c)
	start := time.Now()
	result, err := h.feedEvent(c.Request.Context(), user, a.Name, params)
	resp := whisk.Success(result)
	var clientErr alarms.Error
	switch {
	case errors.As(err, &clientErr):
		resp = whisk.ApplicationError(clientErr.Error())
	case err != nil:
		h.log.Error("alarms feed", zap.String("transid", tid(c).ID), zap.String("feed", a.Name), zap.Error(err))
		resp = whisk.WhiskError(msgInternal)
	}
	end := time.Now()
	dur := end.Sub(start).Milliseconds()
	version := a.Version
	if version == "" {
		version = whisk.DefaultVersion
	}
	rec := &whisk.WhiskActivation{
		Namespace: user.Namespace.Name, Name: a.Name, Subject: user.Subject, ActivationID: whisk.ActivationIDNew(),
		Start: start, End: end, Duration: &dur, Response: resp, Version: version,
		Annotations: whisk.Parameters{
			{Key: whisk.AnnotationPath, Value: jsonString(a.Namespace + "/" + a.Name)},
			{Key: "kind", Value: jsonString(a.Exec.Kind)},
			{Key: "limits", Value: json.RawMessage(`{"concurrency":1,"logs":10,"memory":256,"timeout":60000}`)},
		},
	}
	if err := h.store.PutActivation(c.Request.Context(), rec); err != nil {
		h.internalError(c, "store feed activation", err)
		return true
	}
	c.Header(HeaderActivationID, rec.ActivationID)
	if c.Query("blocking") != "true" {
		writeJSON(c, http.StatusAccepted, map[string]string{"activationId": rec.ActivationID})
		return true
	}
	status, reply, err := invokeReply(rec, c.Query("result") == "true")
	if err != nil {
		h.internalError(c, "feed reply", err)
		return true
	}
	c.Data(status, "application/json", reply)
	return true
}

// feedEvent does one lifecycle event of feed for user: params hold lifecycleEvent, triggerName
// ("/ns/name", or a name in the caller's namespace), authKey (not needed: the caller is
// authenticated, and the schedule fires as the key it used) and the feed's own parameters. An
// alarms.Error is the caller's mistake.
func (h *handler) feedEvent(ctx context.Context, user whisk.Identity, feed string, params map[string]json.RawMessage) (json.RawMessage, error) {
	if h.cfg.Alarms == nil {
		return nil, alarms.Error("the alarms feed is not running on this controller")
	}
	str := func(k string) string {
		var s string
		if err := json.Unmarshal(params[k], &s); err != nil {
			return ""
		}
		return s
	}
	event := strings.ToUpper(str("lifecycleEvent"))
	triggerName := str("triggerName")
	if triggerName == "" {
		return nil, alarms.Error("no trigger name parameter was provided")
	}
	ns, name := "_", triggerName
	if strings.HasPrefix(triggerName, "/") {
		ns, name, _ = strings.Cut(strings.TrimPrefix(triggerName, "/"), "/")
	}
	if ns == "_" {
		ns = user.Namespace.Name
	}
	if !whisk.ValidEntityName(name) {
		return nil, alarms.Error(fmt.Sprintf("trigger name '%s' is not valid", triggerName))
	}
	for _, k := range []string{"lifecycleEvent", "triggerName", "authKey"} {
		delete(params, k)
	}
	// The trigger must be the caller's own and exist (the provider checks that the key can read
	// it); a DELETE of one already gone goes ahead, so that a trigger delete completes.
	if ns != user.Namespace.Name {
		return nil, alarms.Error(msgFeedAuth)
	}
	if event != feedDelete {
		switch _, err := h.store.GetTrigger(ctx, ns, name); {
		case errors.Is(err, store.ErrNotFound):
			return nil, alarms.Error(msgFeedAuth)
		case err != nil:
			return nil, err
		}
	}
	reg := alarms.Registration{Namespace: ns, Trigger: name, OwnerUUID: user.Namespace.UUID}
	sched := h.cfg.Alarms
	var err error
	switch event {
	case feedCreate:
		err = sched.Create(ctx, reg, feed, params)
	case feedRead:
		return sched.Read(ctx, reg, feed)
	case feedUpdate:
		err = sched.Update(ctx, reg, feed, params)
	case feedDelete:
		err = sched.Delete(ctx, reg)
	case feedPause, feedUnpause:
		err = sched.SetActive(ctx, reg, feed, event == feedUnpause)
	default:
		return nil, alarms.Error("unsupported lifecycleEvent")
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(`{"status":"success"}`), nil
}

// alarmTarget fires the alarms feed's schedules through the REST API's trigger fire.
type alarmTarget struct{ h *handler }

// owner is the identity a schedule fires as: the namespace of the key that registered it.
func (t alarmTarget) owner(ctx context.Context, s *store.Schedule) (whisk.Identity, string, error) {
	user, err := t.h.store.IdentityForUUID(ctx, s.OwnerUUID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return whisk.Identity{}, "", fmt.Errorf("the key that registered it is gone: %w", alarms.ErrGone)
	case err != nil:
		return whisk.Identity{}, "", err
	case user.Namespace.Name != s.Namespace:
		return whisk.Identity{}, "", fmt.Errorf("the key that registered it is not of namespace %s: %w", s.Namespace, alarms.ErrGone)
	}
	_, name, _ := strings.Cut(s.Trigger, "/")
	return user, name, nil
}

// Fire fires the schedule's trigger as its owner with the alarm's payload (no headers: no request).
func (t alarmTarget) Fire(ctx context.Context, s *store.Schedule, payload json.RawMessage) error {
	user, name, err := t.owner(ctx, s)
	if err != nil {
		return err
	}
	args, err := parsePayload(payload)
	if err != nil {
		return fmt.Errorf("alarm payload: %w", err)
	}
	// Scheduled fires count against the owner's fires a minute, as the feed provider's REST
	// fires do in OpenWhisk; a refused one is this due time's failure (not retried).
	if err := t.h.throttle.Fire(user); err != nil {
		return fmt.Errorf("alarm fire: %w", err)
	}
	_, err = t.h.fire(ctx, whisk.NewRandomTransactionID(time.Now()), user, s.Namespace, name, args, nil)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s: %w", msgNotFound, alarms.ErrGone)
	}
	return err
}

// DeleteTrigger deletes a once schedule's trigger after its fire, and the rules that name it when
// withRules.
func (t alarmTarget) DeleteTrigger(ctx context.Context, s *store.Schedule, withRules bool) error {
	_, name, _ := strings.Cut(s.Trigger, "/")
	if withRules {
		trig, err := t.h.store.GetTrigger(ctx, s.Namespace, name)
		if err != nil {
			return err
		}
		for id := range trig.Rules {
			rns, rname, _ := strings.Cut(id, "/")
			if _, err := t.h.store.DeleteRule(ctx, rns, rname); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
	_, err := t.h.store.DeleteTrigger(ctx, s.Namespace, name)
	return err
}
