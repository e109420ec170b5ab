package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	owhisk "github.com/apache/openwhisk-client-go/whisk"

	"github.com/teemate/platform/invoker/whisk"
)

// call sends a JSON request and decodes a 2xx reply into out (when not nil).
func (e *env) call(t *testing.T, method, path, auth, body string, out any) (*http.Response, []byte) {
	t.Helper()
	var r *strings.Reader
	if body != "" {
		r = strings.NewReader(body)
	} else {
		r = strings.NewReader("")
	}
	resp, b := e.do(t, method, path, auth, "application/json", r)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, b)
		}
	}
	return resp, b
}

// mustCall is call that fails the test unless the status is want.
func (e *env) mustCall(t *testing.T, want int, method, path, auth, body string, out any) []byte {
	t.Helper()
	resp, b := e.call(t, method, path, auth, body, out)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	return b
}

// result is a blocking invoke's result of the echoing fake invoker: the message content.
func (e *env) result(t *testing.T, path, auth, body string) map[string]any {
	t.Helper()
	var out map[string]any
	e.mustCall(t, 200, "POST", path+"?blocking=true&result=true", auth, body, &out)
	return out
}

func wantParams(t *testing.T, what string, got map[string]any, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %v, want %q (all: %v)", what, k, got[k], v, got)
		}
	}
}

