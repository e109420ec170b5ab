package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	owhisk "github.com/apache/openwhisk-client-go/whisk"

	"github.com/teemate/platform/invoker/whisk"
)

// mark is a component that appends its name to the "trail" it is given and returns the rest of
// its input, so a result shows which components ran in which order.
func mark(name string) behaviour {
	return func(c map[string]json.RawMessage) (int, json.RawMessage) {
		var trail string
		json.Unmarshal(c["trail"], &trail)
		c["trail"] = jsonString(trail + name)
		b, _ := json.Marshal(c)
		return whisk.StatusSuccess, b
	}
}

// failing is a component that returns an application error.
func failing(c map[string]json.RawMessage) (int, json.RawMessage) {
	return whisk.StatusApplicationError, json.RawMessage(`{"error":"boom"}`)
}

// record is an activation in the external form, as far as these tests read it.
type record struct {
	ActivationID string           `json:"activationId"`
	Name         string           `json:"name"`
	Cause        string           `json:"cause"`
	Logs         []string         `json:"logs"`
	Duration     int64            `json:"duration"`
	Annotations  whisk.Parameters `json:"annotations"`
	Response     struct {
		Success bool                       `json:"success"`
		Status  string                     `json:"status"`
		Result  map[string]json.RawMessage `json:"result"`
	} `json:"response"`
}

func (r record) ann(k string) string {
	v, _ := r.Annotations.Get(k)
	return string(v)
}

func (r record) str(k string) string {
	var s string
	json.Unmarshal(r.Response.Result[k], &s)
	return s
}

// messages are the activation messages published so far.
func (f *fakeInvoker) messages() []*whisk.ActivationMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*whisk.ActivationMessage{}, f.msgs...)
}

