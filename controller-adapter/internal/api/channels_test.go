package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/teemate/platform/invoker/whisk"
)

// TestInternalEndpointsNeedTheInvokerToken: every /internal route answers 401 without the token or
// with a wrong one, identically whether the target exists or not (nothing leaks), and works with it.
func TestInternalEndpointsNeedTheInvokerToken(t *testing.T) {
	e := newEnv(t, Config{})
	e.putAction(t, "secret", `{"exec":{"kind":"nodejs:20","code":"function main(){return {k:'tenant code'}}"}}`)
	paths := []string{"/internal/v1/actions/guest/secret", "/internal/v1/actions/guest/nosuch", "/internal/v1/actions/nosuch/x"}
	var first []byte
	for _, p := range paths {
		for _, tok := range []string{"", "wrong", token + "x", strings.ToUpper(token)} {
			hdr := []string{}
			if tok != "" {
				hdr = []string{"X-Teemate-Invoker-Token", tok}
			}
			resp, body := e.do(t, "GET", p+"?code=true", "", "", nil, hdr...)
			wantError(t, resp, body, http.StatusUnauthorized, msgBadCredentials)
			if strings.Contains(string(body), "tenant code") || strings.Contains(string(body), "secret") {
				t.Fatalf("401 body leaks: %s", body)
			}
			var b map[string]string
			_ = json.Unmarshal(body, &b)
			delete(b, "code") // the transaction id differs per request
			got, _ := json.Marshal(b)
			if first == nil {
				first = got
			} else if string(got) != string(first) {
				t.Fatalf("401 bodies differ (%s vs %s): they tell what exists", got, first)
			}
		}
	}
	// A tenant's own API key is no invoker token.
	resp, body := e.do(t, "GET", paths[0], guestAuth, "", nil)
	wantError(t, resp, body, http.StatusUnauthorized, "")

	resp, body = e.do(t, "GET", paths[0]+"?code=true", "", "", nil, "X-Teemate-Invoker-Token", token)
	var a whisk.Action
	if resp.StatusCode != 200 || json.Unmarshal(body, &a) != nil || a.Name != "secret" || a.Revision == "" {
		t.Fatalf("with the token: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "GET", paths[1], "", "", nil, "X-Teemate-Invoker-Token", token)
	wantError(t, resp, body, http.StatusNotFound, "")
}

// TestKeyOnlyForActionsThatAskForIt: the ActivationMessage carries the invoking user's key only
// when the action has provide-api-key true (or, as in OpenWhisk, no such annotation); otherwise
// "authkey":{}, so the Kafka log holds no key for it.
func TestKeyOnlyForActionsThatAskForIt(t *testing.T) {
	e := newEnv(t, Config{})
	e.putAction(t, "nokey", `{"exec":{"kind":"nodejs:20","code":"function main(){return {}}"}}`)
	e.putAction(t, "withkey", `{"exec":{"kind":"nodejs:20","code":"function main(){return {}}"},"annotations":[{"key":"provide-api-key","value":true}]}`)
	for _, c := range []struct {
		name string
		want string
	}{{"nokey", `{}`}, {"withkey", `{"api_key":"` + guestAuth + `"}`}} {
		resp, body := e.do(t, "POST", "/api/v1/namespaces/_/actions/"+c.name+"?blocking=true", guestAuth, "application/json", strings.NewReader(`{"p":1}`))
		if resp.StatusCode != 200 {
			t.Fatalf("invoke %s: %d %s", c.name, resp.StatusCode, body)
		}
		raw, err := e.inv.last().Serialize()
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			User struct {
				AuthKey json.RawMessage `json:"authkey"`
			} `json:"user"`
		}
		if err := json.Unmarshal(raw, &m); err != nil || string(m.User.AuthKey) != c.want {
			t.Errorf("%s: authkey = %s, want %s", c.name, m.User.AuthKey, c.want)
		}
		if c.want == "{}" && strings.Contains(string(raw), guestKey) {
			t.Errorf("%s: the message holds the key: %s", c.name, raw)
		}
	}
}

// TestWebActionOwnerKey: a web action runs as its owner; the store cannot give the owner's key
// back, so the action gets it (when it asks) only when the owner itself calls with its key.
func TestWebActionOwnerKey(t *testing.T) {
	e := newEnv(t, Config{})
	e.putAction(t, "wk", `{"exec":{"kind":"nodejs:20","code":"function main(){return {}}"},"annotations":[{"key":"web-export","value":true},{"key":"provide-api-key","value":true}]}`)
	for _, c := range []struct {
		who  string
		auth string
		want string
	}{{"anonymous", "", ""}, {"another tenant", otherAuth, ""}, {"the owner", guestAuth, guestAuth}} {
		resp, body := e.do(t, "GET", "/api/v1/web/guest/default/wk.json", c.auth, "", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", c.who, resp.StatusCode, body)
		}
		if got := e.inv.last().User.AuthKey.APIKey; got != c.want {
			t.Errorf("%s: key in the message %q, want %q", c.who, got, c.want)
		}
	}
}
