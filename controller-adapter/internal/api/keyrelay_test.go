package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func (e *env) setStates(states ...string) {
	e.inv.mu.Lock()
	defer e.inv.mu.Unlock()
	e.inv.states = states
}

// internal sends an invoker's request with the invoker token.
func (e *env) internal(t *testing.T, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	var r *strings.Reader
	if body != "" {
		r = strings.NewReader(body)
	} else {
		r = strings.NewReader("")
	}
	return e.do(t, method, path, "", "application/json", r, invokerTokenHeader, token)
}

func TestKeyRelay_OneCanonicalKidWhilePublisherHealthy(t *testing.T) {
	e := newEnv(t, Config{})
	e.setStates("up", "up")
	first := simulatedEvidence(t, "nodejs:20")
	other := simulatedEvidence(t, "nodejs:20")

	resp, body := e.do(t, http.MethodPut, "/internal/v1/evidence/nodejs:20?invoker=0", "", "application/json",
		bytes.NewReader(first), invokerTokenHeader, token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	// Invoker 1 sees who holds the key.
	resp, body = e.internal(t, http.MethodGet, "/internal/v1/evidence/nodejs:20", "")
	var pub struct {
		Invoker  int             `json:"invoker"`
		Healthy  bool            `json:"healthy"`
		Evidence json.RawMessage `json:"evidence"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &pub) != nil {
		t.Fatalf("internal evidence: %d %s", resp.StatusCode, body)
	}
	if pub.Invoker != 0 || !pub.Healthy || !bytes.Equal(pub.Evidence, first) {
		t.Fatalf("internal evidence = %+v, want invoker 0, healthy, the published bytes", pub)
	}

	// Another kid from invoker 1 while invoker 0 is healthy: 409, and the first stays served.
	resp, body = e.do(t, http.MethodPut, "/internal/v1/evidence/nodejs:20?invoker=1", "", "application/json",
		bytes.NewReader(other), invokerTokenHeader, token)
	wantError(t, resp, body, http.StatusConflict, "")
	if !strings.Contains(string(body), "which invoker0 holds and is healthy") {
		t.Errorf("409 text %s does not say who holds the key", body)
	}
	// The same kid from invoker 1 is fine (it took the key): both hold it now, and each is told
	// of the other.
	resp, body = e.do(t, http.MethodPut, "/internal/v1/evidence/nodejs:20?invoker=1", "", "application/json",
		bytes.NewReader(first), invokerTokenHeader, token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("same kid from invoker 1: %d %s", resp.StatusCode, body)
	}
	for self, want := range map[int]int{0: 1, 1: 0, 2: 0} {
		resp, body = e.internal(t, http.MethodGet, fmt.Sprintf("/internal/v1/evidence/nodejs:20?invoker=%d", self), "")
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &pub) != nil || pub.Invoker != want || !pub.Healthy {
			t.Fatalf("holder for invoker%d: %d %s, want invoker%d", self, resp.StatusCode, body, want)
		}
	}
	// A new kid from invoker 0 (a rotation) while invoker 1 holds the old one: refused too.
	rotated := simulatedEvidence(t, "nodejs:20")
	resp, body = e.do(t, http.MethodPut, "/internal/v1/evidence/nodejs:20?invoker=0", "", "application/json",
		bytes.NewReader(rotated), invokerTokenHeader, token)
	wantError(t, resp, body, http.StatusConflict, "")
	// Once no other holder is healthy, a new kid is accepted and its invoker holds the key.
	e.setStates("up", "unresponsive", "up")
	resp, body = e.do(t, http.MethodPut, "/internal/v1/evidence/nodejs:20?invoker=0", "", "application/json",
		bytes.NewReader(rotated), invokerTokenHeader, token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("no other holder: %d %s", resp.StatusCode, body)
	}
	e.setStates("unresponsive", "up", "up")
	resp, body = e.internal(t, http.MethodGet, "/internal/v1/evidence/nodejs:20?invoker=2", "")
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &pub) != nil || pub.Invoker != -1 || pub.Healthy || !bytes.Equal(pub.Evidence, rotated) {
		t.Fatalf("holder gone: %d %s, want no healthy holder", resp.StatusCode, body)
	}
	resp, body = e.do(t, http.MethodPut, "/internal/v1/evidence/nodejs:20?invoker=2", "", "application/json",
		bytes.NewReader(other), invokerTokenHeader, token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("holder gone, invoker 2 publishes its own: %d %s", resp.StatusCode, body)
	}
	resp, body = e.internal(t, http.MethodGet, "/internal/v1/evidence/python:3", "")
	wantError(t, resp, body, http.StatusNotFound, "No enclave of image python:3 has published evidence.")
}

func TestKeyRelay_RequestOfferRoundTrip(t *testing.T) {
	e := newEnv(t, Config{})
	e.setStates("up", "up")
	resp, body := e.do(t, http.MethodPut, "/internal/v1/evidence/nodejs:20?invoker=0", "", "application/json",
		bytes.NewReader(simulatedEvidence(t, "nodejs:20")), invokerTokenHeader, token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}

	// Invoker 0 long-polls before the request exists: the request wakes it.
	var wg sync.WaitGroup
	var polled []byte
	wg.Go(func() {
		resp, b := e.internal(t, http.MethodGet, "/internal/v1/keys/requests?invoker=0&timeout=10000", "")
		if resp.StatusCode != http.StatusOK {
			t.Errorf("poll: %d %s", resp.StatusCode, b)
		}
		polled = b
	})
	time.Sleep(50 * time.Millisecond)
	resp, body = e.internal(t, http.MethodPost, "/internal/v1/keys/requests?invoker=1",
		`{"image":"nodejs:20","request":{"evidence":{"kid":"k"},"pub":"AAAA"}}`)
	var created struct {
		ID      string `json:"id"`
		Invoker int    `json:"invoker"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &created) != nil || created.ID == "" || created.Invoker != 0 {
		t.Fatalf("request: %d %s", resp.StatusCode, body)
	}
	wg.Wait()
	var list struct {
		Requests []struct {
			ID      string          `json:"id"`
			Image   string          `json:"image"`
			Invoker int             `json:"invoker"`
			Request json.RawMessage `json:"request"`
		} `json:"requests"`
	}
	if json.Unmarshal(polled, &list) != nil || len(list.Requests) != 1 || list.Requests[0].ID != created.ID ||
		list.Requests[0].Invoker != 1 || string(list.Requests[0].Request) != `{"evidence":{"kid":"k"},"pub":"AAAA"}` {
		t.Fatalf("polled %s", polled)
	}
	// Handed out once: the next poll times out empty.
	resp, body = e.internal(t, http.MethodGet, "/internal/v1/keys/requests?invoker=0&timeout=50", "")
	if resp.StatusCode != http.StatusOK || string(body) != `{"requests":[]}` {
		t.Fatalf("second poll: %d %s", resp.StatusCode, body)
	}
	// No answer yet: 202.
	resp, body = e.internal(t, http.MethodGet, "/internal/v1/keys/requests/"+created.ID+"?invoker=1&timeout=50", "")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("await before the answer: %d %s", resp.StatusCode, body)
	}
	// Only the publisher answers; only the requester reads.
	resp, body = e.internal(t, http.MethodPut, "/internal/v1/keys/requests/"+created.ID+"?invoker=1", `{"offer":{"ct":"x"}}`)
	wantError(t, resp, body, http.StatusForbidden, "The key request is for invoker0, not invoker1.")
	resp, body = e.internal(t, http.MethodGet, "/internal/v1/keys/requests/"+created.ID+"?invoker=0&timeout=0", "")
	wantError(t, resp, body, http.StatusForbidden, "The key request is invoker1's, not invoker0's.")

	// The requester waits; the answer wakes it.
	var awaited []byte
	wg.Go(func() {
		resp, b := e.internal(t, http.MethodGet, "/internal/v1/keys/requests/"+created.ID+"?invoker=1&timeout=10000", "")
		if resp.StatusCode != http.StatusOK {
			t.Errorf("await: %d %s", resp.StatusCode, b)
		}
		awaited = b
	})
	time.Sleep(50 * time.Millisecond)
	resp, body = e.internal(t, http.MethodPut, "/internal/v1/keys/requests/"+created.ID+"?invoker=0", `{"offer":{"ct":"x"}}`)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("answer: %d %s", resp.StatusCode, body)
	}
	wg.Wait()
	if string(awaited) != `{"offer":{"ct":"x"}}` {
		t.Fatalf("awaited %s", awaited)
	}
	// Read once: then it is gone.
	resp, body = e.internal(t, http.MethodGet, "/internal/v1/keys/requests/"+created.ID+"?invoker=1&timeout=0", "")
	wantError(t, resp, body, http.StatusNotFound, "The key request does not exist or has expired.")
}