// getRecord reads activation id, waiting for a record written after the answer.
func (e *env) getRecord(t *testing.T, auth, id string) record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var r record
		resp, b := e.call(t, "GET", "/api/v1/namespaces/_/activations/"+id, auth, "", &r)
		if resp.StatusCode == 200 {
			return r
		}
		if resp.StatusCode != 404 || time.Now().After(deadline) {
			t.Fatalf("activation %s: %d %s", id, resp.StatusCode, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const codeExec = `{"kind":"nodejs:20","code":"function main(p) { return p }"}`

// seqSetup creates a (with a parameter), b, bad and pkg/c, all marking their trail.
func seqSetup(t *testing.T) *env {
	e := newEnv(t, Config{})
	e.putAction(t, "a", `{"exec":`+codeExec+`,"parameters":[{"key":"pa","value":1}]}`)
	e.putAction(t, "b", `{"exec":`+codeExec+`}`)
	e.putAction(t, "bad", `{"exec":`+codeExec+`}`)
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/_/packages/pkg", guestAuth, `{"parameters":[{"key":"pp","value":2}]}`, nil)
	e.putAction(t, "pkg/c", `{"exec":`+codeExec+`}`)
	for _, n := range []string{"a", "b", "c"} {
		e.inv.set(n, mark(n))
	}
	e.inv.set("bad", failing)
	return e
}

// TestSequences: a sequence is created with its components resolved and checked, runs its
// components in order through the invoker path with each result passed on, and has its own
// record listing them; errors end it early; sequences nest.
func TestSequences(t *testing.T) {
	e := seqSetup(t)
	const ns = "/api/v1/namespaces/_"
	var a whisk.Action
	e.mustCall(t, 200, "PUT", ns+"/actions/s", guestAuth,
		`{"exec":{"kind":"sequence","components":["/_/a","/_/pkg/c","/guest/b"]},"parameters":[{"key":"dropped","value":1}]}`, &a)
	wantComps := []string{"/guest/a", "/guest/pkg/c", "/guest/b"}
	actions, _ := a.Parameters.Get(paramActions)
	if a.Exec.Kind != "sequence" || fmt.Sprint(a.Exec.Components) != fmt.Sprint(wantComps) || len(a.Parameters) != 1 ||
		string(actions) != `["/guest/a","/guest/pkg/c","/guest/b"]` {
		t.Fatalf("created %+v", a)
	}
	if kind, _ := a.Annotations.GetString(annExec); kind != "sequence" {
		t.Fatalf("exec annotation %q", kind)
	}
	var view map[string]json.RawMessage
	e.mustCall(t, 200, "GET", ns+"/actions/s?code=false", guestAuth, "", &view)
	if !strings.Contains(string(view["exec"]), `"components":["/guest/a","/guest/pkg/c","/guest/b"]`) {
		t.Fatalf("GET ?code=false exec: %s", view["exec"])
	}

	// Blocking: the last result, the first component gets the invoke's parameters (the sequence's
	// own are not passed on), each component its own and the previous result.
	before := len(e.inv.messages())
	resp, b := e.call(t, "POST", ns+"/actions/s?blocking=true", guestAuth, `{"trail":">"}`, nil)
	var r record
	if resp.StatusCode != 200 || json.Unmarshal(b, &r) != nil {
		t.Fatalf("invoke: %d %s", resp.StatusCode, b)
	}
	if r.str("trail") != ">acb" || string(r.Response.Result["pa"]) != "1" || string(r.Response.Result["pp"]) != "2" ||
		r.Response.Result[paramActions] != nil || r.Response.Result["dropped"] != nil {
		t.Fatalf("result %s", b)
	}
	if resp.Header.Get(HeaderActivationID) != r.ActivationID || r.Name != "s" || r.Cause != "" || len(r.Logs) != 3 || r.Duration != 15 {
		t.Fatalf("record %s", b)
	}
	for k, want := range map[string]string{"topmost": "true", "kind": `"sequence"`, "path": `"guest/s"`, "causedBy": ""} {
		if got := r.ann(k); got != want {
			t.Errorf("annotation %s = %s, want %s", k, got, want)
		}
	}
	if _, ok := r.Annotations.Get("waitTime"); !ok {
		t.Error("no waitTime annotation")
	}
	msgs := e.inv.messages()[before:]
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	for i, want := range []string{"guest/a", "guest/pkg/c", "guest/b"} {
		m := msgs[i]
		if m.Action.String() != want || m.Cause != r.ActivationID || !m.Blocking || m.ActivationID != r.Logs[i] {
			t.Errorf("message %d: %s cause %s blocking %v id %s, want %s caused by %s as logged %s",
				i, m.Action, m.Cause, m.Blocking, m.ActivationID, want, r.ActivationID, r.Logs[i])
		}
	}
	stored := e.getRecord(t, guestAuth, r.ActivationID)
	if fmt.Sprint(stored.Logs) != fmt.Sprint(r.Logs) || stored.str("trail") != ">acb" {
		t.Fatalf("stored sequence record %+v", stored)
	}
	if comp := e.getRecord(t, guestAuth, r.Logs[1]); comp.Cause != r.ActivationID {
		t.Fatalf("component record cause %q, want %s", comp.Cause, r.ActivationID)
	}
	// ?result=true gives the last result alone.
	var res map[string]any
	e.mustCall(t, 200, "POST", ns+"/actions/s?blocking=true&result=true", guestAuth, ``, &res)
	if res["trail"] != "acb" {
		t.Fatalf("result only: %v", res)
	}

	// An error ends the sequence with that component's response.
	e.mustCall(t, 200, "PUT", ns+"/actions/e1", guestAuth, `{"exec":{"kind":"sequence","components":["/_/a","/_/bad","/_/b"]}}`, nil)
	before = len(e.inv.messages())
	resp, b = e.call(t, "POST", ns+"/actions/e1?blocking=true", guestAuth, ``, nil)
	if resp.StatusCode != 502 || json.Unmarshal(b, &r) != nil || r.str("error") != "boom" || r.Response.Status != "application error" || len(r.Logs) != 2 {
		t.Fatalf("error short-circuit: %d %s", resp.StatusCode, b)
	}
	if n := len(e.inv.messages()) - before; n != 2 {
		t.Fatalf("%d components ran after an error, want 2", n)
	}

	// Nested: the inner sequence's record is caused by the outer one.
	e.mustCall(t, 200, "PUT", ns+"/actions/s2", guestAuth, `{"exec":{"kind":"sequence","components":["/_/s","/_/a"]}}`, nil)
	resp, b = e.call(t, "POST", ns+"/actions/s2?blocking=true", guestAuth, `{"trail":"!"}`, nil)
	if resp.StatusCode != 200 || json.Unmarshal(b, &r) != nil || r.str("trail") != "!acba" || len(r.Logs) != 2 || r.Duration != 20 {
		t.Fatalf("nested: %d %s", resp.StatusCode, b)
	}
	inner := e.getRecord(t, guestAuth, r.Logs[0])
	if inner.Name != "s" || inner.Cause != r.ActivationID || inner.ann("topmost") != "false" || inner.ann("causedBy") != `"sequence"` || len(inner.Logs) != 3 {
		t.Fatalf("inner sequence record %+v", inner)
	}
	if comp := e.getRecord(t, guestAuth, inner.Logs[0]); comp.Cause != inner.ActivationID {
		t.Fatalf("inner component's cause %q, want the inner sequence %s", comp.Cause, inner.ActivationID)
	}

	// Non-blocking: the id at once; the controller finishes the sequence and stores its record.
	var accepted map[string]string
	e.mustCall(t, 202, "POST", ns+"/actions/s", guestAuth, `{}`, &accepted)
	r = e.getRecord(t, guestAuth, accepted["activationId"])
	if len(r.Logs) != 3 || r.str("trail") != "acb" || r.ann("topmost") != "true" {
		t.Fatalf("non-blocking sequence record %+v", r)
	}
	for _, id := range r.Logs {
		if comp := e.getRecord(t, guestAuth, id); comp.Cause != r.ActivationID {
			t.Errorf("component %s cause %q, want %s", id, comp.Cause, r.ActivationID)
		}
	}

	// A component deleted after the sequence was made ends it with OpenWhisk's error.
	e.putAction(t, "gone", `{"exec":`+codeExec+`}`)
	e.mustCall(t, 200, "PUT", ns+"/actions/s3", guestAuth, `{"exec":{"kind":"sequence","components":["/_/a","/_/gone"]}}`, nil)
	e.mustCall(t, 200, "DELETE", ns+"/actions/gone", guestAuth, ``, nil)
	resp, b = e.call(t, "POST", ns+"/actions/s3?blocking=true", guestAuth, ``, nil)
	if resp.StatusCode != 502 || json.Unmarshal(b, &r) != nil || r.str("error") != msgSequenceComponentNotFound || len(r.Logs) != 1 {
		t.Fatalf("missing component: %d %s", resp.StatusCode, b)
	}

	// Updating a sequence into an action drops its _actions.
	e.mustCall(t, 200, "PUT", ns+"/actions/s3?overwrite=true", guestAuth, `{"exec":`+codeExec+`}`, &a)
	if a.Exec.Kind != "nodejs:20" || len(a.Parameters) != 0 {
		t.Fatalf("sequence made an action: %+v", a)
	}
}

// TestSequenceCreateRules: OpenWhisk's checks and texts on a sequence PUT.
func TestSequenceCreateRules(t *testing.T) {
	e := seqSetup(t)
	const ns = "/api/v1/namespaces/_"
	put := func(name string, comps ...string) (*http.Response, []byte) {
		b, _ := json.Marshal(map[string]any{"exec": map[string]any{"kind": "sequence", "components": append([]string{}, comps...)}})
		return e.call(t, "PUT", ns+"/actions/"+name+"?overwrite=true", guestAuth, string(b), nil)
	}
	many := func(n int, c string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = c
		}
		return out
	}
	resp, b := put("none")
	wantError(t, resp, b, 400, msgSequenceNoComponent)
	resp, b = put("long", many(SequenceLimit+1, "/_/a")...)
	wantError(t, resp, b, 400, msgSequenceTooLong)
	if resp, b = put("max", many(SequenceLimit, "/_/a")...); resp.StatusCode != 200 {
		t.Fatalf("%d components: %d %s", SequenceLimit, resp.StatusCode, b)
	}
	resp, b = put("missing", "/_/a", "/_/nope")
	wantError(t, resp, b, 400, msgSequenceComponentNotFound)
	resp, b = put("inmissingpkg", "/_/nopkg/a")
	wantError(t, resp, b, 400, msgSequenceComponentNotFound)
	resp, b = put("short", "a")
	wantError(t, resp, b, 400, "The request content was malformed: "+msgMalformedQualifiedName)
	resp, b = e.call(t, "PUT", ns+"/actions/nocomps", guestAuth, `{"exec":{"kind":"sequence"}}`, nil)
	wantError(t, resp, b, 400, "")

	// Nested sequences count with their atomic actions inlined.
	if resp, b = put("half", many(26, "/_/a")...); resp.StatusCode != 200 {
		t.Fatalf("26 components: %d %s", resp.StatusCode, b)
	}
	resp, b = put("twohalves", "/_/half", "/_/half")
	wantError(t, resp, b, 400, msgSequenceTooLong)

	// A sequence may not reach itself, directly or through another sequence.
	resp, b = put("self", "/_/a", "/_/self")
	wantError(t, resp, b, 400, msgSequenceCyclic)
	if resp, b = put("outer", "/_/a"); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode, string(b))
	}
	if resp, b = put("middle", "/_/outer", "/_/b"); resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode, string(b))
	}
	resp, b = put("outer", "/_/middle")
	wantError(t, resp, b, 400, msgSequenceCyclic)
	resp, b = put("a", "/_/middle") // an action turned into a sequence that reaches it
	wantError(t, resp, b, 400, msgSequenceCyclic)

	// Another namespace's: its public packages' actions only.
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/other/actions/x", otherAuth, `{"exec":`+codeExec+`}`, nil)
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/other/packages/pub", otherAuth, `{"publish":true}`, nil)
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/other/actions/pub/y", otherAuth, `{"exec":`+codeExec+`}`, nil)
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/other/packages/priv", otherAuth, `{}`, nil)
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/other/actions/priv/z", otherAuth, `{"exec":`+codeExec+`}`, nil)
	resp, b = put("theirs", "/other/x", "/_/a", "/other/priv/z")
	wantError(t, resp, b, 403, msgNotAuthorizedToAccess("other/priv/z, other/x"))
	if resp, b = put("shared", "/other/pub/y", "/_/a"); resp.StatusCode != 200 {
		t.Fatalf("a public package's action: %d %s", resp.StatusCode, b)
	}
	e.inv.set("y", mark("y"))
	if res := e.result(t, ns+"/actions/shared", guestAuth, `{}`); res["trail"] != "ya" {
		t.Fatalf("sequence through another namespace's public package: %v", res)
	}
	// Once the package is private, the sequence is refused before anything runs.
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/other/packages/pub?overwrite=true", otherAuth, `{"publish":false}`, nil)
	before := len(e.inv.messages())
	resp, b = e.call(t, "POST", ns+"/actions/shared?blocking=true", guestAuth, `{}`, nil)
	wantError(t, resp, b, 403, msgNotAuthorizedToAccess("other/pub/y"))
	if len(e.inv.messages()) != before {
		t.Fatal("a component ran although the sequence was refused")
	}
}

