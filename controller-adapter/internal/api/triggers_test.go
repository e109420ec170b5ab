package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	owhisk "github.com/apache/openwhisk-client-go/whisk"
	"go.uber.org/zap/zaptest"

	"github.com/teemate/platform/controller-adapter/internal/alarms"
	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

// seedAlarms creates whisk.system's alarms package and its feed actions, as the controller does
// at start.
func seedAlarms(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	for _, p := range SystemPackages() {
		if _, err := e.st.EnsurePackage(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range SystemActions() {
		if _, err := e.st.PutAction(ctx, a, false); err != nil {
			t.Fatal(err)
		}
	}
}

// triggerRecord reads the trigger activation id and returns its record's rule outcomes.
func triggerOutcomes(t *testing.T, e *env, id string) (*whisk.WhiskActivation, []ruleOutcome) {
	t.Helper()
	rec, err := e.st.GetActivation(context.Background(), "guest", id)
	if err != nil {
		t.Fatalf("trigger activation %s: %v", id, err)
	}
	var out []ruleOutcome
	for _, l := range rec.Logs {
		var o ruleOutcome
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, o)
	}
	return rec, out
}

// TestClientGoTriggersAndRules drives triggers, rules and fires with openwhisk-client-go, the
// library wsk is built on.
func TestClientGoTriggersAndRules(t *testing.T) {
	e := newEnv(t, Config{})
	c := client(t, e, guestAuth)
	e.putAction(t, "hello", `{"exec":{"kind":"nodejs:20","code":"function main(p) { return p }"},"parameters":[{"key":"who","value":"action"}]}`)

	trig, _, err := c.Triggers.Insert(&owhisk.Trigger{Name: "t", Namespace: "_",
		Parameters: owhisk.KeyValueArr{{Key: "from", Value: "trigger"}, {Key: "who", Value: "trigger"}}}, false)
	if err != nil || trig.Name != "t" || trig.Namespace != "guest" || trig.Version != "0.0.1" {
		t.Fatalf("trigger create: %+v %v", trig, err)
	}
	if _, _, err := c.Triggers.Insert(&owhisk.Trigger{Name: "t", Namespace: "_"}, false); err == nil || wskErrStatus(t, err) != 409 {
		t.Fatalf("trigger create again: %v", err)
	}
	trig, _, err = c.Triggers.Insert(&owhisk.Trigger{Name: "t", Namespace: "_", Annotations: owhisk.KeyValueArr{{Key: "description", Value: "d"}}}, true)
	if err != nil || trig.Version != "0.0.2" || trig.Parameters.GetValue("from") != "trigger" {
		t.Fatalf("trigger update: %+v %v", trig, err)
	}

	// A fire with no rule: 204, nothing stored.
	_, resp, err := c.Triggers.Fire("t", map[string]any{"x": 1})
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("fire without rules: %v %v", resp, err)
	}

	rule, _, err := c.Rules.Insert(&owhisk.Rule{Name: "r", Trigger: "/_/t", Action: "/_/hello"}, false)
	if err != nil || rule.Status != "active" || rule.Namespace != "guest" {
		t.Fatalf("rule create: %+v %v", rule, err)
	}
	if ref, ok := rule.Action.(map[string]any); !ok || ref["path"] != "guest" || ref["name"] != "hello" {
		t.Fatalf("rule action = %#v", rule.Action)
	}
	if _, _, err := c.Rules.Insert(&owhisk.Rule{Name: "r2", Trigger: "/_/nope", Action: "/_/hello"}, false); err == nil || wskErrStatus(t, err) != 400 ||
		!strings.Contains(err.Error(), "trigger /guest/nope does not exist") {
		t.Fatalf("rule with a missing trigger: %v", err)
	}
	if _, _, err := c.Rules.Insert(&owhisk.Rule{Name: "r2", Trigger: "/_/t", Action: "/_/nope"}, false); err == nil || wskErrStatus(t, err) != 400 ||
		!strings.Contains(err.Error(), "action /guest/nope does not exist") {
		t.Fatalf("rule with a missing action: %v", err)
	}
	if _, _, err := c.Rules.Insert(&owhisk.Rule{Name: "r2", Trigger: "/other/t", Action: "/_/hello"}, false); err == nil || wskErrStatus(t, err) != 403 {
		t.Fatalf("rule with another namespace's trigger: %v", err)
	}
	if got, _, err := c.Triggers.Get("t"); err != nil || len(got.Rules) != 1 || got.Rules["guest/r"] == nil {
		t.Fatalf("trigger get lists its rule: %+v %v", got, err)
	}

	// Fire: the rule's action runs non-blocking with the trigger's parameters under the payload,
	// caused by the trigger activation, which lists the outcome.
	fired, resp, err := c.Triggers.Fire("t", map[string]any{"who": "payload"})
	if err != nil || resp.StatusCode != http.StatusAccepted || !whisk.ValidActivationID(fired.ActivationId) {
		t.Fatalf("fire: %+v %v %v", fired, resp, err)
	}
	msg := e.inv.last()
	var content map[string]any
	if err := json.Unmarshal(msg.Content, &content); err != nil {
		t.Fatal(err)
	}
	if msg.Blocking || msg.Cause != fired.ActivationId || content["who"] != "payload" || content["from"] != "trigger" || content["__ow_headers"] == nil {
		t.Fatalf("rule activation message: cause %q blocking %v content %s", msg.Cause, msg.Blocking, msg.Content)
	}
	if h, _ := content["__ow_headers"].(map[string]any); h["authorization"] != nil {
		t.Fatalf("the caller's key was handed on: %v", h)
	}
	rec, outs := triggerOutcomes(t, e, fired.ActivationId)
	if rec.Name != "t" || string(rec.Response.Result) != `{"who":"payload"}` || len(outs) != 1 ||
		outs[0] != (ruleOutcome{StatusCode: 0, Success: true, ActivationID: msg.ActivationID, Rule: "guest/r", Action: "guest/hello"}) {
		t.Fatalf("trigger activation: %+v %+v", rec, outs)
	}
	// The record is the activations API's, as OpenWhisk's.
	act, _, err := c.Activations.Get(fired.ActivationId)
	if err != nil || act.Name != "t" || len(act.Logs) != 1 {
		t.Fatalf("activation get: %+v %v", act, err)
	}

	// Disabled: the fire runs nothing; the rule reads inactive.
	n := len(e.inv.msgs)
	if _, _, err := c.Rules.SetState("r", "inactive"); err != nil {
		t.Fatalf("disable: %v", err)
	}
	if got, _, err := c.Rules.Get("r"); err != nil || got.Status != "inactive" {
		t.Fatalf("rule get after disable: %+v %v", got, err)
	}
	if _, resp, err := c.Triggers.Fire("t", nil); err != nil || resp.StatusCode != http.StatusNoContent || len(e.inv.msgs) != n {
		t.Fatalf("fire with the rule disabled: %v %v", resp, err)
	}
	if _, _, err := c.Rules.SetState("r", "inactive"); err != nil {
		t.Fatalf("disable again: %v", err)
	}

	// A second rule, active, beside the disabled one: the record has both outcomes.
	e.putAction(t, "second", `{"exec":{"kind":"nodejs:20","code":"function main(p) { return p }"}}`)
	if _, _, err := c.Rules.Insert(&owhisk.Rule{Name: "r2", Trigger: "/_/t", Action: "/_/second"}, false); err != nil {
		t.Fatal(err)
	}
	fired, _, err = c.Triggers.Fire("t", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, outs = triggerOutcomes(t, e, fired.ActivationId); len(outs) != 2 || outs[0].Rule != "guest/r" || outs[0].Success ||
		outs[0].StatusCode != 1 || outs[0].Error != "Rule 'guest/r' is inactive, action 'guest/hello' was not activated." || !outs[1].Success {
		t.Fatalf("outcomes with one rule inactive: %+v", outs)
	}
	if len(e.inv.msgs) != n+1 || e.inv.last().Action.Name != "second" {
		t.Fatalf("messages: %d", len(e.inv.msgs)-n)
	}

	// Enabled again; the rule's action deleted: the outcome is an application error, the fire 202.
	if _, _, err := c.Rules.SetState("r", "active"); err != nil {
		t.Fatalf("enable: %v", err)
	}
	if _, err := c.Actions.Delete("second"); err != nil {
		t.Fatal(err)
	}
	fired, _, err = c.Triggers.Fire("t", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, outs = triggerOutcomes(t, e, fired.ActivationId); len(outs) != 2 || !outs[0].Success ||
		outs[1] != (ruleOutcome{StatusCode: 1, Error: msgNotFound, Rule: "guest/r2", Action: "guest/second"}) {
		t.Fatalf("outcomes with an action gone: %+v", outs)
	}

	// Lists and counts.
	rules, _, err := c.Rules.List(&owhisk.RuleListOptions{})
	if err != nil || len(rules) != 2 {
		t.Fatalf("rule list: %+v %v", rules, err)
	}
	triggers, _, err := c.Triggers.List(&owhisk.TriggerListOptions{Limit: 1})
	if err != nil || len(triggers) != 1 || triggers[0].Name != "t" {
		t.Fatalf("trigger list: %+v %v", triggers, err)
	}
	for path, want := range map[string]string{"triggers": `{"triggers":1}`, "rules": `{"rules":2}`} {
		if resp, body := e.do(t, "GET", "/api/v1/namespaces/_/"+path+"?count=true", guestAuth, "", nil); resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("%s count: %d %s", path, resp.StatusCode, body)
		}
	}

	// Deleting the trigger leaves its rules, inactive; enabling one then is a 404.
	if _, _, err := c.Triggers.Delete("t"); err != nil {
		t.Fatal(err)
	}
	if got, _, err := c.Rules.Get("r"); err != nil || got.Status != "inactive" {
		t.Fatalf("rule of a deleted trigger: %+v %v", got, err)
	}
	resp, body := e.do(t, "POST", "/api/v1/namespaces/_/rules/r", guestAuth, "application/json", strings.NewReader(`{"status":"active"}`))
	wantError(t, resp, body, 404, msgRuleTriggerMissing)
	resp, body = e.do(t, "POST", "/api/v1/namespaces/_/rules/r", guestAuth, "application/json", strings.NewReader(`{"status":"on"}`))
	wantError(t, resp, body, 400, "")
	if _, _, err := c.Triggers.Fire("t", nil); err == nil || wskErrStatus(t, err) != 404 {
		t.Fatalf("fire of a deleted trigger: %v", err)
	}
	for _, r := range []string{"r", "r2"} {
		if _, err := c.Rules.Delete(r); err != nil {
			t.Fatalf("rule delete %s: %v", r, err)
		}
	}
	if _, _, err := c.Rules.Get("r"); err == nil || wskErrStatus(t, err) != 404 {
		t.Fatalf("rule get after delete: %v", err)
	}

	// Another namespace cannot see or fire guest's triggers.
	resp, body = e.do(t, "POST", "/api/v1/namespaces/guest/triggers/t", otherAuth, "", nil)
	wantError(t, resp, body, 403, msgNotAuthorized)
}

// TestAlarmsFeedLifecycle runs the feed protocol as wsk does it through openwhisk-client-go:
// create the trigger with the feed annotation, invoke the feed action with CREATE, READ, UPDATE,
// DELETE; a bad parameter fails the feed action's activation with the provider's text.
func TestAlarmsFeedLifecycle(t *testing.T) {
	st := newEnvStore(t)
	sched := alarms.New(st, alarms.Options{})
	e := newEnvWith(t, Config{Alarms: sched}, st)
	t.Cleanup(sched.Stop)
	seedAlarms(t, e)
	c := client(t, e, guestAuth)

	// The package shows the feeds.
	resp, body := e.do(t, "GET", "/api/v1/namespaces/whisk.system/packages/alarms", guestAuth, "", nil)
	var pkg struct {
		Feeds []struct{ Name string } `json:"feeds"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &pkg) != nil || len(pkg.Feeds) != 3 {
		t.Fatalf("alarms package: %d %s", resp.StatusCode, body)
	}

	if _, _, err := c.Triggers.Insert(&owhisk.Trigger{Name: "tick", Namespace: "_",
		Annotations: owhisk.KeyValueArr{{Key: "feed", Value: "/whisk.system/alarms/interval"}}}, false); err != nil {
		t.Fatal(err)
	}
	// wsk invokes /whisk.system/alarms/interval with the namespace set to the feed's.
	sys, err := owhisk.NewClient(http.DefaultClient, &owhisk.Config{Host: e.srv.URL, AuthToken: guestAuth, Namespace: "whisk.system"})
	if err != nil {
		t.Fatal(err)
	}
	feed := func(event string, params map[string]any) (*owhisk.Activation, int) {
		t.Helper()
		p := map[string]any{"lifecycleEvent": event, "triggerName": "/_/tick", "authKey": guestAuth}
		for k, v := range params {
			p[k] = v
		}
		res, resp, err := sys.Actions.Invoke("alarms/interval", p, true, false)
		if resp == nil {
			t.Fatalf("feed %s: %v", event, err)
		}
		b, _ := json.Marshal(res)
		var act owhisk.Activation
		if err := json.Unmarshal(b, &act); err != nil {
			t.Fatalf("feed %s reply %s: %v", event, b, err)
		}
		return &act, resp.StatusCode
	}
	act, status := feed("CREATE", map[string]any{"minutes": 0})
	if status != 502 || act.Response.Success || !strings.Contains(string(mustJSON(act.Response.Result)), "the minutes parameter must be an integer greater than zero") {
		t.Fatalf("CREATE with a bad parameter: %d %+v", status, act.Response)
	}
	act, status = feed("CREATE", map[string]any{"minutes": 5, "trigger_payload": map[string]any{"k": "v"}})
	if status != 200 || !act.Response.Success || act.Name != "interval" || act.Namespace != "guest" {
		t.Fatalf("CREATE: %d %+v", status, act)
	}
	sc, err := st.GetSchedule(context.Background(), "guest/tick")
	if err != nil || sc.Feed != "interval" || !sc.Active || sc.OwnerUUID != guestUUID {
		t.Fatalf("schedule: %+v %v", sc, err)
	}
	act, _ = feed("READ", nil)
	if r := string(mustJSON(act.Response.Result)); !strings.Contains(r, `"minutes":5`) || !strings.Contains(r, `"payload":{"k":"v"}`) {
		t.Fatalf("READ: %s", r)
	}
	if act, status = feed("UPDATE", map[string]any{"minutes": 7}); status != 200 {
		t.Fatalf("UPDATE: %d %+v", status, act.Response)
	}
	if act, status = feed("PAUSE", nil); status != 200 {
		t.Fatalf("PAUSE: %d %+v", status, act.Response)
	}
	if sc, err = st.GetSchedule(context.Background(), "guest/tick"); err != nil || sc.Active || !strings.Contains(string(sc.Config), `"minutes":7`) {
		t.Fatalf("after UPDATE and PAUSE: %+v %v", sc, err)
	}
	if act, status = feed("DELETE", nil); status != 200 {
		t.Fatalf("DELETE: %d %+v", status, act.Response)
	}
	if _, err := st.GetSchedule(context.Background(), "guest/tick"); err == nil {
		t.Fatal("schedule left after DELETE")
	}
	// Another namespace's trigger is not the caller's to register.
	res, resp, _ := sys.Actions.Invoke("alarms/once", map[string]any{"lifecycleEvent": "CREATE", "triggerName": "/other/tick",
		"date": "2099-01-01T00:00:00Z"}, true, true)
	if resp == nil || resp.StatusCode != 502 || !strings.Contains(string(mustJSON(res)), msgFeedAuth) {
		t.Fatalf("CREATE for another namespace: %v %v", resp, res)
	}
}

// newEnvStore opens a store for newEnvWith, closed when the test ends.
func newEnvStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newEnvWith is newEnv over st, for a test that hands the store to something else too (the
// alarms scheduler).
func newEnvWith(t *testing.T, cfg Config, st *store.Store) *env {
	t.Helper()
	ctx := context.Background()
	for _, ns := range [][3]string{{"guest", guestUUID, guestKey}, {"other", otherUUID, otherKey}} {
		if err := st.EnsureNamespace(ctx, ns[0], ns[1], ns[2]); err != nil {
			t.Fatal(err)
		}
	}
	inv := &fakeInvoker{t: t, st: st, behaviours: map[string]behaviour{}, slow: map[string]bool{}, shrunk: map[string]bool{},
		late: map[string]bool{}, release: make(chan struct{}), storing: map[string]chan struct{}{},
		settleOnAsk: map[string]bool{}, settle: map[string]func(){}}
	cfg.InvokerToken = token
	srv := httptest.NewServer(New(cfg, st, inv, zaptest.NewLogger(t)))
	t.Cleanup(srv.Close)
	return &env{srv: srv, st: st, inv: inv}
}

// newEnvForScript is the environment a node client script runs against: owtriggers.js needs the
// alarms feed served.
func newEnvForScript(t *testing.T, script string) *env {
	t.Helper()
	if script != "owtriggers.js" {
		return newEnv(t, Config{})
	}
	st := newEnvStore(t)
	sched := alarms.New(st, alarms.Options{})
	e := newEnvWith(t, Config{Alarms: sched}, st)
	t.Cleanup(sched.Stop)
	seedAlarms(t, e)
	return e
}