// TestPackagesREST: package and binding lifecycle, parameter inheritance in OpenWhisk's order,
// and packaged actions, over the REST API with the owner's key.
func TestPackagesREST(t *testing.T) {
	e := newEnv(t, Config{})
	const ns = "/api/v1/namespaces/_"
	var p map[string]any
	e.mustCall(t, 200, "PUT", ns+"/packages/utils", guestAuth,
		`{"parameters":[{"key":"a","value":"pkg"},{"key":"b","value":"pkg"}],"annotations":[{"key":"description","value":"u"}]}`, &p)
	if p["namespace"] != "guest" || p["name"] != "utils" || p["version"] != "0.0.1" || p["publish"] != false ||
		string(mustJSON(p["binding"])) != "{}" {
		t.Fatalf("created %v", p)
	}
	resp, b := e.call(t, "PUT", ns+"/packages/utils", guestAuth, `{}`, nil)
	wantError(t, resp, b, 409, msgConflict)
	// An update keeps what it does not name and bumps the version.
	e.mustCall(t, 200, "PUT", ns+"/packages/utils?overwrite=true", guestAuth, `{"publish":true}`, &p)
	if p["version"] != "0.0.2" || p["publish"] != true || len(p["parameters"].([]any)) != 2 || len(p["annotations"].([]any)) != 1 {
		t.Fatalf("updated %v", p)
	}
	e.mustCall(t, 200, "PUT", ns+"/packages/utils?overwrite=true", guestAuth, `{"version":"1.0.0"}`, &p)
	if p["version"] != "1.0.0" {
		t.Fatalf("explicit version: %v", p)
	}
	for body, text := range map[string]string{
		`{"version":"1.0"}`:                          "The request content was malformed: version '1.0' is not major.minor.patch.",
		`{"binding":{"namespace":"guest"}}`:          "",
		`{"parameters":{"a":1}}`:                     "",
		`{"binding":{"namespace":"g","name":"a/b"}}`: "",
	} {
		resp, b := e.call(t, "PUT", ns+"/packages/bad?overwrite=true", guestAuth, body, nil)
		wantError(t, resp, b, 400, text)
	}
	resp, b = e.call(t, "PUT", ns+"/packages/default", guestAuth, `{}`, nil)
	wantError(t, resp, b, 400, "Package name 'default' is reserved.")
	resp, b = e.call(t, "PUT", ns+"/packages/bad$name", guestAuth, `{}`, nil)
	wantError(t, resp, b, 400, msgNameIllegal)

	// Actions in the package: their namespace is the package path.
	var a whisk.Action
	e.mustCall(t, 200, "PUT", ns+"/actions/utils/echo", guestAuth,
		`{"exec":{"kind":"nodejs:20","code":"x"},"parameters":[{"key":"b","value":"action"},{"key":"c","value":"action"}]}`, &a)
	if a.Namespace != "guest/utils" || a.Name != "echo" {
		t.Fatalf("packaged action %+v", a)
	}
	e.mustCall(t, 200, "PUT", ns+"/actions/utils/changes", guestAuth,
		`{"exec":{"kind":"nodejs:20","code":"x"},"annotations":[{"key":"feed","value":true}]}`, nil)
	resp, b = e.call(t, "PUT", ns+"/actions/nopkg/echo", guestAuth, `{"exec":{"kind":"nodejs:20","code":"x"}}`, nil)
	wantError(t, resp, b, 404, msgNotFound)

	// GET returns the action with the parameters it runs with: package < action.
	e.mustCall(t, 200, "GET", ns+"/actions/utils/echo", guestAuth, "", &a)
	params, _ := a.Parameters.ToObject()
	var pm map[string]any
	json.Unmarshal(params, &pm)
	wantParams(t, "get packaged action", pm, map[string]string{"a": "pkg", "b": "action", "c": "action"})
	// The invoker's read is the document as stored.
	resp, b = e.do(t, "GET", "/internal/v1/actions/guest/utils/echo", "", "", nil, invokerTokenHeader, token)
	if resp.StatusCode != 200 || json.Unmarshal(b, &a) != nil || len(a.Parameters) != 2 || a.Revision == "" {
		t.Fatalf("internal read: %d %s", resp.StatusCode, b)
	}

	// GET of the package lists actions and feeds apart.
	var got struct {
		whisk.Package
		Actions []packageAction `json:"actions"`
		Feeds   []packageAction `json:"feeds"`
	}
	b = e.mustCall(t, 200, "GET", ns+"/packages/utils", guestAuth, "", nil)
	if err := json.Unmarshal(b, &got.Package); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &struct {
		Actions *[]packageAction `json:"actions"`
		Feeds   *[]packageAction `json:"feeds"`
	}{&got.Actions, &got.Feeds})
	if got.Name != "utils" || len(got.Actions) != 1 || got.Actions[0].Name != "echo" || got.Actions[0].Version != "0.0.1" ||
		len(got.Feeds) != 1 || got.Feeds[0].Name != "changes" {
		t.Fatalf("package get: %s", b)
	}

	// Listing: a package's actions, and every action of the namespace with its path.
	var list []actionView
	e.mustCall(t, 200, "GET", ns+"/actions/utils/", guestAuth, "", &list)
	if len(list) != 2 || list[0].Namespace != "guest/utils" {
		t.Fatalf("package action list %+v", list)
	}
	e.putAction(t, "top", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
	e.mustCall(t, 200, "GET", ns+"/actions?limit=2", guestAuth, "", &list)
	if len(list) != 2 || list[0].Name != "top" || list[0].Namespace != "guest" || list[1].Namespace != "guest/utils" {
		t.Fatalf("action list %+v", list)
	}
	// A trailing slash on a default-package action's PUT or POST is still that action.
	e.mustCall(t, 200, "POST", ns+"/actions/top/?blocking=true", guestAuth, "", nil)

	// Invoke: package < action < request, and the message names the package path.
	res := e.result(t, ns+"/actions/utils/echo", guestAuth, `{"c":"invoke"}`)
	wantParams(t, "invoke", res, map[string]string{"a": "pkg", "b": "action", "c": "invoke"})
	if m := e.inv.last(); m.Action.Path != "guest/utils" || m.Action.Name != "echo" || m.Action.Binding != "" {
		t.Fatalf("message action %+v", m.Action)
	}

	// A binding: its parameters override its package's, under the action's.
	e.mustCall(t, 200, "PUT", ns+"/packages/mybind", guestAuth,
		`{"binding":{"namespace":"_","name":"utils"},"parameters":[{"key":"a","value":"bind"},{"key":"b","value":"bind"},{"key":"d","value":"bind"}],
		  "annotations":[{"key":"binding","value":"forged"}]}`, &p)
	if string(mustJSON(p["binding"])) != `{"name":"utils","namespace":"guest"}` {
		t.Fatalf("binding %v", p)
	}
	// The binding annotation is the controller's, whatever the request said.
	if ann := p["annotations"].([]any); len(ann) != 1 || string(mustJSON(ann[0])) != `{"key":"binding","value":{"name":"utils","namespace":"guest"}}` {
		t.Fatalf("binding annotations %s", mustJSON(ann))
	}
	var bp whisk.Package
	res = e.result(t, ns+"/actions/mybind/echo", guestAuth, `{"e":"invoke"}`)
	wantParams(t, "invoke through binding", res, map[string]string{"a": "bind", "b": "action", "c": "action", "d": "bind", "e": "invoke"})
	if m := e.inv.last(); m.Action.Path != "guest/utils" || m.Action.Binding != "guest/mybind" {
		t.Fatalf("message action through binding %+v", m.Action)
	}
	b = e.mustCall(t, 200, "GET", ns+"/packages/mybind", guestAuth, "", &p)
	if p["name"] != "mybind" || !strings.Contains(string(b), `"actions":[{"name":"echo"`) {
		t.Fatalf("binding get: %s", b)
	}
	json.Unmarshal(b, &bp)
	bparams, _ := bp.Parameters.ToObject()
	json.Unmarshal(bparams, &pm)
	wantParams(t, "binding get", pm, map[string]string{"a": "bind", "b": "bind", "d": "bind"})
	e.mustCall(t, 200, "GET", ns+"/actions/mybind/", guestAuth, "", &list)
	if len(list) != 2 || list[0].Namespace != "guest/utils" {
		t.Fatalf("binding action list %+v", list)
	}
	// A binding holds no actions, binds no binding, and a package does not become one.
	resp, b = e.call(t, "PUT", ns+"/actions/mybind/x", guestAuth, `{"exec":{"kind":"nodejs:20","code":"x"}}`, nil)
	wantError(t, resp, b, 400, msgNotAllowedOnBinding)
	resp, b = e.call(t, "DELETE", ns+"/actions/mybind/echo", guestAuth, "", nil)
	wantError(t, resp, b, 400, msgNotAllowedOnBinding)
	resp, b = e.call(t, "PUT", ns+"/packages/b2", guestAuth, `{"binding":{"namespace":"guest","name":"mybind"}}`, nil)
	wantError(t, resp, b, 400, msgBindingCannotRefBinding)
	resp, b = e.call(t, "PUT", ns+"/packages/b3", guestAuth, `{"binding":{"namespace":"guest","name":"nope"}}`, nil)
	wantError(t, resp, b, 400, msgBindingDoesNotExist)
	resp, b = e.call(t, "PUT", ns+"/packages/utils?overwrite=true", guestAuth, `{"binding":{"namespace":"guest","name":"utils"}}`, nil)
	wantError(t, resp, b, 409, msgPackageCannotBecomeBind)

	// Lists and counts.
	var sums []map[string]any
	e.mustCall(t, 200, "GET", ns+"/packages", guestAuth, "", &sums)
	if len(sums) != 2 || sums[0]["name"] != "mybind" || sums[1]["binding"] != false || sums[0]["parameters"] != nil {
		t.Fatalf("package list %v", sums)
	}
	var count map[string]int
	e.mustCall(t, 200, "GET", ns+"/packages?count=true", guestAuth, "", &count)
	if count["packages"] != 2 {
		t.Fatalf("count %v", count)
	}

	// Delete: a package with actions only by force; a binding any time.
	resp, b = e.call(t, "DELETE", ns+"/packages/utils", guestAuth, "", nil)
	wantError(t, resp, b, 409, "Package not empty (contains 2 entities). Set force param or delete package contents.")
	e.mustCall(t, 200, "DELETE", ns+"/actions/utils/changes", guestAuth, "", nil)
	resp, b = e.call(t, "DELETE", ns+"/packages/utils", guestAuth, "", nil)
	wantError(t, resp, b, 409, "Package not empty (contains 1 entity). Set force param or delete package contents.")
	e.mustCall(t, 200, "DELETE", ns+"/packages/utils?force=true", guestAuth, "", &p)
	if p["name"] != "utils" {
		t.Fatalf("deleted %v", p)
	}
	for _, path := range []string{ns + "/actions/utils/echo", ns + "/actions/mybind/echo", ns + "/packages/utils", ns + "/actions/utils/"} {
		resp, b = e.call(t, "GET", path, guestAuth, "", nil)
		wantError(t, resp, b, 404, msgNotFound)
	}
	e.mustCall(t, 200, "DELETE", ns+"/packages/mybind", guestAuth, "", nil)
	resp, b = e.call(t, "DELETE", ns+"/packages/mybind", guestAuth, "", nil)
	wantError(t, resp, b, 404, msgNotFound)
}