// TestSequenceWebAction: a web-exported sequence runs as its owner; the first component gets
// the HTTP context, the reply renders the last result.
func TestSequenceWebAction(t *testing.T) {
	e := seqSetup(t)
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/_/actions/page", guestAuth,
		`{"exec":{"kind":"sequence","components":["/_/a","/_/pkg/c"]},"annotations":[{"key":"web-export","value":true}]}`, nil)
	resp, b := e.do(t, "GET", "/api/v1/web/guest/default/page.json?trail=w", "", "", nil)
	var out map[string]any
	if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil || out["trail"] != "wac" || out["__ow_method"] != "get" {
		t.Fatalf("web sequence: %d %s", resp.StatusCode, b)
	}
	id := resp.Header.Get(HeaderActivationID)
	if r := e.getRecord(t, guestAuth, id); len(r.Logs) != 2 || r.ann("kind") != `"sequence"` {
		t.Fatalf("web sequence record %+v", r)
	}
}

// conductTrail is a conductor: a, then pkg/c, then the end, the trail ending with last.
func conductTrail(last string) behaviour {
	return func(c map[string]json.RawMessage) (int, json.RawMessage) {
		var trail string
		json.Unmarshal(c["trail"], &trail)
		switch string(c["step"]) {
		case "":
			return 0, json.RawMessage(`{"action":"a","params":{"trail":"<"},"state":{"step":1}}`)
		case "1":
			return 0, json.RawMessage(`{"action":"/_/pkg/c","params":{"trail":` + string(jsonString(trail)) + `},"state":{"step":2}}`)
		}
		return 0, json.RawMessage(`{"params":{"done":true,"trail":` + string(jsonString(trail+last)) + `}}`)
	}
}

