package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/teemate/platform/controller-adapter/internal/store"
	"github.com/teemate/platform/invoker/whisk"
)

const echoCode = `{"exec":{"kind":"nodejs:20","code":"function main(p){return p}"}`

// withParams is an action definition with the given parameters array (raw JSON).
func withParams(params string) string { return echoCode + `,"parameters":` + params + `}` }

// healthy: after a refusal the API still stores and runs actions.
func healthy(t *testing.T, e *env) {
	t.Helper()
	e.putAction(t, "small", withParams(`[{"key":"a","value":1}]`))
	resp, b := e.do(t, http.MethodPost, "/api/v1/namespaces/_/actions/small?blocking=true&result=true", guestAuth, "application/json", strings.NewReader(`{"b":2}`))
	if resp.StatusCode != http.StatusOK || string(b) != `{"a":1,"b":2}` {
		t.Fatalf("after a refusal: %d %s", resp.StatusCode, b)
	}
}

// TestActionsThatCouldNeverRunAreRefused: an action whose default parameters alone exceed what an
// activation may carry is refused when it is created or updated, with 413 and OpenWhisk's text,
// and nothing is stored; at the limit it is accepted.
func TestActionsThatCouldNeverRunAreRefused(t *testing.T) {
	e := newEnv(t, Config{})
	big := strings.Repeat("x", 1100<<10) // 1.1 MiB
	many := func(n int, key string) string {
		var b strings.Builder
		b.WriteByte('[')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"key":"`+key+`","value":0}`, i)
		}
		return b.String() + "]"
	}
	// 125,000 parameters of 8 bytes each by OpenWhisk's measure (1,000,000 <= 1 MiB) are a content
	// object of 1.5 MB: its quotes, colons and commas count in every activation.
	const n = 125000
	contentOfMany := 1 + n*len(`"a000000":0,`) - 1 + 1

	for _, c := range []struct {
		name, body, text string
	}{
		{"1.1 MiB default", withParams(`[{"key":"big","value":"` + big + `"}]`),
			msgEntityTooBig("parameters", int64(3+len(big)+2), MaxParameterBytes)},
		{"200,000 small defaults", withParams(many(200000, "p%d")),
			msgEntityTooBig("parameters", int64(paramsSize(200000)), MaxParameterBytes)},
		{"within OpenWhisk's measure, over as content", withParams(many(n, "a%06d")),
			msgEntityTooBig("parameters", int64(contentOfMany), MaxDefaultsContentBytes)},
		{"1.1 MiB annotation", echoCode + `,"annotations":[{"key":"big","value":"` + big + `"}]}`,
			msgEntityTooBig("annotations", int64(3+len(big)+2), MaxParameterBytes)},
		{"one byte over as content", withParams(`[{"key":"k","value":"` + strings.Repeat("x", MaxDefaultsContentBytes-len(`{"k":""}`)+1) + `"}]`),
			msgEntityTooBig("parameters", MaxDefaultsContentBytes+1, MaxDefaultsContentBytes)},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, b := e.do(t, http.MethodPut, "/api/v1/namespaces/_/actions/never?overwrite=true", guestAuth, "application/json", strings.NewReader(c.body))
			wantError(t, resp, b, http.StatusRequestEntityTooLarge, c.text)
			if resp, b := e.do(t, http.MethodGet, "/api/v1/namespaces/_/actions/never", guestAuth, "", nil); resp.StatusCode != http.StatusNotFound {
				t.Fatalf("the refused action was stored: %d %.200s", resp.StatusCode, b)
			}
			healthy(t, e)
		})
	}

	// Exactly at the limit it is accepted, and an update that would push it over is refused and
	// leaves the stored action as it was.
	e.putAction(t, "edge", withParams(`[{"key":"k","value":"`+strings.Repeat("x", MaxDefaultsContentBytes-len(`{"k":""}`))+`"}]`))
	before, err := e.st.GetAction(context.Background(), "guest", "edge")
	if err != nil {
		t.Fatal(err)
	}
	resp, b := e.do(t, http.MethodPut, "/api/v1/namespaces/_/actions/edge?overwrite=true", guestAuth, "application/json",
		strings.NewReader(withParams(`[{"key":"big","value":"`+big+`"}]`)))
	wantError(t, resp, b, http.StatusRequestEntityTooLarge, "")
	after, err := e.st.GetAction(context.Background(), "guest", "edge")
	if err != nil || after.Revision != before.Revision {
		t.Fatalf("a refused update changed the action: %v, rev %s -> %s", err, before.Revision, after.Revision)
	}
	// An update that leaves the parameters alone keeps them and is accepted.
	e.putAction(t, "edge", `{"limits":{"timeout":30000}}`)
}

// TestPackagesThatCouldNeverRunAreRefused: a package's parameters start every activation of its
// actions, so a package (or binding) whose parameters could never be carried is refused with 413
// and nothing is stored.
func TestPackagesThatCouldNeverRunAreRefused(t *testing.T) {
	e := newEnv(t, Config{})
	big := strings.Repeat("x", 1100<<10) // 1.1 MiB
	body := `{"parameters":[{"key":"big","value":"` + big + `"}]}`
	resp, b := e.do(t, http.MethodPut, "/api/v1/namespaces/_/packages/never", guestAuth, "application/json", strings.NewReader(body))
	wantError(t, resp, b, http.StatusRequestEntityTooLarge, msgEntityTooBig("parameters", int64(3+len(big)+2), MaxParameterBytes))
	if resp, b := e.do(t, http.MethodGet, "/api/v1/namespaces/_/packages/never", guestAuth, "", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the refused package was stored: %d %.200s", resp.StatusCode, b)
	}
	resp, b = e.do(t, http.MethodPut, "/api/v1/namespaces/_/packages/small", guestAuth, "application/json", strings.NewReader(`{"parameters":[{"key":"a","value":1}]}`))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a small package: %d %.200s", resp.StatusCode, b)
	}
	healthy(t, e)
}

// paramsSize is OpenWhisk's measure of n parameters "p<i>": 0.
func paramsSize(n int) int {
	s := 0
	for i := range n {
		s += len(fmt.Sprintf("p%d", i)) + 1
	}
	return s
}

// TestLargeContentGoesByReference: a message over the broker's limit whose content is within the
// platform's goes with its content in the store and a reference in the message; the content is
// what the invoker would read, and goes once the record is stored. A payload over the limit, or a
// merged content over the platform's, is 413 with OpenWhisk's text, never a 500.
func TestLargeContentGoesByReference(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	defaults := strings.Repeat("d", 300<<10)
	e.putAction(t, "echo", withParams(`[{"key":"d","value":"`+defaults+`"}]`))
	payload := `{"p":"` + strings.Repeat("p", 900<<10) + `"}`

	invoke := func(query, body string) (*http.Response, []byte) {
		return e.do(t, http.MethodPost, "/api/v1/namespaces/_/actions/echo?"+query, guestAuth, "application/json", strings.NewReader(body))
	}
	resp, b := invoke("blocking=true&result=true", payload)
	var got map[string]string
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil || got["d"] != defaults || len(got["p"]) != 900<<10 {
		t.Fatalf("by reference: %d %.200s", resp.StatusCode, b)
	}
	msg := e.inv.last()
	if msg.ContentRef == nil || msg.Content != nil || msg.ContentRef.Bytes <= whisk.MaxMessageBytes {
		t.Fatalf("message content %d bytes, ref %+v", len(msg.Content), msg.ContentRef)
	}
	if raw, err := msg.Serialize(); err != nil || len(raw) > 4096 {
		t.Fatalf("the message by reference is %d bytes (%v)", len(raw), err)
	}
	if _, err := e.st.GetContent(ctx, "guest", msg.ActivationID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("content of an answered activation kept: %v", err)
	}

	// Content that fits goes in the message as always.
	resp, b = invoke("blocking=true&result=true", `{"p":1}`)
	if msg := e.inv.last(); resp.StatusCode != http.StatusOK || msg.ContentRef != nil || len(msg.Content) < 300<<10 {
		t.Fatalf("inline: %d %.100s, ref %+v", resp.StatusCode, b, msg.ContentRef)
	}

	// Non-blocking too.
	resp, b = invoke("", payload)
	if resp.StatusCode != http.StatusAccepted || e.inv.last().ContentRef == nil {
		t.Fatalf("non-blocking by reference: %d %s", resp.StatusCode, b)
	}

	// A payload over the limit.
	over := `{"p":"` + strings.Repeat("p", MaxPayloadBytes) + `"}`
	resp, b = invoke("blocking=true", over)
	wantError(t, resp, b, http.StatusRequestEntityTooLarge, msgEntityTooBig("Request", int64(len(over)), MaxPayloadBytes))
	healthy(t, e)

	// Defaults and payload each within their limit, merged over the platform's.
	e.putAction(t, "full", withParams(`[{"key":"d","value":"`+strings.Repeat("d", MaxDefaultsContentBytes-len(`{"d":""}`))+`"}]`))
	n := len(e.inv.msgs)
	resp, b = e.do(t, http.MethodPost, "/api/v1/namespaces/_/actions/full?blocking=true", guestAuth, "application/json",
		strings.NewReader(`{"p":"`+strings.Repeat("p", MaxPayloadBytes-len(`{"p":""}`))+`"}`))
	wantError(t, resp, b, http.StatusRequestEntityTooLarge, msgContentTooLarge)
	if len(e.inv.msgs) != n {
		t.Fatal("a content over the platform's limit was published")
	}
	healthy(t, e)

	// A broker configured smaller than the platform refuses a message the API sent as it was: it
	// goes again by reference. One that refuses even the reference is 413, and the content goes.
	e.inv.mu.Lock()
	e.inv.brokerMax = 64 << 10
	e.inv.mu.Unlock()
	resp, b = invoke("blocking=true&result=true", `{"p":1}`)
	if msg := e.inv.last(); resp.StatusCode != http.StatusOK || msg.ContentRef == nil || len(e.inv.refused) != 1 || e.inv.refused[0] != msg.ActivationID {
		t.Fatalf("after the broker's refusal: %d %.100s, ref %+v, refused %v", resp.StatusCode, b, msg.ContentRef, e.inv.refused)
	}
	e.inv.mu.Lock()
	e.inv.brokerMax = 100
	e.inv.mu.Unlock()
	resp, b = invoke("blocking=true", `{"p":1}`)
	wantError(t, resp, b, http.StatusRequestEntityTooLarge, msgContentTooLarge)
	last := e.inv.refused[len(e.inv.refused)-1]
	if _, err := e.st.GetContent(ctx, "guest", last); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("content of a refused publication kept: %v", err)
	}
	e.inv.mu.Lock()
	e.inv.brokerMax = 0
	e.inv.mu.Unlock()
	healthy(t, e)
}

// TestContentEndpoint: the invoker reads kept content with its token only, by namespace and id.
func TestContentEndpoint(t *testing.T) {
	e := newEnv(t, Config{})
	id := whisk.ActivationIDNew()
	content := `{"p":"` + strings.Repeat("p", 1500<<10) + `"}`
	if err := e.st.PutContent(context.Background(), "guest", id, []byte(content), store.ContentTTL); err != nil {
		t.Fatal(err)
	}
	path := "/internal/v1/activations/guest/" + id + "/content"
	resp, b := e.do(t, http.MethodGet, path, "", "", nil)
	wantError(t, resp, b, http.StatusUnauthorized, msgBadCredentials)
	resp, b = e.do(t, http.MethodGet, path, guestAuth, "", nil)
	wantError(t, resp, b, http.StatusUnauthorized, msgBadCredentials)
	resp, b = e.do(t, http.MethodGet, path, "", "", nil, "X-Teemate-Invoker-Token", token)
	if resp.StatusCode != http.StatusOK || string(b) != content {
		t.Fatalf("with the token: %d, %d bytes", resp.StatusCode, len(b))
	}
	resp, b = e.do(t, http.MethodGet, "/internal/v1/activations/other/"+id+"/content", "", "", nil, "X-Teemate-Invoker-Token", token)
	wantError(t, resp, b, http.StatusNotFound, msgNotFound)
	resp, b = e.do(t, http.MethodGet, "/internal/v1/activations/guest/nope/content", "", "", nil, "X-Teemate-Invoker-Token", token)
	wantError(t, resp, b, http.StatusBadRequest, msgActivationIDBad)
}