// TestPackagesShared: OpenWhisk's entitlements across namespaces. A published package is
// everyone's to read, list, bind and invoke; a private one, a binding, and anything missing are
// 403 to another namespace with the resource named; writes are the owner's only.
func TestPackagesShared(t *testing.T) {
	e := newEnv(t, Config{})
	guest := "/api/v1/namespaces/guest"
	e.mustCall(t, 200, "PUT", guest+"/packages/shared", guestAuth, `{"publish":true,"parameters":[{"key":"a","value":"pkg"}]}`, nil)
	e.mustCall(t, 200, "PUT", guest+"/packages/secret", guestAuth, `{}`, nil)
	e.mustCall(t, 200, "PUT", guest+"/packages/gbind", guestAuth, `{"publish":true,"binding":{"namespace":"guest","name":"shared"}}`, nil)
	for _, pkg := range []string{"shared", "secret"} {
		e.mustCall(t, 200, "PUT", guest+"/actions/"+pkg+"/echo", guestAuth, `{"exec":{"kind":"nodejs:20","code":"x"},"annotations":[{"key":"provide-api-key","value":true}]}`, nil)
	}

	// Another namespace sees the public package only.
	var sums []map[string]any
	e.mustCall(t, 200, "GET", guest+"/packages", otherAuth, "", &sums)
	if len(sums) != 1 || sums[0]["name"] != "shared" {
		t.Fatalf("public list %v", sums)
	}
	var count map[string]int
	e.mustCall(t, 200, "GET", guest+"/packages?count=true", otherAuth, "", &count)
	if count["packages"] != 1 {
		t.Fatalf("public count %v", count)
	}
	e.mustCall(t, 200, "GET", guest+"/packages/shared", otherAuth, "", nil)
	e.mustCall(t, 200, "GET", guest+"/actions/shared/echo", otherAuth, "", nil)
	e.mustCall(t, 200, "GET", guest+"/actions/shared/", otherAuth, "", nil)
	res := e.result(t, guest+"/actions/shared/echo", otherAuth, `{"b":"invoke"}`)
	wantParams(t, "invoke of a public package's action", res, map[string]string{"a": "pkg", "b": "invoke"})
	m := e.inv.last()
	if m.User.Namespace.Name != "other" || m.Action.Path != "guest/shared" {
		t.Fatalf("message %+v as %s", m.Action, m.User.Namespace.Name)
	}
	// Its action asked for the key: the invoker reads it with the caller's key, which may read it.
	if m.User.AuthKey.APIKey != otherAuth {
		t.Fatalf("key in the message = %q", m.User.AuthKey.APIKey)
	}
	e.mustCall(t, 200, "GET", guest+"/actions/shared/echo?code=true", m.User.AuthKey.APIKey, "", nil)

	// Private, bindings and missing ones are refused, naming the resource.
	for _, c := range []struct{ method, path, what string }{
		{"GET", guest + "/packages/secret", "guest/secret"},
		{"GET", guest + "/packages/gbind", "guest/gbind"},
		{"GET", guest + "/packages/nope", "guest/nope"},
		{"GET", guest + "/actions/secret/echo", "guest/secret"},
		{"POST", guest + "/actions/secret/echo", "guest/secret"},
		{"POST", guest + "/actions/gbind/echo", "guest/gbind"},
		{"GET", guest + "/actions/secret/", "guest/secret"},
		{"PUT", guest + "/packages/shared?overwrite=true", "guest/shared"},
		{"DELETE", guest + "/packages/shared", "guest/shared"},
		{"PUT", guest + "/actions/shared/x", "guest/shared/x"},
		{"DELETE", guest + "/actions/shared/echo", "guest/shared/echo"},
		{"PUT", "/api/v1/namespaces/_/packages/obind", "guest/secret"}, // the body binds guest/secret
	} {
		body := ""
		if c.method == "PUT" {
			body = `{"binding":{"namespace":"guest","name":"secret"},"exec":{"kind":"nodejs:20","code":"x"}}`
		}
		resp, b := e.call(t, c.method, c.path, otherAuth, body, nil)
		wantError(t, resp, b, 403, msgNotAuthorizedToAccess(c.what))
	}
	// The default package stays private as before.
	resp, b := e.call(t, "GET", guest+"/actions/echo", otherAuth, "", nil)
	wantError(t, resp, b, 403, msgNotAuthorized)

	// A binding of the public package: its parameters override, the message names both.
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/_/packages/obind", otherAuth,
		`{"binding":{"namespace":"/guest","name":"shared"},"parameters":[{"key":"a","value":"other"}]}`, nil)
	res = e.result(t, "/api/v1/namespaces/_/actions/obind/echo", otherAuth, "")
	wantParams(t, "invoke through another namespace's binding", res, map[string]string{"a": "other"})
	if m := e.inv.last(); m.Action.Path != "guest/shared" || m.Action.Binding != "other/obind" || m.User.Namespace.Name != "other" {
		t.Fatalf("message %+v as %s", m.Action, m.User.Namespace.Name)
	}
	// Once the package is private again, the binding no longer reaches it.
	e.mustCall(t, 200, "PUT", guest+"/packages/shared?overwrite=true", guestAuth, `{"publish":false}`, nil)
	resp, b = e.call(t, "POST", "/api/v1/namespaces/_/actions/obind/echo", otherAuth, "", nil)
	wantError(t, resp, b, 403, msgNotAuthorizedToAccess("other/obind"))
	resp, b = e.call(t, "GET", "/api/v1/namespaces/_/packages/obind", otherAuth, "", nil)
	wantError(t, resp, b, 403, msgNotAuthorizedToAccess("other/obind"))
	// The owner's own binding of its private package works.
	e.mustCall(t, 200, "PUT", guest+"/packages/own", guestAuth, `{"binding":{"namespace":"guest","name":"secret"}}`, nil)
	e.result(t, guest+"/actions/own/echo", guestAuth, "")
}