// TestConductor: a conductor action drives components by its {action, params, state} results;
// the composition's record lists every activation; the step limits hold.
func TestConductor(t *testing.T) {
	e := seqSetup(t)
	const ns = "/api/v1/namespaces/_"
	e.putAction(t, "cond", `{"exec":`+codeExec+`,"annotations":[{"key":"conductor","value":true}]}`)
	e.inv.set("cond", conductTrail(">"))
	before := len(e.inv.messages())
	resp, b := e.call(t, "POST", ns+"/actions/cond?blocking=true", guestAuth, `{}`, nil)
	var r record
	if resp.StatusCode != 200 || json.Unmarshal(b, &r) != nil || r.str("trail") != "<ac>" || string(r.Response.Result["done"]) != "true" {
		t.Fatalf("composition: %d %s", resp.StatusCode, b)
	}
	for k, want := range map[string]string{"topmost": "true", "kind": `"sequence"`, "conductor": "true", "path": `"guest/cond"`} {
		if got := r.ann(k); got != want {
			t.Errorf("annotation %s = %s, want %s", k, got, want)
		}
	}
	msgs := e.inv.messages()[before:]
	if len(r.Logs) != 5 || len(msgs) != 5 || r.Duration != 25 {
		t.Fatalf("logs %v, %d messages, duration %d; want 5, 5, 25", r.Logs, len(msgs), r.Duration)
	}
	for i, want := range []string{"cond", "a", "cond", "c", "cond"} {
		if msgs[i].Action.Name != want || msgs[i].Cause != r.ActivationID || msgs[i].ActivationID != r.Logs[i] {
			t.Errorf("step %d: %s caused by %s, want %s caused by %s", i, msgs[i].Action, msgs[i].Cause, want, r.ActivationID)
		}
	}
	// The state goes back to the conductor with the component's result.
	var second map[string]any
	json.Unmarshal(msgs[2].Content, &second)
	if second["step"] != float64(1) || second["trail"] != "<a" || second["pa"] != float64(1) {
		t.Fatalf("second conductor run got %s", msgs[2].Content)
	}

	// A conductor that never stops: 50 components (each after a conductor run), then one more
	// conductor run asks for another and the next hears the composition is too long.
	e.putAction(t, "loop", `{"exec":`+codeExec+`,"annotations":[{"key":"conductor","value":true}]}`)
	e.inv.set("loop", func(c map[string]json.RawMessage) (int, json.RawMessage) {
		if v, ok := c["error"]; ok {
			return whisk.StatusApplicationError, json.RawMessage(`{"error":` + string(v) + `}`)
		}
		return 0, json.RawMessage(`{"action":"b","params":{}}`)
	})
	resp, b = e.call(t, "POST", ns+"/actions/loop?blocking=true", guestAuth, `{}`, nil)
	if resp.StatusCode != 502 || json.Unmarshal(b, &r) != nil || r.str("error") != msgCompositionTooLong || len(r.Logs) != 2*SequenceLimit+2 {
		t.Fatalf("component limit: %d, %d logs, %s", resp.StatusCode, len(r.Logs), r.Response.Result["error"])
	}
	// One that ignores the error too: the conductor runs at most 2n+1 times.
	e.putAction(t, "stubborn", `{"exec":`+codeExec+`,"annotations":[{"key":"conductor","value":true}]}`)
	e.inv.set("stubborn", func(map[string]json.RawMessage) (int, json.RawMessage) {
		return 0, json.RawMessage(`{"action":"b"}`)
	})
	resp, b = e.call(t, "POST", ns+"/actions/stubborn?blocking=true", guestAuth, `{}`, nil)
	if resp.StatusCode != 502 || json.Unmarshal(b, &r) != nil || r.str("error") != msgCompositionTooLong || len(r.Logs) != 3*SequenceLimit+1 {
		t.Fatalf("conductor limit: %d, %d logs, %s", resp.StatusCode, len(r.Logs), r.Response.Result["error"])
	}

	// Names it cannot run come back to the conductor as errors.
	e.putAction(t, "lost", `{"exec":`+codeExec+`,"annotations":[{"key":"conductor","value":true}]}`)
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/other/actions/x", otherAuth, `{"exec":`+codeExec+`}`, nil)
	e.inv.set("lost", func(c map[string]json.RawMessage) (int, json.RawMessage) {
		if v, ok := c["error"]; ok {
			var prev string
			json.Unmarshal(c["seen"], &prev)
			var msg string
			json.Unmarshal(v, &msg)
			seen := prev + "|" + msg
			switch strings.Count(seen, "|") {
			case 1:
				return 0, json.RawMessage(`{"action":"/other/x","state":{"seen":` + string(jsonString(seen)) + `}}`)
			case 2:
				return 0, json.RawMessage(`{"action":"nope","state":{"seen":` + string(jsonString(seen)) + `}}`)
			}
			return 0, json.RawMessage(`{"seen":` + string(jsonString(seen)) + `}`)
		}
		return 0, json.RawMessage(`{"action":42}`)
	})
	resp, b = e.call(t, "POST", ns+"/actions/lost?blocking=true", guestAuth, `{}`, nil)
	want := "|Failed to parse action name from json value 42 during composition." +
		"|Failed entitlement check for action with name 'other/x' during composition." +
		"|Failed to resolve action with name 'guest/nope' during composition."
	if resp.StatusCode != 200 || json.Unmarshal(b, &r) != nil || r.str("seen") != want || len(r.Logs) != 4 {
		t.Fatalf("errors back to the conductor: %d %s", resp.StatusCode, b)
	}

	// A conductor inside a sequence is one component; its record is caused by the sequence.
	e.mustCall(t, 200, "PUT", ns+"/actions/mixed", guestAuth, `{"exec":{"kind":"sequence","components":["/_/cond","/_/b"]}}`, nil)
	resp, b = e.call(t, "POST", ns+"/actions/mixed?blocking=true", guestAuth, `{}`, nil)
	if resp.StatusCode != 200 || json.Unmarshal(b, &r) != nil || r.str("trail") != "<ac>b" || len(r.Logs) != 2 {
		t.Fatalf("conductor in a sequence: %d %s", resp.StatusCode, b)
	}
	if comp := e.getRecord(t, guestAuth, r.Logs[0]); comp.Cause != r.ActivationID || comp.ann("conductor") != "true" || comp.ann("topmost") != "false" {
		t.Fatalf("composition record in a sequence %+v", comp)
	}
}

