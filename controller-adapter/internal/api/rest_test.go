package api

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	owhisk "github.com/apache/openwhisk-client-go/whisk"

	"github.com/teemate/platform/invoker/whisk"
)

func client(t *testing.T, e *env, auth string) *owhisk.Client {
	t.Helper()
	c, err := owhisk.NewClient(http.DefaultClient, &owhisk.Config{Host: e.srv.URL, AuthToken: auth, Namespace: "_"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wskErrStatus(t *testing.T, err error) int {
	t.Helper()
	var we *owhisk.WskError
	if !errors.As(err, &we) {
		t.Fatalf("error %v (%T) is not a WskError", err, err)
	}
	return we.ExitCode + 256
}

func TestClientGoActionLifecycle(t *testing.T) {
	e := newEnv(t, Config{})
	c := client(t, e, guestAuth)
	code := "function main(p) { return {greeting: 'hi ' + p.name} }"
	a := &owhisk.Action{
		Name:        "hello",
		Namespace:   "_",
		Exec:        &owhisk.Exec{Kind: "nodejs:20", Code: &code},
		Parameters:  owhisk.KeyValueArr{{Key: "name", Value: "World"}},
		Annotations: owhisk.KeyValueArr{{Key: "foo", Value: "bar"}},
		Limits:      &owhisk.Limits{Timeout: intp(60000), Memory: intp(256)},
	}
	created, resp, err := c.Actions.Insert(a, false)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if resp.StatusCode != 200 || created.Name != "hello" || created.Namespace != "guest" || created.Version != "0.0.1" {
		t.Fatalf("created = %+v (%d)", created, resp.StatusCode)
	}
	if created.Annotations.GetValue("exec") != "nodejs:20" || created.Annotations.GetValue("provide-api-key") != false ||
		created.Annotations.GetValue("foo") != "bar" {
		t.Fatalf("annotations = %+v", created.Annotations)
	}
	if _, _, err := c.Actions.Insert(a, false); err == nil || wskErrStatus(t, err) != 409 {
		t.Fatalf("create again: %v, want 409", err)
	}
	// Update: only limits change; code, parameters and annotations are kept.
	upd := &owhisk.Action{Name: "hello", Namespace: "_", Limits: &owhisk.Limits{Memory: intp(128)},
		Annotations: owhisk.KeyValueArr{{Key: "web-export", Value: true}}}
	updated, _, err := c.Actions.Insert(upd, true)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if updated.Version != "0.0.2" || *updated.Exec.Code != code || updated.Limits.Memory == nil || *updated.Limits.Memory != 128 ||
		*updated.Limits.Timeout != 60000 || updated.Parameters.GetValue("name") != "World" ||
		updated.Annotations.GetValue("foo") != "bar" || updated.Annotations.GetValue("web-export") != true {
		t.Fatalf("updated = %+v", updated)
	}
	got, _, err := c.Actions.Get("hello", false)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Exec.Code != nil || got.Exec.Kind != "nodejs:20" {
		t.Fatalf("get code=false returned exec %+v", got.Exec)
	}
	got, _, err = c.Actions.Get("hello", true)
	if err != nil || got.Exec.Code == nil || *got.Exec.Code != code {
		t.Fatalf("get code=true: %+v %v", got, err)
	}
	// The invoker caches by "rev"; it must be on the code=true document.
	_, body := e.do(t, "GET", "/api/v1/namespaces/guest/actions/hello?code=true", guestAuth, "", nil)
	var doc whisk.Action
	if err := json.Unmarshal(body, &doc); err != nil || !strings.HasPrefix(doc.Revision, "2-") {
		t.Fatalf("rev = %q (%v): %s", doc.Revision, err, body)
	}
	list, _, err := c.Actions.List("", &owhisk.ActionListOptions{Limit: 30})
	if err != nil || len(list) != 1 || list[0].Name != "hello" || list[0].Exec == nil || list[0].Exec.Code != nil {
		t.Fatalf("list = %+v, %v", list, err)
	}
	if _, err := c.Actions.Delete("hello"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, _, err := c.Actions.Get("hello", true); err == nil || wskErrStatus(t, err) != 404 {
		t.Fatalf("get after delete: %v", err)
	}
	if _, err := c.Actions.Delete("hello"); err == nil || wskErrStatus(t, err) != 404 {
		t.Fatalf("delete again: %v", err)
	}
}

func intp(i int) *int { return &i }

func TestClientGoInvokeAndActivations(t *testing.T) {
	e := newEnv(t, Config{})
	c := client(t, e, guestAuth)
	e.putAction(t, "hello", `{"exec":{"kind":"nodejs:default","code":"x"},"parameters":[{"key":"name","value":"World"},{"key":"secret","value":"s","init":true}]}`)

	// Blocking with result: the result only.
	res, resp, err := c.Actions.Invoke("hello", map[string]any{"name": "Bob"}, true, true)
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	m := res.(map[string]any)
	if m["name"] != "Bob" || m["secret"] != "s" || resp.Header.Get(HeaderActivationID) == "" {
		t.Fatalf("result = %v, header %q", m, resp.Header.Get(HeaderActivationID))
	}
	msg := e.inv.last()
	if !msg.Blocking || len(msg.InitArgs) != 1 || msg.InitArgs[0] != "secret" || msg.User.Namespace.Name != "guest" {
		t.Fatalf("message = %+v", msg)
	}
	if msg.Action.Path != "guest" {
		t.Fatalf("action path = %q", msg.Action.Path)
	}

	// Blocking without result: the whole activation, external form.
	res, _, err = c.Actions.Invoke("hello", map[string]any{}, true, false)
	if err != nil {
		t.Fatalf("invoke blocking: %v", err)
	}
	full := res.(map[string]any)
	response := full["response"].(map[string]any)
	if response["success"] != true || response["status"] != "success" || response["statusCode"] != nil {
		t.Fatalf("blocking reply = %v", full)
	}
	id := full["activationId"].(string)

	// Non-blocking: 202 with the id.
	res, resp, err = c.Actions.Invoke("hello", map[string]any{}, false, false)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("non-blocking: %v %v", resp.StatusCode, err)
	}
	nbID := res.(map[string]any)["activationId"].(string)
	if !whisk.ValidActivationID(nbID) || resp.Header.Get(HeaderActivationID) != nbID || e.inv.last().Blocking {
		t.Fatalf("non-blocking id %q header %q", nbID, resp.Header.Get(HeaderActivationID))
	}

	act, _, err := c.Activations.Get(id)
	if err != nil || act.ActivationID != id || act.Name != "hello" || !act.Response.Success || act.Duration != 5 {
		t.Fatalf("activation get = %+v, %v", act, err)
	}
	logs, _, err := c.Activations.Logs(id)
	if err != nil || len(logs.Logs) != 1 || !strings.Contains(logs.Logs[0], "ran hello") {
		t.Fatalf("logs = %+v, %v", logs, err)
	}
	r, _, err := c.Activations.Result(id)
	if err != nil || !r.Success || r.Status != "success" || r.Result.(map[string]any)["name"] != "World" {
		t.Fatalf("result = %+v, %v", r, err)
	}
	acts, _, err := c.Activations.List(&owhisk.ActivationListOptions{Limit: 30, Name: "hello"})
	if err != nil || len(acts) != 3 {
		t.Fatalf("list = %d %v", len(acts), err)
	}
	if acts[0].StatusCode != 0 || acts[0].Name != "hello" {
		t.Fatalf("summary = %+v", acts[0])
	}
	if acts, _, _ := c.Activations.List(&owhisk.ActivationListOptions{Limit: 1, Skip: 1}); len(acts) != 1 {
		t.Fatalf("limit/skip list = %d", len(acts))
	}
	if acts, _, _ := c.Activations.List(&owhisk.ActivationListOptions{Limit: 30, Name: "nosuch"}); len(acts) != 0 {
		t.Fatalf("name filter matched %d", len(acts))
	}
	if _, _, err := c.Activations.Get(strings.Repeat("0", 32)); err == nil || wskErrStatus(t, err) != 404 {
		t.Fatalf("missing activation: %v", err)
	}
	// Another namespace cannot read guest's activation.
	oc := client(t, e, otherAuth)
	if _, _, err := oc.Activations.Get(id); err == nil || wskErrStatus(t, err) != 404 {
		t.Fatalf("cross-namespace activation: %v", err)
	}
}

func TestClientGoErrors(t *testing.T) {
	e := newEnv(t, Config{})
	e.putAction(t, "hello", `{"exec":{"kind":"nodejs:20","code":"x"}}`)

	bad := client(t, e, guestUUID+":wrong")
	_, _, err := bad.Actions.Get("hello", true)
	if err == nil || wskErrStatus(t, err) != 401 || !strings.Contains(err.Error(), msgBadCredentials) {
		t.Fatalf("bad key: %v", err)
	}
	resp, body := e.do(t, "GET", "/api/v1/namespaces/_/actions", "", "", nil)
	wantError(t, resp, body, 401, msgNoCredentials)
	resp, body = e.do(t, "GET", "/api/v1/namespaces/guest/actions", otherAuth, "", nil)
	wantError(t, resp, body, 403, msgNotAuthorized)

	// No healthy invoker.
	e.inv.mu.Lock()
	e.inv.noInvokers = true
	e.inv.mu.Unlock()
	c := client(t, e, guestAuth)
	_, _, err = c.Actions.Invoke("hello", map[string]any{}, true, true)
	if err == nil || wskErrStatus(t, err) != 503 {
		t.Fatalf("no invokers: %v", err)
	}
	resp, body = e.do(t, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true", guestAuth, "application/json", strings.NewReader(`{}`))
	wantError(t, resp, body, 503, msgUnavailable)
	e.inv.mu.Lock()
	e.inv.noInvokers = false
	e.inv.mu.Unlock()

	// Namespaces.
	nss, _, err := c.Namespaces.List()
	if err != nil || len(nss) != 1 || nss[0].Name != "guest" {
		t.Fatalf("namespaces = %+v, %v", nss, err)
	}
}

func TestInvokeBadInput(t *testing.T) {
	e := newEnv(t, Config{})
	e.putAction(t, "hello", `{"exec":{"kind":"nodejs:20","code":"x"},"parameters":[{"key":"fixed","value":1}],"annotations":[{"key":"final","value":true}]}`)
	path := "/api/v1/namespaces/_/actions/hello?blocking=true"
	for _, c := range []struct {
		name, body string
		status     int
		text       string
	}{
		{"malformed", `{"a":`, 400, ""},
		{"array", `[1,2]`, 400, ""},
		{"string", `"x"`, 400, ""},
		{"final override", `{"fixed":2}`, 400, msgParamsNotAllowed},
		{"oversize", `{"a":"` + strings.Repeat("x", MaxPayloadBytes) + `"}`, 413, ""},
	} {
		resp, body := e.do(t, "POST", path, guestAuth, "application/json", strings.NewReader(c.body))
		wantError(t, resp, body, c.status, c.text)
	}
	resp, body := e.do(t, "POST", path+"&timeout=70000", guestAuth, "application/json", nil)
	wantError(t, resp, body, 400, msgInvalidTimeout())
	resp, body = e.do(t, "POST", "/api/v1/namespaces/_/actions/nosuch", guestAuth, "application/json", nil)
	wantError(t, resp, body, 404, msgNotFound)
	// Empty body is fine.
	resp, body = e.do(t, "POST", path+"&result=true", guestAuth, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"fixed":1`) {
		t.Fatalf("empty body invoke: %d %s", resp.StatusCode, body)
	}
}

func TestInvokeStatusMapping(t *testing.T) {
	e := newEnv(t, Config{})
	for _, c := range []struct {
		name        string
		status      int
		result      string
		resultParam string
		wantHTTP    int
		wantBody    string // substring
	}{
		{"ok", 0, `{"v":1}`, "true", 200, `{"v":1}`},
		{"app", 1, `{"error":"bad"}`, "true", 502, `{"error":"bad"}`},
		{"dev", 2, `{"error":"The action exceeded its time limits of 100 milliseconds."}`, "false", 502, `"status":"action developer error"`},
		{"whisk", 3, `{"error":"boom"}`, "false", 500, `"status":"whisk internal error"`},
		{"arr", 0, `[1,2,3]`, "false", 200, `[1,2,3]`},
	} {
		st, res := c.status, json.RawMessage(c.result)
		e.inv.set(c.name, func(map[string]json.RawMessage) (int, json.RawMessage) { return st, res })
		e.putAction(t, c.name, `{"exec":{"kind":"nodejs:20","code":"x"}}`)
		resp, body := e.do(t, "POST", "/api/v1/namespaces/_/actions/"+c.name+"?blocking=true&result="+c.resultParam, guestAuth, "application/json", strings.NewReader(`{}`))
		if resp.StatusCode != c.wantHTTP || !strings.Contains(string(body), c.wantBody) || resp.Header.Get(HeaderActivationID) == "" {
			t.Errorf("%s: %d %s, want %d containing %s", c.name, resp.StatusCode, body, c.wantHTTP, c.wantBody)
		}
		if c.name == "arr" && string(body) != "[1,2,3]" {
			t.Errorf("array result not returned alone: %s", body)
		}
	}
}

func TestInvokeTimeoutAndShrunk(t *testing.T) {
	e := newEnv(t, Config{})
	e.putAction(t, "slow", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
	e.putAction(t, "shrunk", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
	e.inv.mu.Lock()
	e.inv.slow["slow"] = true
	e.inv.shrunk["shrunk"] = true
	e.inv.mu.Unlock()

	resp, body := e.do(t, "POST", "/api/v1/namespaces/_/actions/slow?blocking=true&timeout=50", guestAuth, "application/json", nil)
	id := resp.Header.Get(HeaderActivationID)
	if resp.StatusCode != 202 || id == "" || string(body) != `{"activationId":"`+id+`"}` {
		t.Fatalf("timeout: %d %s (header %q)", resp.StatusCode, body, id)
	}
	// Shrunk acks: the balancer read the record from the store, logs included.
	resp, body = e.do(t, "POST", "/api/v1/namespaces/_/actions/shrunk?blocking=true", guestAuth, "application/json", strings.NewReader(`{"k":"v"}`))
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"k":"v"`) || !strings.Contains(string(body), "ran shrunk") {
		t.Fatalf("shrunk: %d %s", resp.StatusCode, body)
	}
}

// TestReadAfterBlockingInvoke: the blocking caller is answered from the Result
// ack before the invoker stores the record; a read of it in that window waits
// for the store and gets the record with its logs, not a 404.
func TestReadAfterBlockingInvoke(t *testing.T) {
	e := newEnv(t, Config{})
	e.putAction(t, "late", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
	e.inv.mu.Lock()
	e.inv.late["late"] = true
	e.inv.mu.Unlock()
	resp, body := e.do(t, "POST", "/api/v1/namespaces/_/actions/late?blocking=true", guestAuth, "application/json", strings.NewReader(`{"k":"v"}`))
	id := resp.Header.Get(HeaderActivationID)
	if resp.StatusCode != 200 || strings.Contains(string(body), "ran late") {
		t.Fatalf("invoke: %d %s, want the answer without logs", resp.StatusCode, body)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		close(e.inv.release)
	}()
	start := time.Now()
	resp, body = e.do(t, "GET", "/api/v1/namespaces/_/activations/"+id+"/logs", guestAuth, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "ran late") {
		t.Fatalf("logs right after the answer: %d %s", resp.StatusCode, body)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("the read did not wait for the store (%v)", waited)
	}
	// Another tenant learns nothing: 404 at once, no waiting on someone else's activation.
	resp, body = e.do(t, "GET", "/api/v1/namespaces/_/activations/"+id, otherAuth, "", nil)
	wantError(t, resp, body, http.StatusNotFound, msgNotFound)
}

// TestReadAsTheActivationSettles: the record is stored and the activation settles at the very
// moment the read asks whether it is being stored. The read still finds the record (it asked
// before reading the store), where asking after a read that missed answered 404.
func TestReadAsTheActivationSettles(t *testing.T) {
	e := newEnv(t, Config{})
	e.putAction(t, "racy", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
	e.inv.mu.Lock()
	e.inv.late["racy"] = true
	e.inv.settleOnAsk["racy"] = true
	e.inv.mu.Unlock()
	resp, body := e.do(t, "POST", "/api/v1/namespaces/_/actions/racy?blocking=true", guestAuth, "application/json", strings.NewReader(`{}`))
	id := resp.Header.Get(HeaderActivationID)
	if resp.StatusCode != 200 || strings.Contains(string(body), "ran racy") {
		t.Fatalf("invoke: %d %s, want the answer without logs", resp.StatusCode, body)
	}
	resp, body = e.do(t, "GET", "/api/v1/namespaces/_/activations/"+id+"/logs", guestAuth, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "ran racy") {
		t.Fatalf("logs as the activation settles: %d %s", resp.StatusCode, body)
	}
}

func zipBase64(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	f, err := w.Create("index.js")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("exports.main = () => ({})"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func TestPutActionValidation(t *testing.T) {
	e := newEnv(t, Config{})
	put := func(name, body string) (*http.Response, []byte) {
		return e.do(t, "PUT", "/api/v1/namespaces/_/actions/"+name, guestAuth, "application/json", strings.NewReader(body))
	}
	for _, c := range []struct {
		name, body, contains string
	}{
		{"py", `{"exec":{"kind":"python:3","code":"x"}}`, "python:3"},
		{"bb", `{"exec":{"kind":"blackbox","image":"img"}}`, "blackbox"},
		{"seq", `{"exec":{"kind":"sequence","components":["/_/a"]}}`, msgSequenceComponentNotFound},
		{"old", `{"exec":{"kind":"nodejs:6","code":"x"}}`, "nodejs:6"},
		// Node 18 is not offered: the enclave runtime is Node 20, and a kind runs what it names.
		{"node18", `{"exec":{"kind":"nodejs:18","code":"x"}}`,
			`"The specified runtime 'nodejs:18' is not supported by this platform. Valid values are: 'nodejs:20'."`},
		{"nocode", `{"exec":{"kind":"nodejs:20"}}`, "exec.code"},
		{"noexec", `{}`, "exec"},
		{"mem", `{"exec":{"kind":"nodejs:20","code":"x"},"limits":{"memory":4096}}`, "memory 4096"},
		{"timeout", `{"exec":{"kind":"nodejs:20","code":"x"},"limits":{"timeout":1}}`, "timeout 1"},
		{"params", `{"exec":{"kind":"nodejs:20","code":"x"},"parameters":{"a":1}}`, "malformed"},
		{"json", `{"exec":`, "malformed"},
		{"badbin", `{"exec":{"kind":"nodejs:20","code":"not base64!","binary":true}}`, "base64"},
	} {
		resp, body := put(c.name, c.body)
		if resp.StatusCode != 400 || !strings.Contains(string(body), c.contains) {
			t.Errorf("%s: %d %s, want 400 mentioning %q", c.name, resp.StatusCode, body, c.contains)
		}
	}
	resp, body := put("bad$name", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
	wantError(t, resp, body, 400, msgNameIllegal)
	resp, body = put("pkg/act", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
	wantError(t, resp, body, 404, msgNotFound) // no package pkg

	// A base64 zip is a binary action; default kind resolves.
	resp, body = put("zipped", `{"exec":{"kind":"nodejs:default","code":"`+zipBase64(t)+`","main":"main"}}`)
	var a whisk.Action
	if resp.StatusCode != 200 || json.Unmarshal(body, &a) != nil || !a.Exec.Binary || a.Exec.Kind != "nodejs:20" || a.Exec.Main != "main" {
		t.Fatalf("zip action: %d %s", resp.StatusCode, body)
	}
	resp, body = put("plain", `{"exec":{"kind":"nodejs:20","code":"abcd"}}`)
	if resp.StatusCode != 200 || json.Unmarshal(body, &a) != nil || a.Exec.Binary {
		t.Fatalf("plain action: %d %s", resp.StatusCode, body)
	}
	// Triggers and rules.
	resp, body = e.do(t, "GET", "/api/v1/namespaces/_/triggers", guestAuth, "", nil)
	if resp.StatusCode != 200 || string(body) != "[]" {
		t.Fatalf("trigger list: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "PUT", "/api/v1/namespaces/_/rules/r", guestAuth, "application/json", strings.NewReader(`{}`))
	wantError(t, resp, body, 400, msgRuleNeedsTriggerAndAction)
	resp, body = e.do(t, "GET", "/api/v1/namespaces/_/actions?limit=500", guestAuth, "", nil)
	wantError(t, resp, body, 400, "The value '500' is not in the range of 0 to 200 for actions.")
}

func TestInfoAndInvokers(t *testing.T) {
	e := newEnv(t, Config{})
	resp, body := e.do(t, "GET", "/api/v1", "", "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"api_version_path":"v1"`) {
		t.Fatalf("info: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "GET", "/invokers", "", "", nil)
	if resp.StatusCode != 200 || string(body) != `{"invoker0/0":"up","invoker1/1":"unhealthy"}` {
		t.Fatalf("invokers: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "GET", "/invokers/healthy/count", "", "", nil)
	if resp.StatusCode != 200 || string(body) != "1" {
		t.Fatalf("healthy count: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "GET", "/nosuch", "", "", nil)
	wantError(t, resp, body, 404, msgNotFound)
}

func TestInternalActivationEndpoint(t *testing.T) {
	e := newEnv(t, Config{})
	id := whisk.ActivationIDNew()
	rec := `{"namespace":"guest","name":"hello","subject":"guest","activationId":"` + id + `","start":1000,"end":1005,` +
		`"response":{"statusCode":0,"result":{"ok":true}},"logs":["l1","l2"],"version":"0.0.1","publish":false,"annotations":[]}`
	path := "/internal/v1/activations/guest/" + id
	resp, body := e.do(t, "PUT", path, "", "application/json", strings.NewReader(rec))
	wantError(t, resp, body, 401, "")
	resp, body = e.do(t, "PUT", path, "", "application/json", strings.NewReader(rec), "X-Teemate-Invoker-Token", "wrong")
	wantError(t, resp, body, 401, "")
	resp, body = e.do(t, "PUT", path, "", "application/json", strings.NewReader(`{"namespace":`), "X-Teemate-Invoker-Token", token)
	wantError(t, resp, body, 400, "")
	resp, body = e.do(t, "PUT", "/internal/v1/activations/other/"+id, "", "application/json", strings.NewReader(rec), "X-Teemate-Invoker-Token", token)
	wantError(t, resp, body, 400, "")
	resp, body = e.do(t, "PUT", path, "", "application/json", strings.NewReader(rec), "X-Teemate-Invoker-Token", token)
	if resp.StatusCode != 200 {
		t.Fatalf("store: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "GET", "/api/v1/namespaces/_/activations/"+id+"/logs", guestAuth, "", nil)
	if resp.StatusCode != 200 || string(body) != `{"logs":["l1","l2"]}` {
		t.Fatalf("logs: %d %s", resp.StatusCode, body)
	}
	// The invoker is the only writer: the same record written again (a retried request) is
	// one record, not two.
	if resp, body := e.do(t, "PUT", path, "", "application/json", strings.NewReader(rec), "X-Teemate-Invoker-Token", token); resp.StatusCode != 200 {
		t.Fatalf("store again: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "GET", "/api/v1/namespaces/_/activations?count=true", guestAuth, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"activations":1`) {
		t.Fatalf("count after a repeated write: %d %s", resp.StatusCode, body)
	}
}

func TestActivationQueryErrors(t *testing.T) {
	e := newEnv(t, Config{})
	for q, text := range map[string]string{
		"since=abc":            "Parameter is not a valid value for epoch seconds: abc",
		"name=a/b/c":           "Parameter may be a 'simple' name or 'package-name/simple' name: a/b/c",
		"docs=true&count=true": msgDocsWithCount,
		"skip=-1":              "The value '-1' is not greater than or equal to 0 for activations.",
		"limit=x":              "The value 'x' is not an integer for activations.",
	} {
		resp, body := e.do(t, "GET", "/api/v1/namespaces/_/activations?"+q, guestAuth, "", nil)
		wantError(t, resp, body, 400, text)
	}
	resp, body := e.do(t, "GET", "/api/v1/namespaces/_/activations/xyz", guestAuth, "", nil)
	wantError(t, resp, body, 400, msgActivationIDBad)
	resp, body = e.do(t, "GET", "/api/v1/namespaces/_/activations?count=true", guestAuth, "", nil)
	if resp.StatusCode != 200 || string(body) != `{"activations":0}` {
		t.Fatalf("count: %d %s", resp.StatusCode, body)
	}
}