// TestPackagesWebActions: /api/v1/web/{ns}/{pkg}/{action} runs a package's action, and a
// binding's with the binding's parameters.
func TestPackagesWebActions(t *testing.T) {
	e := newEnv(t, Config{})
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/guest/packages/site", guestAuth, `{"publish":true,"parameters":[{"key":"who","value":"pkg"}]}`, nil)
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/guest/actions/site/hello", guestAuth,
		`{"exec":{"kind":"nodejs:20","code":"x"},"annotations":[{"key":"web-export","value":true}]}`, nil)
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/guest/actions/site/hidden", guestAuth, `{"exec":{"kind":"nodejs:20","code":"x"}}`, nil)
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/other/packages/ob", otherAuth,
		`{"binding":{"namespace":"guest","name":"site"},"parameters":[{"key":"who","value":"binding"}]}`, nil)

	get := func(path string) (int, map[string]any) {
		resp, b := e.do(t, "GET", path, "", "", nil)
		var out map[string]any
		json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	if st, out := get("/api/v1/web/guest/site/hello.json?q=1"); st != 200 || out["who"] != "pkg" || out["q"] != "1" || out["__ow_method"] != "get" {
		t.Fatalf("packaged web action: %d %v", st, out)
	}
	if m := e.inv.last(); m.Action.Path != "guest/site" || m.User.Namespace.Name != "guest" {
		t.Fatalf("message %+v", m.Action)
	}
	if st, out := get("/api/v1/web/other/ob/hello.json"); st != 200 || out["who"] != "binding" {
		t.Fatalf("web action through a binding: %d %v", st, out)
	}
	if m := e.inv.last(); m.Action.Path != "guest/site" || m.Action.Binding != "other/ob" || m.User.Namespace.Name != "other" {
		t.Fatalf("message %+v as %s", m.Action, m.User.Namespace.Name)
	}
	for _, path := range []string{"/api/v1/web/guest/site/hidden.json", "/api/v1/web/guest/nope/hello.json", "/api/v1/web/guest/site/nope.json",
		"/api/v1/web/guest/default/hello.json", "/api/v1/web/guest/bad$pkg/hello.json"} {
		if st, _ := get(path); st != 404 {
			t.Errorf("%s: %d, want 404", path, st)
		}
	}
	e.mustCall(t, 200, "PUT", "/api/v1/namespaces/guest/packages/site?overwrite=true", guestAuth, `{"publish":false}`, nil)
	if st, _ := get("/api/v1/web/other/ob/hello.json"); st != 403 {
		t.Fatalf("web action through a binding of a package no longer public: %d, want 403", st)
	}
}