// TestClientGoSequences: openwhisk-client-go, the library wsk is built on, creates a sequence the
// way `wsk action create s --sequence a,b` does, reads it back, invokes it blocking and not.
func TestClientGoSequences(t *testing.T) {
	e := seqSetup(t)
	c := client(t, e, guestAuth)
	if _, _, err := c.Actions.Insert(&owhisk.Action{Name: "s", Namespace: "_",
		Exec: &owhisk.Exec{Kind: "sequence", Components: []string{"/_/a", "/_/pkg/c"}}}, false); err != nil {
		t.Fatalf("create: %v", err)
	}
	got, _, err := c.Actions.Get("s", false)
	if err != nil || got.Exec.Kind != "sequence" || fmt.Sprint(got.Exec.Components) != "[/guest/a /guest/pkg/c]" {
		t.Fatalf("get: %+v %v", got, err)
	}
	res, _, err := c.Actions.Invoke("s", map[string]any{"trail": "go:"}, true, true)
	if m, _ := res.(map[string]any); err != nil || m["trail"] != "go:ac" {
		t.Fatalf("invoke: %v %v", res, err)
	}
	res, _, err = c.Actions.Invoke("s", nil, false, false)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := res.(map[string]any)["activationId"].(string)
	e.getRecord(t, guestAuth, id) // waits until the controller stored it
	act, _, err := c.Activations.Get(id)
	if err != nil || len(act.Logs) != 2 || act.Annotations.GetValue("kind") != "sequence" || act.Annotations.GetValue("topmost") != true {
		t.Fatalf("activation: %+v %v", act, err)
	}
	comp, _, err := c.Activations.Get(act.Logs[0])
	if err != nil || comp.Cause != id {
		t.Fatalf("component activation: %+v %v", comp, err)
	}
	if _, _, err := c.Actions.Insert(&owhisk.Action{Name: "loop", Namespace: "_",
		Exec: &owhisk.Exec{Kind: "sequence", Components: []string{"/_/loop"}}}, false); err == nil || wskErrStatus(t, err) != 400 ||
		!strings.Contains(err.Error(), msgSequenceCyclic) {
		t.Fatalf("cyclic: %v", err)
	}
}

