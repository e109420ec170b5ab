package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

func TestParseWebPath(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		want webTarget
	}{
		{"/guest/default/hello", true, webTarget{"guest", "", "hello", "http", ""}},
		{"/guest/default/hello.json", true, webTarget{"guest", "", "hello", "json", ""}},
		{"/guest/default/hello.svg/a/b", true, webTarget{"guest", "", "hello", "svg", "/a/b"}},
		{"/guest/default/my.action", true, webTarget{"guest", "", "my.action", "http", ""}},
		{"/guest/pkg/hello.text", true, webTarget{"guest", "pkg", "hello", "text", ""}},
		{"/guest/default", false, webTarget{}},
		{"/guest//hello", false, webTarget{}},
	} {
		got, ok := parseWebPath(c.in)
		if ok != c.ok || ok && got != c.want {
			t.Errorf("parseWebPath(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestHTTPResponse(t *testing.T) {
	png := []byte{0x89, 'P', 'N', 'G', 0, 1, 2}
	for _, c := range []struct {
		name, result string
		status       int
		ctype        string
		body         string
		errText      string
	}{
		{"html default", `{"body":"<b>hi</b>"}`, 200, "text/html; charset=UTF-8", "<b>hi</b>", ""},
		{"no body", `{"headers":{"X-A":"1"}}`, 204, "", "", ""},
		{"status string", `{"statusCode":"201","body":"x"}`, 201, "text/html; charset=UTF-8", "x", ""},
		{"object body", `{"body":{"a":1}}`, 200, "application/json", `{"a":1}`, ""},
		{"object body +json", `{"headers":{"content-type":"application/vnd.x+json"},"body":[1]}`, 200, "application/vnd.x+json", `[1]`, ""},
		{"object body text type", `{"headers":{"Content-Type":"text/plain"},"body":{"a":1}}`, 0, "", "", msgContentTypeMisfit},
		{"binary", `{"headers":{"Content-Type":"image/png"},"body":"` + base64.StdEncoding.EncodeToString(png) + `"}`, 200, "image/png", string(png), ""},
		{"binary not base64", `{"headers":{"Content-Type":"image/png"},"body":"%%%"}`, 0, "", "", msgInvalidMedia("message/http")},
		{"json base64", `{"headers":{"Content-Type":"application/json"},"body":"` + base64.StdEncoding.EncodeToString([]byte(`{"z":2}`)) + `"}`, 200, "application/json", `{"z":2}`, ""},
		{"json plain string", `{"headers":{"Content-Type":"application/json"},"body":"{\"z\":3}"}`, 200, "application/json", `{"z":3}`, ""},
		{"not an object", `[1]`, 0, "", "", msgInvalidMedia("message/http")},
		{"bad status", `{"statusCode":"abc"}`, 0, "", "", msgInvalidMedia("message/http")},
		{"status out of range", `{"statusCode":42}`, 0, "", "", msgInvalidMedia("message/http")},
		{"bad header value", `{"headers":{"X":{"a":1}}}`, 0, "", "", msgInvalidMedia("message/http")},
		{"header injection", `{"headers":{"X":"a\r\nB: c"}}`, 0, "", "", msgInvalidMedia("message/http")},
	} {
		r, err := httpResponse(json.RawMessage(c.result))
		if c.errText != "" {
			if err == nil || err.Error() != c.errText {
				t.Errorf("%s: err = %v, want %q", c.name, err, c.errText)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if r.Status != c.status || r.Header.Get("Content-Type") != c.ctype || string(r.Body) != c.body {
			t.Errorf("%s: got %d %q %q, want %d %q %q", c.name, r.Status, r.Header.Get("Content-Type"), r.Body, c.status, c.ctype, c.body)
		}
	}
	r, err := httpResponse(json.RawMessage(`{"headers":{"Set-Cookie":["a=1","b=2"],"X-N":5,"X-B":true},"body":""}`))
	if err != nil || len(r.Header.Values("Set-Cookie")) != 2 || r.Header.Get("X-N") != "5" || r.Header.Get("X-B") != "true" {
		t.Fatalf("headers: %+v %v", r.Header, err)
	}
}

func TestWebParams(t *testing.T) {
	act := &whisk.Action{Name: "a", Parameters: whisk.Parameters{{Key: "p", Value: json.RawMessage(`1`)}}}
	final := &whisk.Action{Name: "a", Parameters: act.Parameters, Annotations: whisk.Parameters{{Key: "final", Value: json.RawMessage(`true`)}}}
	base := webRequest{Method: "post", Headers: map[string]string{"x": "1"}, Path: "/x", Query: map[string][]string{"q": {"1"}}, RawQuery: "q=1"}
	with := func(ct, body string) webRequest { r := base; r.ContentType = ct; r.Body = []byte(body); return r }
	for _, c := range []struct {
		name string
		a    *whisk.Action
		r    webRequest
		raw  bool
		want map[string]string // key -> JSON
		err  string
	}{
		{"json object", act, with("application/json", `{"b":{"c":2}}`), false,
			map[string]string{"q": `"1"`, "b": `{"c":2}`, "__ow_method": `"post"`, "__ow_path": `"/x"`, "__ow_headers": `{"x":"1"}`}, ""},
		{"json array", act, with("application/json", `[1,2]`), false, map[string]string{"__ow_body": `[1,2]`}, ""},
		{"form", act, with("application/x-www-form-urlencoded", `f=v&g=w`), false, map[string]string{"f": `"v"`, "g": `"w"`}, ""},
		{"text", act, with("text/plain", `hello`), false, map[string]string{"__ow_body": `"hello"`}, ""},
		{"binary", act, with("application/octet-stream", "\x00\x01"), false, map[string]string{"__ow_body": `"AAE="`}, ""},
		{"raw json", act, with("application/json", `{"a":1}`), true,
			map[string]string{"__ow_body": `"eyJhIjoxfQ=="`, "__ow_query": `"q=1"`}, ""},
		{"raw text", act, with("text/plain", `hi`), true, map[string]string{"__ow_body": `"hi"`}, ""},
		{"raw empty", act, with("", ``), true, map[string]string{"__ow_body": `""`}, ""},
		{"reserved in body", act, with("application/json", `{"__ow_method":"x"}`), false, nil, msgParamsNotAllowed},
		{"reserved in query", act, webRequest{Query: map[string][]string{"__ow_user": {"x"}}}, false, nil, msgParamsNotAllowed},
		{"final override", final, with("application/json", `{"p":2}`), false, nil, msgParamsNotAllowed},
		{"malformed json", act, with("application/json", `{"a":`), false, nil, "The request content was malformed: the body is not valid JSON."},
	} {
		got, err := webParams(c.a, c.r, c.raw)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("%s: err = %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		for k, v := range c.want {
			if string(got[k]) != v {
				t.Errorf("%s: %s = %s, want %s", c.name, k, got[k], v)
			}
		}
		if c.raw {
			if _, ok := got["q"]; ok {
				t.Errorf("%s: raw mode merged the query", c.name)
			}
		}
		if _, ok := got["__ow_user"]; ok {
			t.Errorf("%s: __ow_user without auth", c.name)
		}
	}
}

// webEnv has web-exported actions whose result is the "canned" parameter
// (with status "cannedStatus").
func webEnv(t *testing.T) *env {
	e := newEnv(t, Config{BlockingWait: 200 * time.Millisecond})
	canned := func(content map[string]json.RawMessage) (int, json.RawMessage) {
		st := 0
		if s, ok := content["cannedStatus"]; ok {
			json.Unmarshal(s, &st)
		}
		if r, ok := content["canned"]; ok {
			return st, r
		}
		return st, mustJSON(content)
	}
	for _, n := range []string{"echo", "page", "raw", "secret", "authd", "hidden", "custom", "devfail", "appfail", "slow"} {
		e.inv.set(n, canned)
	}
	e.inv.slow["slow"] = true
	web := `{"key":"web-export","value":true}`
	put := func(name, params, ann string) {
		e.putAction(t, name, `{"exec":{"kind":"nodejs:20","code":"x"},"parameters":[`+params+`],"annotations":[`+ann+`]}`)
	}
	put("echo", ``, web)
	put("page", `{"key":"canned","value":{"html":"<p>hi</p>","svg":"<svg/>","text":"plain","body":"<b>b</b>","nested":{"k":"v"},"headers":{"X-Custom":"yes"},"statusCode":201}}`, web)
	put("raw", ``, web+`,{"key":"raw-http","value":true}`)
	put("secret", ``, web+`,{"key":"require-whisk-auth","value":"s3cr3t"}`)
	put("authd", ``, web+`,{"key":"require-whisk-auth","value":true}`)
	put("hidden", ``, ``)
	put("custom", `{"key":"canned","value":{"statusCode":204}}`, web+`,{"key":"web-custom-options","value":true}`)
	put("devfail", `{"key":"canned","value":{"error":"crash"}},{"key":"cannedStatus","value":2}`, web)
	put("appfail", `{"key":"canned","value":{"error":{"statusCode":418,"body":"teapot"}}},{"key":"cannedStatus","value":1}`, web)
	put("slow", ``, web)
	return e
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestWebActionsOverHTTP(t *testing.T) {
	e := webEnv(t)
	get := func(path string, hdr ...string) (*http.Response, string) {
		resp, body := e.do(t, "GET", "/api/v1/web/guest/default/"+path, "", "", nil, hdr...)
		return resp, string(body)
	}
	for _, c := range []struct {
		path, ctype, body string
		status            int
	}{
		{"page", "text/html; charset=UTF-8", "<b>b</b>", 201},
		{"page.http", "text/html; charset=UTF-8", "<b>b</b>", 201},
		{"page.html", "text/html; charset=UTF-8", "<p>hi</p>", 200},
		{"page.svg", "image/svg+xml", "<svg/>", 200},
		{"page.text", "text/plain; charset=UTF-8", "plain", 200},
		{"page.json/nested", "application/json", `{"k":"v"}`, 200},
		{"page.text/nested/k", "text/plain; charset=UTF-8", "v", 200},
		{"appfail", "text/html; charset=UTF-8", "teapot", 418},
	} {
		resp, body := get(c.path)
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != c.ctype || body != c.body {
			t.Errorf("%s: %d %q %q; want %d %q %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.status, c.ctype, c.body)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get(HeaderActivationID) == "" {
			t.Errorf("%s: CORS or activation id header missing: %v", c.path, resp.Header)
		}
	}
	if resp, _ := get("page"); resp.Header.Get("X-Custom") != "yes" {
		t.Error("result headers not applied")
	}
	// The action runs as its owner, with the request's context.
	// (.http on the echo result, an object without body, is a 204.)
	resp, body := e.do(t, "POST", "/api/v1/web/guest/default/echo/some/path?q=1", "", "application/json", strings.NewReader(`{"b":2}`))
	var got map[string]any
	if resp.StatusCode != 204 || json.Unmarshal(e.inv.last().Content, &got) != nil {
		t.Fatalf("echo: %d %s", resp.StatusCode, body)
	}
	if got["q"] != "1" || got["b"] != 2.0 || got["__ow_method"] != "post" || got["__ow_path"] != "/some/path" {
		t.Fatalf("echo params: %v", got)
	}
	if h, _ := got["__ow_headers"].(map[string]any); h["content-type"] != "application/json" {
		t.Fatalf("__ow_headers: %v", got["__ow_headers"])
	}
	// The owner's key is not in the store (only its hash), so it is not in the message either.
	if e.inv.last().User.Namespace.Name != "guest" || e.inv.last().User.Namespace.UUID != guestUUID || e.inv.last().User.AuthKey.APIKey != "" {
		t.Fatalf("web action did not run as its owner: %+v", e.inv.last().User)
	}
	// __ow_user only with valid Basic auth, and the key never reaches the action.
	resp, body = e.do(t, "GET", "/api/v1/web/guest/default/echo.json", otherAuth, "", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"__ow_user":"other"`) || strings.Contains(string(body), otherKey) {
		t.Fatalf("__ow_user: %d %s", resp.StatusCode, body)
	}
	// raw-http.
	resp, body = e.do(t, "PUT", "/api/v1/web/guest/default/raw.json?x=1&y=2", "", "text/plain", strings.NewReader("hello"))
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"__ow_query":"x=1\u0026y=2"`) && !strings.Contains(string(body), `"__ow_query":"x=1&y=2"`) ||
		!strings.Contains(string(body), `"__ow_body":"hello"`) || strings.Contains(string(body), `"x":"1"`) {
		t.Fatalf("raw: %d %s", resp.StatusCode, body)
	}

	// Errors.
	for _, c := range []struct {
		method, path, auth string
		hdr                []string
		status             int
		text               string
	}{
		{"GET", "hidden", "", nil, 404, msgNotFound},
		{"GET", "nosuch", "", nil, 404, msgNotFound},
		{"GET", "../other/default/echo", "", nil, 404, ""},
		{"GET", "devfail", "", nil, 400, msgErrorProcessing},
		{"GET", "secret", "", nil, 401, msgUnauthorizedWeb},
		{"GET", "secret", "", []string{"X-Require-Whisk-Auth", "wrong"}, 401, msgUnauthorizedWeb},
		{"GET", "authd", "", nil, 401, msgUnauthorizedWeb},
		{"GET", "authd", guestUUID + ":bad", nil, 401, msgUnauthorizedWeb},
		{"GET", "echo?__ow_method=x", "", nil, 400, msgParamsNotAllowed},
		{"GET", "slow", "", nil, 202, msgResponseNotReady},
	} {
		resp, body := e.do(t, c.method, "/api/v1/web/guest/default/"+c.path, c.auth, "", nil, c.hdr...)
		if c.text == "" {
			if resp.StatusCode != c.status {
				t.Errorf("%s: %d, want %d", c.path, resp.StatusCode, c.status)
			}
			continue
		}
		wantError(t, resp, body, c.status, c.text)
	}
	// Passing checks.
	if resp, _ := get("secret.json", "X-Require-Whisk-Auth", "s3cr3t"); resp.StatusCode != 200 {
		t.Errorf("secret with header: %d", resp.StatusCode)
	}
	if resp, _ := e.do(t, "GET", "/api/v1/web/guest/default/authd.json", guestAuth, "", nil); resp.StatusCode != 200 {
		t.Errorf("authd with auth: %d", resp.StatusCode)
	}
	// OPTIONS: answered by the controller unless web-custom-options.
	resp, body = e.do(t, "OPTIONS", "/api/v1/web/guest/default/echo", "", "", nil, "Access-Control-Request-Headers", "X-Foo")
	if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Access-Control-Allow-Headers") != "X-Foo" {
		t.Fatalf("OPTIONS: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	n := len(e.inv.msgs)
	resp, _ = e.do(t, "OPTIONS", "/api/v1/web/guest/default/custom", "", "", nil)
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "" || len(e.inv.msgs) != n+1 {
		t.Fatalf("custom OPTIONS: %d %v", resp.StatusCode, resp.Header)
	}
	// Oversize body.
	resp, body = e.do(t, "POST", "/api/v1/web/guest/default/echo", "", "text/plain", strings.NewReader(strings.Repeat("x", MaxPayloadBytes+1)))
	wantError(t, resp, body, 413, "")
}
