package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

// TestLargeParameters follows what an activation may carry on the real path (Kafka over TCP, the
// controller-adapter's store, balancer and API, the invoker, Node): actions whose parameters could
// never be invoked are refused when they are created, with 413 and OpenWhisk's text; an invocation
// whose message is over Kafka's limit but whose content is within the platform's runs, its content
// travelling through the store by reference, and the kept content is gone once it is answered; a
// payload over the limit is 413. The platform answers a small invocation after each.
func TestLargeParameters(t *testing.T) {
	d := startTestDirect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rest, err := NewAPI(d.ctl.APIHost(), d.auth)
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path string, body []byte) (int, []byte) {
		t.Helper()
		b, code, err := rest.do(ctx, method, path, body)
		if err != nil {
			t.Fatal(err)
		}
		return code, b
	}
	wantError := func(code int, b []byte, status int, prefix string) {
		t.Helper()
		var e struct{ Error, Code string }
		if code != status || json.Unmarshal(b, &e) != nil || e.Code == "" || !strings.HasPrefix(e.Error, prefix) {
			t.Fatalf("HTTP %d %.300s; want %d with an error starting %q and a code", code, b, status, prefix)
		}
	}
	const code = `function main(p) { return { keys: Object.keys(p).sort().join(","), d: p.d.length, p: (p.p || "").length, ` +
		`edges: (p.p || "").slice(0, 2) + (p.p || "").slice(-2) + p.d.slice(0, 2) + p.d.slice(-2) }; }`
	action := func(params string) []byte {
		return []byte(`{"exec":{"kind":"nodejs:20","code":` + quote(code) + `},"limits":{"memory":256,"timeout":30000},"parameters":` + params + `}`)
	}
	healthy := func() {
		t.Helper()
		if code, b := call(http.MethodPost, "/api/v1/namespaces/_/actions/echo?blocking=true&result=true", []byte(`{"p":"ab"}`)); code != http.StatusOK ||
			!strings.Contains(string(b), `"p":2`) {
			t.Fatalf("a small invocation after that: HTTP %d %.300s", code, b)
		}
	}

	defaults := "d" + strings.Repeat("x", 300<<10) + "D"
	if code, b := call(http.MethodPut, "/api/v1/namespaces/_/actions/echo?overwrite=true", action(`[{"key":"d","value":"`+defaults+`"}]`)); code != http.StatusOK {
		t.Fatalf("deploy: HTTP %d %.300s", code, b)
	}
	for _, model := range []string{"teemate", "native"} {
		t.Run(model, func(t *testing.T) {
			stop, err := d.UseModel(ctx, model)
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			healthy()

			// Created with 200 before, then 500 at every invoke: now refused at the door.
			big := strings.Repeat("x", 1100<<10)
			code, b := call(http.MethodPut, "/api/v1/namespaces/_/actions/never?overwrite=true", action(`[{"key":"big","value":"`+big+`"}]`))
			wantError(code, b, http.StatusRequestEntityTooLarge, fmt.Sprintf("parameters larger than allowed: %d > 1048576 bytes.", 3+len(big)+2))
			healthy()
			var many strings.Builder
			many.WriteByte('[')
			for i := range 200000 {
				if i > 0 {
					many.WriteByte(',')
				}
				fmt.Fprintf(&many, `{"key":"p%d","value":1}`, i)
			}
			many.WriteByte(']')
			code, b = call(http.MethodPut, "/api/v1/namespaces/_/actions/never?overwrite=true", action(many.String()))
			wantError(code, b, http.StatusRequestEntityTooLarge, "parameters larger than allowed: ")
			if code, _ := call(http.MethodGet, "/api/v1/namespaces/_/actions/never", nil); code != http.StatusNotFound {
				t.Fatalf("a refused action was stored: HTTP %d", code)
			}
			healthy()

			// ~300 KiB of defaults and ~900 KiB of payload: over Kafka's limit, within the platform's.
			payload := "p" + strings.Repeat("y", 900<<10) + "P"
			body := []byte(`{"p":"` + payload + `"}`)
			code, b = call(http.MethodPost, "/api/v1/namespaces/_/actions/echo?blocking=true", body)
			if code != http.StatusOK {
				t.Fatalf("by reference: HTTP %d %.300s", code, b)
			}
			act, err := parseExternal(b)
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf(`{"d":%d,"edges":"pyyPdxxD","keys":"d,p","p":%d}`, len(defaults), len(payload))
			if got := canonical(t, act.Response.Result); got != want {
				t.Fatalf("result %s, want %s", got, want)
			}
			if msg := len(body) + len(defaults); msg <= whisk.MaxMessageBytes {
				t.Fatalf("the case is not what it claims: content of %d bytes fits a message", msg)
			}
			// The kept content went with the answer (the record is stored before the answering
			// ack settles; allow the store its moment).
			contentGone(ctx, t, d, act.ActivationID)
			if code, _ := call(http.MethodGet, "/api/v1/namespaces/_/activations/"+act.ActivationID, nil); code != http.StatusOK {
				t.Fatalf("the record: HTTP %d", code)
			}
			healthy()

			// The same through the in-process controller (controller-adapter/embed).
			reply, err := d.Invoke(ctx, "echo", body)
			if err != nil {
				t.Fatal(err)
			}
			if got := canonical(t, reply.Activation.Response.Result); got != want {
				t.Fatalf("embed: result %s, want %s", got, want)
			}
			contentGone(ctx, t, d, reply.Activation.ActivationID)

			// A payload over the payload limit.
			over := []byte(`{"p":"` + strings.Repeat("z", 1<<20) + `"}`)
			code, b = call(http.MethodPost, "/api/v1/namespaces/_/actions/echo?blocking=true", over)
			wantError(code, b, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request larger than allowed: %d > 1048576 bytes.", len(over)))
			healthy()
		})
	}
}

// contentGone waits briefly for activation id's kept content to be deleted (it goes in the same
// transaction as the record, which the invoker stores right after the blocking caller's answer).
func contentGone(ctx context.Context, t *testing.T, d *Direct, id string) {
	t.Helper()
	url := d.ctl.APIHost() + "/internal/v1/activations/" + benchNamespace + "/" + id + "/content"
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Teemate-Invoker-Token", d.ctl.InvokerToken())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusNotFound:
			return
		case resp.StatusCode != http.StatusOK:
			t.Fatalf("content of %s: HTTP %d", id, resp.StatusCode)
		case time.Now().After(deadline):
			t.Fatalf("content of %s still kept after its activation was answered", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func quote(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func canonical(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("result %.300s: %v", raw, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