// TestSequenceWaits: a blocking invoke whose wait expires answers the id while the run goes on; a
// component whose record does not come within its time limit (plus the extra wait) ends the
// sequence with OpenWhisk's whisk error naming it.
func TestSequenceWaits(t *testing.T) {
	e := seqSetup(t)
	extra := componentWaitExtra
	componentWaitExtra = 0
	t.Cleanup(func() { componentWaitExtra = extra })
	e.putAction(t, "stuck", `{"exec":`+codeExec+`,"limits":{"timeout":300}}`)
	e.inv.mu.Lock()
	e.inv.slow["stuck"] = true
	e.inv.mu.Unlock()
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/_/actions/s", guestAuth, `{"exec":{"kind":"sequence","components":["/_/a","/_/stuck","/_/b"]}}`, nil)
	var accepted map[string]string
	e.mustCall(t, 202, "POST", "/api/v1/namespaces/_/actions/s?blocking=true&timeout=50", guestAuth, `{}`, &accepted)
	r := e.getRecord(t, guestAuth, accepted["activationId"])
	stuck := e.inv.last()
	if stuck.Action.Name != "stuck" || len(r.Logs) != 2 || r.Logs[1] != stuck.ActivationID || r.Response.Status != "whisk internal error" ||
		r.str("error") != msgSequenceComponentTimeout(stuck.ActivationID) {
		t.Fatalf("sequence with a component that never answers: %+v", r)
	}
}

// TestResolveNextName: how a conductor's "action" names a component (OpenWhisk's resolveName).
func TestResolveNextName(t *testing.T) {
	for in, want := range map[string]string{
		`"a"`:                        "guest/a",
		`"pkg/a"`:                    "guest/pkg/a",
		`"/ns/a"`:                    "ns/a",
		`"/ns/pkg/a"`:                "ns/pkg/a",
		`"ns/pkg/a"`:                 "ns/pkg/a",
		`"/_/a"`:                     "guest/a",
		`"/a"`:                       "",
		`"/ns/pkg/a/b"`:              "",
		`"bad$name"`:                 "",
		`""`:                         "",
		`42`:                         "",
		`{"name":"a"}`:               "",
		`"ns//a"`:                    "",
		`"/whisk.system/utils/echo"`: "whisk.system/utils/echo",
	} {
		c, ok := resolveNextName(json.RawMessage(in), "guest")
		got := ""
		if ok {
			got = c.String()
		}
		if got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}