func TestKeyRelay_Refusals(t *testing.T) {
	e := newEnv(t, Config{})
	e.setStates("up", "down")
	resp, body := e.do(t, http.MethodPut, "/internal/v1/evidence/nodejs:20?invoker=1", "", "application/json",
		bytes.NewReader(simulatedEvidence(t, "nodejs:20")), invokerTokenHeader, token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	valid := `{"image":"nodejs:20","request":{"pub":"AAAA"}}`
	for _, c := range []struct {
		name, method, path, body string
		tok                      string
		status                   int
		text                     string
	}{
		{"no token", http.MethodPost, "/internal/v1/keys/requests?invoker=0", valid, "", http.StatusUnauthorized, msgBadCredentials},
		{"wrong token", http.MethodGet, "/internal/v1/keys/requests?invoker=0", "", "nope", http.StatusUnauthorized, msgBadCredentials},
		{"wrong token, evidence", http.MethodGet, "/internal/v1/evidence/nodejs:20", "", "nope", http.StatusUnauthorized, msgBadCredentials},
		{"no invoker", http.MethodPost, "/internal/v1/keys/requests", valid, token, http.StatusBadRequest,
			"The query parameter 'invoker' must be an invoker instance number (0 to 65535)."},
		{"bad invoker", http.MethodGet, "/internal/v1/keys/requests?invoker=-1", "", token, http.StatusBadRequest, ""},
		{"bad invoker on publish", http.MethodPut, "/internal/v1/evidence/nodejs:20?invoker=x", "{}", token, http.StatusBadRequest, ""},
		{"bad timeout", http.MethodGet, "/internal/v1/keys/requests?invoker=0&timeout=31000", "", token, http.StatusBadRequest,
			"The query parameter 'timeout' must be milliseconds up to 30000."},
		{"not JSON", http.MethodPost, "/internal/v1/keys/requests?invoker=0", "{", token, http.StatusBadRequest, ""},
		{"request not an object", http.MethodPost, "/internal/v1/keys/requests?invoker=0", `{"image":"nodejs:20","request":"x"}`, token, http.StatusBadRequest,
			`The key request must be {"image": "IMAGE", "request": {...}} (the owner's key-request).`},
		{"too large", http.MethodPost, "/internal/v1/keys/requests?invoker=0",
			`{"image":"nodejs:20","request":{"pub":"` + strings.Repeat("A", maxKeyMessageBytes) + `"}}`, token, http.StatusRequestEntityTooLarge, ""},
		{"publisher unhealthy", http.MethodPost, "/internal/v1/keys/requests?invoker=0", valid, token, http.StatusNotFound,
			"No other healthy invoker holds the key of image nodejs:20."},
		{"no publisher", http.MethodPost, "/internal/v1/keys/requests?invoker=0", `{"image":"python:3","request":{}}`, token, http.StatusNotFound, ""},
		{"answer unknown", http.MethodPut, "/internal/v1/keys/requests/abc?invoker=0", `{"offer":{}}`, token, http.StatusNotFound, ""},
		{"answer both", http.MethodPut, "/internal/v1/keys/requests/abc?invoker=0", `{"offer":{},"error":"x"}`, token, http.StatusBadRequest,
			`The answer must be {"offer": {...}} (the owner's key-offer) or {"error": "why"} (up to 1024 bytes).`},
		{"answer neither", http.MethodPut, "/internal/v1/keys/requests/abc?invoker=0", `{}`, token, http.StatusBadRequest, ""},
		{"await unknown", http.MethodGet, "/internal/v1/keys/requests/abc?invoker=0&timeout=0", "", token, http.StatusNotFound, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := e.do(t, c.method, c.path, "", "application/json", strings.NewReader(c.body), invokerTokenHeader, c.tok)
			wantError(t, resp, body, c.status, c.text)
		})
	}
	// The requester itself as the publisher: nothing to relay.
	e.setStates("up", "up")
	resp, body = e.internal(t, http.MethodPost, "/internal/v1/keys/requests?invoker=1", valid)
	wantError(t, resp, body, http.StatusNotFound, "No other healthy invoker holds the key of image nodejs:20.")
}

