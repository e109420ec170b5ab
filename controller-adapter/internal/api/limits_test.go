package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	owhisk "github.com/apache/openwhisk-client-go/whisk"

	"github.com/teemate/platform/controller-adapter/internal/store"
)

// Issue #18 item 4 through openwhisk-client-go: 90 invocations in a burst, the ones beyond 60 get
// 429 with OpenWhisk's text; 40 invocations of a slow action in flight, the ones beyond 30 get
// 429; the namespace's own limit (what `controller-adapter namespace limits` stores) takes effect
// at its next request; another namespace is not affected.
func TestClientGoThrottles(t *testing.T) {
	t.Run("invocations per minute", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.putAction(t, "hello", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
		c := client(t, e, guestAuth)
		avoidMinuteEdge(t, 20*time.Second)
		var refused []string
		for i := 0; i < 90; i++ {
			_, _, err := c.Actions.Invoke("hello", map[string]any{"i": i}, false, false)
			switch {
			case err == nil && len(refused) > 0:
				t.Fatalf("invocation %d accepted after a refusal", i+1)
			case err != nil && wskErrStatus(t, err) != http.StatusTooManyRequests:
				t.Fatalf("invocation %d: %v", i+1, err)
			case err != nil:
				refused = append(refused, err.Error())
			}
		}
		if len(refused) != 30 {
			t.Fatalf("%d of 90 refused, want 30", len(refused))
		}
		for i, msg := range refused {
			if want := fmt.Sprintf("Too many requests in the last minute (count: %d, allowed: 60).", 61+i); !strings.Contains(msg, want) {
				t.Fatalf("refusal %d: %q, want %q", i, msg, want)
			}
		}
		// Blocking invocations, web actions... of the same namespace are refused too; another
		// namespace is not.
		resp, body := e.do(t, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true", guestAuth, "application/json", nil)
		wantError(t, resp, body, 429, "Too many requests in the last minute (count: 91, allowed: 60).")
		if resp, body = e.do(t, "POST", "/api/v1/namespaces/_/actions/nosuch", otherAuth, "", nil); resp.StatusCode != 404 {
			t.Fatalf("other namespace: %d %s", resp.StatusCode, body)
		}
		// The namespace's own limit, set while the API runs, applies from its next request.
		n := 200
		if _, err := e.st.SetLimits(context.Background(), "guest", store.LimitsChange{Set: store.Limits{InvocationsPerMinute: &n}}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Actions.Invoke("hello", nil, false, false); err != nil {
			t.Fatalf("after raising the namespace's limit: %v", err)
		}
	})
	t.Run("concurrent invocations", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.putAction(t, "sleepy", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
		e.inv.slow["sleepy"] = true // never completes: every activation stays in flight
		c := client(t, e, guestAuth)
		accepted := 0
		for i := 0; i < 40; i++ {
			_, _, err := c.Actions.Invoke("sleepy", nil, false, false)
			if err == nil {
				accepted++
				continue
			}
			if wskErrStatus(t, err) != 429 || !strings.Contains(err.Error(), "Too many concurrent requests in flight (count: 30, allowed: 30).") {
				t.Fatalf("invocation %d: %v", i+1, err)
			}
		}
		if accepted != 30 {
			t.Fatalf("%d of 40 accepted, want 30", accepted)
		}
		// Lowering the namespace's limit refuses at once; another namespace has its own count.
		one := 1
		if _, err := e.st.SetLimits(context.Background(), "other", store.LimitsChange{Set: store.Limits{ConcurrentInvocations: &one}}); err != nil {
			t.Fatal(err)
		}
		o := client(t, e, otherAuth)
		if _, _, err := o.Actions.Insert(&owhisk.Action{Name: "sleepy", Exec: &owhisk.Exec{Kind: "nodejs:20", Code: strp("x")}}, false); err != nil {
			t.Fatal(err)
		}
		if _, _, err := o.Actions.Invoke("sleepy", nil, false, false); err != nil {
			t.Fatalf("other's first: %v", err)
		}
		if _, _, err := o.Actions.Invoke("sleepy", nil, false, false); err == nil || !strings.Contains(err.Error(), "(count: 1, allowed: 1)") {
			t.Fatalf("other's second: %v", err)
		}
	})
	t.Run("trigger fires per minute", func(t *testing.T) {
		e := newEnv(t, Config{Throttles: Throttles{FiresPerMinute: 3}})
		c := client(t, e, guestAuth)
		avoidMinuteEdge(t, 5*time.Second)
		for i := 1; i <= 4; i++ {
			_, _, err := c.Triggers.Fire("t", nil)
			if i <= 3 && (err == nil || wskErrStatus(t, err) == 429) {
				t.Fatalf("fire %d: %v, want the trigger's own answer", i, err)
			}
			if i == 4 && (err == nil || wskErrStatus(t, err) != 429 ||
				!strings.Contains(err.Error(), "Too many requests in the last minute (count: 4, allowed: 3).")) {
				t.Fatalf("fire 4: %v, want 429", err)
			}
		}
		// Fires do not use up invocations.
		resp, body := e.do(t, "POST", "/api/v1/namespaces/_/actions/nosuch", guestAuth, "", nil)
		wantError(t, resp, body, 404, msgNotFound)
	})
	t.Run("system limits from the configuration", func(t *testing.T) {
		e := newEnv(t, Config{Throttles: Throttles{InvocationsPerMinute: 2}})
		e.putAction(t, "hello", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
		avoidMinuteEdge(t, 5*time.Second)
		for i := 1; i <= 3; i++ {
			resp, body := e.do(t, "POST", "/api/v1/namespaces/_/actions/hello", guestAuth, "", nil)
			if want := map[bool]int{true: 202, false: 429}[i <= 2]; resp.StatusCode != want {
				t.Fatalf("invocation %d: %d %s", i, resp.StatusCode, body)
			}
		}
	})
}

func strp(s string) *string { return &s }

// getJSON GETs path (with auth unless empty) and decodes a 200 answer.
func getJSON(t *testing.T, e *env, path, auth string) map[string]any {
	t.Helper()
	resp, body := e.do(t, "GET", path, auth, "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
	return m
}

// GET / is OpenWhisk's controller info; .../limits the namespace's UserLimits.
func TestRootInfoAndLimits(t *testing.T) {
	e := newEnv(t, Config{Throttles: Throttles{ConcurrentInvocations: 7}})
	root := getJSON(t, e, "/", "")
	for _, k := range []string{"description", "support", "api_paths", "limits", "runtimes"} {
		if _, ok := root[k]; !ok {
			t.Errorf("GET / has no %q: %v", k, root)
		}
	}
	limits := root["limits"].(map[string]any)
	for k, want := range map[string]float64{"actions_per_minute": 60, "concurrent_actions": 7, "triggers_per_minute": 60,
		"sequence_length": 50, "min_action_memory": 128 << 20, "max_action_memory": 512 << 20, "max_action_duration": 300000,
		"default_max_action_logs": 10 << 20, "min_action_logs": 0} {
		if limits[k] != want {
			t.Errorf("limits.%s = %v, want %v", k, limits[k], want)
		}
	}
	if len(limits) != 16 {
		t.Errorf("limits has %d fields, want OpenWhisk's 16: %v", len(limits), limits)
	}
	node := root["runtimes"].(map[string]any)["nodejs"].([]any)
	def := 0
	for _, r := range node {
		rt := r.(map[string]any)
		if rt["default"] == true {
			def++
		}
		if !strings.HasPrefix(rt["kind"].(string), "nodejs:") || rt["image"] == "" || rt["attached"] != true {
			t.Errorf("runtime %v", rt)
		}
	}
	if def != 1 || fmt.Sprint(root["api_paths"]) != "[/api/v1]" {
		t.Errorf("runtimes %v, api_paths %v", node, root["api_paths"])
	}

	got := getJSON(t, e, "/api/v1/namespaces/_/limits", guestAuth)
	want := map[string]any{"invocationsPerMinute": 60.0, "concurrentInvocations": 7.0, "firesPerMinute": 60.0,
		"minActionMemory": 128.0, "maxActionMemory": 512.0, "minActionLogs": 0.0, "maxActionLogs": 10.0,
		"minActionTimeout": 100.0, "maxActionTimeout": 300000.0, "minActionConcurrency": 1.0, "maxActionConcurrency": 1.0,
		"maxParameterSize": "1 MB", "maxActionInstances": 7.0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("limits = %v\nwant %v", got, want)
	}
	n := 1000
	if _, err := e.st.SetLimits(context.Background(), "guest", store.LimitsChange{Set: store.Limits{InvocationsPerMinute: &n}}); err != nil {
		t.Fatal(err)
	}
	if got = getJSON(t, e, "/api/v1/namespaces/guest/limits", guestAuth); got["invocationsPerMinute"] != 1000.0 {
		t.Fatalf("after the override: %v", got)
	}
	resp, body := e.do(t, "GET", "/api/v1/namespaces/guest/limits", otherAuth, "", nil)
	wantError(t, resp, body, 403, msgNotAuthorized)
	resp, body = e.do(t, "PUT", "/api/v1/namespaces/_/limits", guestAuth, "", nil)
	wantError(t, resp, body, 405, "")
	resp, body = e.do(t, "GET", "/api/v1/namespaces/_/limits/x", guestAuth, "", nil)
	wantError(t, resp, body, 400, "Inner entity level routes for limits are not yet implemented.")
}

// count=true on every list answers {"<collection>": N}; an explicit version on PUT is kept.
func TestClientGoCountAndVersion(t *testing.T) {
	e := newEnv(t, Config{})
	c := client(t, e, guestAuth)
	for _, name := range []string{"a", "b", "c"} {
		if _, _, err := c.Actions.Insert(&owhisk.Action{Name: name, Exec: &owhisk.Exec{Kind: "nodejs:20", Code: strp("x")}}, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := c.Packages.Insert(&owhisk.Package{Name: "p"}, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Actions.Insert(&owhisk.Action{Name: "p/d", Exec: &owhisk.Exec{Kind: "nodejs:20", Code: strp("x")}}, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Actions.Invoke("a", nil, true, true); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"actions?count=true":          `{"actions":4}`,
		"actions?count=true&skip=1":   `{"actions":3}`,
		"actions/p/?count=true":       `{"actions":1}`,
		"packages?count=true":         `{"packages":1}`,
		"activations?count=true":      `{"activations":1}`,
		"triggers?count=true":         `{"triggers":0}`,
		"rules?count=true":            `{"rules":0}`,
		"actions?count=false&limit=1": "",
	} {
		req, err := c.NewRequest("GET", "namespaces/_/"+path, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		var got json.RawMessage
		if _, err := c.Do(req, &got, false); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if want == "" {
			if !strings.HasPrefix(string(got), "[") {
				t.Errorf("%s = %s, want the list", path, got)
			}
		} else if string(got) != want {
			t.Errorf("%s = %s, want %s", path, got, want)
		}
	}

	// Explicit versions (OpenWhisk: content.version getOrElse the stored one's upPatch).
	a, _, err := c.Actions.Insert(&owhisk.Action{Name: "v", Version: "2.1.0", Exec: &owhisk.Exec{Kind: "nodejs:20", Code: strp("x")}}, false)
	if err != nil || a.Version != "2.1.0" {
		t.Fatalf("create with version 2.1.0: %+v, %v", a, err)
	}
	if a, _, err = c.Actions.Insert(&owhisk.Action{Name: "v", Exec: &owhisk.Exec{Kind: "nodejs:20", Code: strp("y")}}, true); err != nil || a.Version != "2.1.1" {
		t.Fatalf("update without a version: %v, %v", a.Version, err)
	}
	got, _, err := c.Actions.Get("v", true)
	if err != nil || got.Version != "2.1.1" {
		t.Fatalf("get: %v, %v", got, err)
	}
	// A client that writes back what it read keeps the version, as against OpenWhisk.
	if a, _, err = c.Actions.Insert(got, true); err != nil || a.Version != "2.1.1" {
		t.Fatalf("write back: %+v, %v", a, err)
	}
	resp, body := e.do(t, "PUT", "/api/v1/namespaces/_/actions/v?overwrite=true", guestAuth, "application/json",
		strings.NewReader(`{"version":"1.x"}`))
	wantError(t, resp, body, 400, "The request content was malformed: version '1.x' is not major.minor.patch.")
}

// CORS as OpenWhisk's controller does it: preflights answered 200 without a key, the REST API's
// answers with its headers; web actions keep their own.
func TestCORS(t *testing.T) {
	e := newEnv(t, Config{})
	for _, path := range []string{"/api/v1/namespaces/_/actions", "/api/v1/namespaces/_/actions/x", "/api/v1", "/api/v1/namespaces"} {
		resp, body := e.do(t, "OPTIONS", path, "", "", nil, "Origin", "https://app.example", "Access-Control-Request-Method", "PUT")
		h := resp.Header
		if resp.StatusCode != 200 || string(body) != "OK" || h.Get("Access-Control-Allow-Origin") != "*" ||
			h.Get("Access-Control-Allow-Methods") != "GET, DELETE, POST, PUT, HEAD" ||
			h.Get("Access-Control-Allow-Headers") != "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent" {
			t.Errorf("OPTIONS %s: %d %q %v", path, resp.StatusCode, body, h)
		}
	}
	resp, _ := e.do(t, "GET", "/api/v1/namespaces/_/actions", guestAuth, "", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("GET actions: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = e.do(t, "OPTIONS", "/invokers", "", "", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Methods") != "OPTIONS, GET, POST" {
		t.Errorf("OPTIONS /invokers: %d %v", resp.StatusCode, resp.Header)
	}
	// The invokers' endpoints take no browser calls.
	resp, _ = e.do(t, "OPTIONS", "/internal/v1/activations/guest/x", "", "", nil)
	if resp.StatusCode == 200 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("OPTIONS /internal: %d %v", resp.StatusCode, resp.Header)
	}
	// A web action that answers its own OPTIONS (web-custom-options) gets no headers of ours.
	e.putAction(t, "own", `{"exec":{"kind":"nodejs:20","code":"x"},"annotations":[{"key":"web-export","value":true},{"key":"web-custom-options","value":true}]}`)
	e.inv.set("own", func(map[string]json.RawMessage) (int, json.RawMessage) {
		return 0, json.RawMessage(`{"statusCode":204,"headers":{"Allow":"GET"}}`)
	})
	resp, body := e.do(t, "OPTIONS", "/api/v1/web/guest/default/own.http", "", "", nil)
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Allow") != "GET" {
		t.Errorf("custom OPTIONS web action: %d %v %s", resp.StatusCode, resp.Header, body)
	}
}

// GET /metrics serves the controller's Prometheus metrics without a key.
func TestMetricsScrape(t *testing.T) {
	e := newEnv(t, Config{Throttles: Throttles{InvocationsPerMinute: 1}})
	e.putAction(t, "hello", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
	avoidMinuteEdge(t, 5*time.Second)
	for i := 0; i < 2; i++ {
		e.do(t, "POST", "/api/v1/namespaces/_/actions/hello?blocking=true", guestAuth, "", nil)
	}
	e.do(t, "GET", "/api/v1/namespaces/_/nosuch", guestAuth, "", nil)
	resp, err := http.Get(e.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	text := string(b)
	for _, want := range []string{
		`teemate_controller_http_requests_total{code="200",method="POST",route="/api/v1/namespaces/{namespace}/actions/{name}"} 1`,
		`teemate_controller_http_requests_total{code="429",method="POST",route="/api/v1/namespaces/{namespace}/actions/{name}"} 1`,
		`teemate_controller_http_requests_total{code="200",method="PUT",route="/api/v1/namespaces/{namespace}/actions/{name}"} 1`,
		`teemate_controller_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`teemate_controller_activations_published_total{blocking="true"} 1`,
		`teemate_controller_throttled_total{limit="invocationsPerMinute"} 1`,
		`teemate_controller_http_request_duration_seconds_bucket{method="POST",route="/api/v1/namespaces/{namespace}/actions/{name}",le="+Inf"} 2`,
		`go_goroutines `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(text, "guest") || strings.Contains(text, "hello") {
		t.Error("/metrics names a namespace or an action")
	}
}
