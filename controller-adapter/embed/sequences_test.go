package embed

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

// e2eRecord is an activation as these tests read it.
type e2eRecord struct {
	ActivationID string           `json:"activationId"`
	Cause        string           `json:"cause"`
	Logs         []string         `json:"logs"`
	Duration     int64            `json:"duration"`
	Annotations  whisk.Parameters `json:"annotations"`
	Response     struct {
		Status string         `json:"status"`
		Result map[string]any `json:"result"`
	} `json:"response"`
}

func (r e2eRecord) ann(k string) string {
	v, _ := r.Annotations.Get(k)
	return string(v)
}

// TestSequenceEndToEnd is issue #18 item 2 through a real invoker (process sandbox, direct
// enclave): a sequence with a package's action passes each result on, stops at an error, runs
// non-blocking and as a web action; a conductor action drives two actions. The controller runs
// them and writes their records; the invoker writes the components', with the cause and
// causedBy "sequence".
func TestSequenceEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real invoker")
	}
	ctx, ctl := startOneInvoker(t, Namespace{Name: "tenant", UUID: tenantUUID, Key: tenantKey})

	do := func(method, path, body string) (int, http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, ctl.APIHost()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(tenantUUID, tenantKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header, b
	}
	must := func(want int, method, path, body string) []byte {
		t.Helper()
		st, _, b := do(method, path, body)
		if st != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, st, b, want)
		}
		return b
	}
	invoke := func(want int, name, body string) e2eRecord {
		t.Helper()
		var r e2eRecord
		if err := json.Unmarshal(must(want, "POST", "/api/v1/namespaces/_/actions/"+name+"?blocking=true", body), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	get := func(id string) e2eRecord {
		t.Helper()
		for {
			st, _, b := do("GET", "/api/v1/namespaces/_/activations/"+id, "")
			var r e2eRecord
			if st == 200 && json.Unmarshal(b, &r) == nil {
				return r
			}
			if st != 404 || ctx.Err() != nil {
				t.Fatalf("activation %s: %d %s", id, st, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	action := func(name, code, extra string) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"exec": map[string]string{"kind": "nodejs:20", "code": code}})
		if extra != "" {
			body = append(body[:len(body)-1], ","+extra+"}"...)
		}
		must(200, "PUT", "/api/v1/namespaces/_/actions/"+name, string(body))
	}
	action("inc", `function main(p) { return { n: (p.n || 0) + 1, trail: (p.trail || '') + 'i' } }`, "")
	action("fail", `function main() { return { error: 'nope' } }`, "")
	must(200, "PUT", "/api/v1/namespaces/_/packages/tools", `{}`)
	action("tools/dbl", `function main(p) { return { n: p.n * 2, trail: p.trail + 'd' } }`, "")

	// A sequence: each result is the next component's input; the last is the sequence's.
	must(200, "PUT", "/api/v1/namespaces/_/actions/s", `{"exec":{"kind":"sequence","components":["/_/inc","/_/tools/dbl","/_/inc"]}}`)
	r := invoke(200, "s", `{"n":1}`)
	if r.Response.Result["n"] != float64(5) || r.Response.Result["trail"] != "idi" || len(r.Logs) != 3 {
		t.Fatalf("sequence: %+v", r)
	}
	if r.ann("topmost") != "true" || r.ann("kind") != `"sequence"` || !strings.Contains(r.ann("limits"), `"memory":256`) {
		t.Fatalf("sequence annotations: %+v", r.Annotations)
	}
	var sum int64
	for i, id := range r.Logs {
		c := get(id)
		if c.Cause != r.ActivationID || c.ann("causedBy") != `"sequence"` || c.Response.Status != "success" {
			t.Fatalf("component %d record: %+v", i, c)
		}
		sum += c.Duration
	}
	if r.Duration != sum {
		t.Fatalf("sequence duration %d, want the components' %d", r.Duration, sum)
	}
	if stored := get(r.ActivationID); len(stored.Logs) != 3 || stored.Response.Result["n"] != float64(5) {
		t.Fatalf("stored sequence record %+v", stored)
	}

	// An error result ends the sequence with that component's response.
	must(200, "PUT", "/api/v1/namespaces/_/actions/e", `{"exec":{"kind":"sequence","components":["/_/inc","/_/fail","/_/inc"]}}`)
	if r := invoke(502, "e", `{}`); r.Response.Result["error"] != "nope" || len(r.Logs) != 2 {
		t.Fatalf("error short-circuit: %+v", r)
	}

	// Non-blocking: the id at once, the record once the controller has run it.
	var accepted map[string]string
	if err := json.Unmarshal(must(202, "POST", "/api/v1/namespaces/_/actions/s", `{"n":10}`), &accepted); err != nil {
		t.Fatal(err)
	}
	if r := get(accepted["activationId"]); r.Response.Result["n"] != float64(23) || len(r.Logs) != 3 {
		t.Fatalf("non-blocking sequence: %+v", r)
	}

	// A web action sequence, reached without a key.
	must(200, "PUT", "/api/v1/namespaces/_/actions/w",
		`{"exec":{"kind":"sequence","components":["/_/inc","/_/tools/dbl"]},"annotations":[{"key":"web-export","value":true}]}`)
	resp, err := http.Post(ctl.APIHost()+"/api/v1/web/tenant/default/w.json", "application/json", strings.NewReader(`{"n":3}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(b), `"n":8`) {
		t.Fatalf("web sequence: %d %s %v", resp.StatusCode, b, err)
	}

	// A conductor action: inc, then tools/dbl, then the end, state carried between its runs.
	action("cond", `function main(p) {
		if (p.step === undefined) return { action: 'inc', params: { n: p.n }, state: { step: 1 } }
		if (p.step === 1) return { action: 'tools/dbl', params: { n: p.n, trail: p.trail }, state: { step: 2 } }
		return { params: { n: p.n, trail: p.trail + '!' } }
	}`, `"annotations":[{"key":"conductor","value":true}]`)
	r = invoke(200, "cond", `{"n":1}`)
	if r.Response.Result["n"] != float64(4) || r.Response.Result["trail"] != "id!" || len(r.Logs) != 5 || r.ann("conductor") != "true" {
		t.Fatalf("composition: %+v", r)
	}
	for i, id := range r.Logs {
		if c := get(id); c.Cause != r.ActivationID || c.ann("causedBy") != `"sequence"` {
			t.Fatalf("composition step %d record: %+v", i, c)
		}
	}
}