// TestClientGoPackages drives packages and bindings with openwhisk-client-go, the library wsk
// is built on.
func TestClientGoPackages(t *testing.T) {
	e := newEnv(t, Config{})
	c := client(t, e, guestAuth)
	yes := true
	created, _, err := c.Packages.Insert(&owhisk.Package{Name: "utils", Namespace: "_", Publish: &yes,
		Parameters: owhisk.KeyValueArr{{Key: "greeting", Value: "hello"}}}, false)
	if err != nil || created.Name != "utils" || created.Namespace != "guest" || created.Version != "0.0.1" {
		t.Fatalf("create: %+v %v", created, err)
	}
	if _, _, err := c.Packages.Insert(&owhisk.Package{Name: "utils", Namespace: "_"}, false); err == nil || wskErrStatus(t, err) != 409 {
		t.Fatalf("create again: %v", err)
	}
	updated, _, err := c.Packages.Insert(&owhisk.Package{Name: "utils", Namespace: "_",
		Annotations: owhisk.KeyValueArr{{Key: "description", Value: "tools"}}}, true)
	if err != nil || updated.Version != "0.0.2" || updated.Parameters.GetValue("greeting") != "hello" || *updated.Publish != true {
		t.Fatalf("update: %+v %v", updated, err)
	}
	code := "function main(p) { return p }"
	if _, _, err := c.Actions.Insert(&owhisk.Action{Name: "utils/echo", Namespace: "_", Exec: &owhisk.Exec{Kind: "nodejs:20", Code: &code},
		Parameters: owhisk.KeyValueArr{{Key: "name", Value: "action"}}}, false); err != nil {
		t.Fatalf("action create: %v", err)
	}
	got, _, err := c.Packages.Get("utils")
	if err != nil || len(got.Actions) != 1 || got.Actions[0].Name != "echo" || got.Annotations.GetValue("description") != "tools" {
		t.Fatalf("get: %+v %v", got, err)
	}
	list, _, err := c.Packages.List(&owhisk.PackageListOptions{Limit: 30})
	if err != nil || len(list) != 1 || list[0].Name != "utils" {
		t.Fatalf("list: %+v %v", list, err)
	}
	a, _, err := c.Actions.Get("utils/echo", false)
	if err != nil || a.Namespace != "guest/utils" || a.Parameters.GetValue("greeting") != "hello" {
		t.Fatalf("action get: %+v %v", a, err)
	}
	res, _, err := c.Actions.Invoke("utils/echo", map[string]any{"who": "go"}, true, true)
	if m, _ := res.(map[string]any); err != nil || m["greeting"] != "hello" || m["name"] != "action" || m["who"] != "go" {
		t.Fatalf("invoke: %v %v", res, err)
	}

	// Bindings, as `wsk package bind` sends them.
	if _, _, err := c.Packages.Insert(&owhisk.BindingPackage{Name: "mine", Namespace: "_",
		Binding: owhisk.Binding{Namespace: "guest", Name: "utils"}, Parameters: owhisk.KeyValueArr{{Key: "greeting", Value: "hi"}}}, false); err != nil {
		t.Fatalf("bind: %v", err)
	}
	res, _, err = c.Actions.Invoke("mine/echo", nil, true, true)
	if m, _ := res.(map[string]any); err != nil || m["greeting"] != "hi" {
		t.Fatalf("invoke through binding: %v %v", res, err)
	}
	b, _, err := c.Packages.Get("mine")
	if err != nil || b.Binding == nil || b.Binding.Name != "utils" || b.Parameters.GetValue("greeting") != "hi" {
		t.Fatalf("binding get: %+v %v", b, err)
	}
	// Another namespace: the public package binds, a private one does not.
	o := client(t, e, otherAuth)
	if _, _, err := o.Packages.Insert(&owhisk.BindingPackage{Name: "theirs", Namespace: "_",
		Binding: owhisk.Binding{Namespace: "guest", Name: "utils"}}, false); err != nil {
		t.Fatalf("bind another namespace's public package: %v", err)
	}
	res, _, err = o.Actions.Invoke("theirs/echo", nil, true, true)
	if m, _ := res.(map[string]any); err != nil || m["greeting"] != "hello" {
		t.Fatalf("invoke through the other namespace's binding: %v %v", res, err)
	}
	if _, _, err := c.Packages.Insert(&owhisk.Package{Name: "private", Namespace: "_"}, false); err != nil {
		t.Fatal(err)
	}
	_, _, err = o.Packages.Insert(&owhisk.BindingPackage{Name: "nope", Namespace: "_", Binding: owhisk.Binding{Namespace: "guest", Name: "private"}}, false)
	if err == nil || wskErrStatus(t, err) != 403 || !strings.Contains(err.Error(), "not authorized to access 'guest/private'") {
		t.Fatalf("bind a private package: %v", err)
	}
	og, err := owhisk.NewClient(http.DefaultClient, &owhisk.Config{Host: e.srv.URL, AuthToken: otherAuth, Namespace: "guest"})
	if err != nil {
		t.Fatal(err)
	}
	public, _, err := og.Packages.List(&owhisk.PackageListOptions{Limit: 30})
	if err != nil || len(public) != 1 || public[0].Name != "utils" {
		t.Fatalf("another namespace's packages: %+v %v", public, err)
	}

	// Delete: refused while it holds actions, then gone.
	if _, err := c.Packages.Delete("utils"); err == nil || wskErrStatus(t, err) != 409 {
		t.Fatalf("delete non-empty: %v", err)
	}
	if _, err := c.Actions.Delete("utils/echo"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mine", "utils"} {
		if _, err := c.Packages.Delete(name); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
	if _, _, err := c.Packages.Get("utils"); err == nil || wskErrStatus(t, err) != 404 {
		t.Fatalf("get after delete: %v", err)
	}
}
