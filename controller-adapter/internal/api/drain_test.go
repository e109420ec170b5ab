package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDrainGate: once the gate drains, invocations and trigger fires answer 503 with Retry-After
// and OpenWhisk's body, web actions too, while reads keep working and /ready answers 503; an
// invocation admitted before keeps waiting until the gate expires, and then gets 202 with its
// activation id; Idle closes once it is answered.
func TestDrainGate(t *testing.T) {
	gate := NewGate()
	e := newEnv(t, Config{Gate: gate})
	e.putAction(t, "slow", `{"exec":{"kind":"nodejs:20","code":"x"}}`)
	e.putAction(t, "web", `{"exec":{"kind":"nodejs:20","code":"x"},"annotations":[{"key":"web-export","value":true}]}`)
	e.inv.slow["slow"] = true

	if resp, b := e.do(t, http.MethodGet, "/ready", "", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("/ready before the drain: %d %s", resp.StatusCode, b)
	}
	type answer struct {
		status int
		body   []byte
		id     string
	}
	admitted := make(chan answer, 1)
	go func() {
		resp, b := e.do(t, http.MethodPost, "/api/v1/namespaces/_/actions/slow?blocking=true", guestAuth, "application/json", strings.NewReader(`{}`))
		admitted <- answer{resp.StatusCode, b, resp.Header.Get(HeaderActivationID)}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for gate.InFlight() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the blocking invoke was not admitted")
		}
		time.Sleep(5 * time.Millisecond)
	}

	gate.Drain()
	for _, r := range []struct{ method, path string }{
		{http.MethodPost, "/api/v1/namespaces/_/actions/slow?blocking=true"},
		{http.MethodPost, "/api/v1/namespaces/_/actions/slow"},
		{http.MethodPost, "/api/v1/namespaces/guest/triggers/t"},
		{http.MethodGet, "/api/v1/web/guest/default/web.json"},
		{http.MethodPost, "/api/v1/web/guest/default/web.json"},
	} {
		resp, b := e.do(t, r.method, r.path, guestAuth, "application/json", strings.NewReader(`{}`))
		wantError(t, resp, b, http.StatusServiceUnavailable, msgUnavailable)
		if got := resp.Header.Get("Retry-After"); got != drainRetryAfter {
			t.Errorf("%s %s: Retry-After %q, want %q", r.method, r.path, got, drainRetryAfter)
		}
	}
	for _, path := range []string{"/api/v1/namespaces/_/actions/slow", "/api/v1/namespaces/_/activations", "/ping"} {
		if resp, b := e.do(t, http.MethodGet, path, guestAuth, "", nil); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s while draining: %d %s", path, resp.StatusCode, b)
		}
	}
	resp, b := e.do(t, http.MethodGet, "/ready", "", "", nil)
	wantError(t, resp, b, http.StatusServiceUnavailable, msgDraining)

	select {
	case a := <-admitted:
		t.Fatalf("the admitted invoke was answered before the gate expired: %d %s", a.status, a.body)
	case <-gate.Idle():
		t.Fatal("Idle closed with an invocation in flight")
	case <-time.After(100 * time.Millisecond):
	}
	gate.Expire()
	a := <-admitted
	var body struct {
		ActivationID string `json:"activationId"`
	}
	if err := json.Unmarshal(a.body, &body); a.status != http.StatusAccepted || err != nil || body.ActivationID == "" || body.ActivationID != a.id {
		t.Fatalf("the admitted invoke after Expire: %d %s (header id %q), want 202 with its activation id", a.status, a.body, a.id)
	}
	select {
	case <-gate.Idle():
	case <-time.After(5 * time.Second):
		t.Fatalf("Idle not closed after the last invocation was answered (in flight: %d)", gate.InFlight())
	}
}