func TestKeyRelay_BoundedAndExpiring(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newKeyRelay(func() time.Time { return now })
	add := func(id string) {
		r.requests[id] = &keyRequest{id: id, expires: now.Add(keyRequestTTL)}
		r.order = append(r.order, id)
	}
	add("a")
	now = now.Add(keyRequestTTL / 2)
	add("b")
	now = now.Add(keyRequestTTL/2 + time.Millisecond)
	r.sweepLocked()
	if _, ok := r.requests["a"]; ok || len(r.requests) != 1 || len(r.order) != 1 || r.order[0] != "b" {
		t.Fatalf("after a's expiry: requests %v order %v", r.requests, r.order)
	}
	now = now.Add(keyRequestTTL)
	r.sweepLocked()
	if len(r.requests) != 0 || len(r.order) != 0 {
		t.Fatalf("after b's expiry: requests %v order %v", r.requests, r.order)
	}

	// Over HTTP: at most maxKeyRequests at once, then 503.
	e := newEnv(t, Config{})
	e.setStates("up", "up")
	resp, body := e.do(t, http.MethodPut, "/internal/v1/evidence/nodejs:20?invoker=0", "", "application/json",
		bytes.NewReader(simulatedEvidence(t, "nodejs:20")), invokerTokenHeader, token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	for i := range maxKeyRequests {
		resp, body := e.internal(t, http.MethodPost, "/internal/v1/keys/requests?invoker=1", `{"image":"nodejs:20","request":{}}`)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body = e.internal(t, http.MethodPost, "/internal/v1/keys/requests?invoker=1", `{"image":"nodejs:20","request":{}}`)
	wantError(t, resp, body, http.StatusServiceUnavailable, "Too many key requests in flight (256); try again later.")
}

// TestKeyRelay_ToAGivenHolder: a state transfer's steps after its offer go to the invoker that made
// the offer ("invoker" in the body), which must hold the image's kid and be healthy.
func TestKeyRelay_ToAGivenHolder(t *testing.T) {
	e := newEnv(t, Config{})
	e.setStates("up", "up", "up")
	ev := simulatedEvidence(t, "nodejs:20")
	for _, n := range []int{0, 2} {
		resp, body := e.do(t, http.MethodPut, fmt.Sprintf("/internal/v1/evidence/nodejs:20?invoker=%d", n), "", "application/json",
			bytes.NewReader(ev), invokerTokenHeader, token)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("publish %d: %d %s", n, resp.StatusCode, body)
		}
	}
	post := func(body string) (int, int) {
		resp, b := e.internal(t, http.MethodPost, "/internal/v1/keys/requests?invoker=1", body)
		var created struct {
			Invoker int `json:"invoker"`
		}
		if resp.StatusCode == http.StatusCreated && json.Unmarshal(b, &created) != nil {
			t.Fatalf("request: %s", b)
		}
		return resp.StatusCode, created.Invoker
	}
	if code, to := post(`{"image":"nodejs:20","request":{"state":"chunks"}}`); code != http.StatusCreated || to != 0 {
		t.Fatalf("any holder: %d to invoker%d, want 201 to invoker0", code, to)
	}
	if code, to := post(`{"image":"nodejs:20","request":{"state":"chunks"},"invoker":2}`); code != http.StatusCreated || to != 2 {
		t.Fatalf("invoker 2: %d to invoker%d, want 201 to invoker2", code, to)
	}
	if code, _ := post(`{"image":"nodejs:20","request":{"state":"chunks"},"invoker":1}`); code != http.StatusNotFound {
		t.Fatalf("the requester itself: %d, want 404", code)
	}
	e.setStates("up", "up", "down")
	if code, _ := post(`{"image":"nodejs:20","request":{"state":"chunks"},"invoker":2}`); code != http.StatusNotFound {
		t.Fatalf("an unhealthy holder: %d, want 404", code)
	}
	if code, _ := post(`{"image":"nodejs:20","request":{"state":"chunks"},"invoker":-1}`); code != http.StatusBadRequest {
		t.Fatalf("a bad invoker: %d, want 400", code)
	}
}
