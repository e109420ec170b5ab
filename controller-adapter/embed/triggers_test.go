package embed

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTriggersEndToEnd is issue #18 item 3 through a real invoker (process sandbox, direct
// enclave): a fire runs the rule's action, whose record the invoker stores with the trigger
// activation as its cause; a disabled rule runs nothing; the built-in alarms feed, on the real
// clock with a cron of seconds, fires the trigger every second until its DELETE.
func TestTriggersEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real invoker")
	}
	ctx, ctl := startOneInvoker(t, Namespace{Name: "tenant", UUID: tenantUUID, Key: tenantKey})

	call := func(method, path, body string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, ctl.APIHost()+"/api/v1/namespaces/"+path, strings.NewReader(body))
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
		return resp.StatusCode, b
	}
	do := func(method, path, body string, want int) []byte {
		t.Helper()
		status, b := call(method, path, body)
		if status != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, status, b, want)
		}
		return b
	}
	type record struct {
		Name     string   `json:"name"`
		Cause    string   `json:"cause"`
		Logs     []string `json:"logs"`
		Response struct {
			Success bool           `json:"success"`
			Result  map[string]any `json:"result"`
		} `json:"response"`
	}
	// activation waits for the invoker to store an activation's record.
	activation := func(id string) record {
		t.Helper()
		for {
			status, b := call("GET", "_/activations/"+id, "")
			if status == 200 {
				var r record
				if err := json.Unmarshal(b, &r); err != nil {
					t.Fatal(err)
				}
				return r
			}
			if ctx.Err() != nil {
				t.Fatalf("activation %s never stored: %d %s", id, status, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	do("PUT", "_/actions/echo", `{"exec":{"kind":"nodejs:20","code":"function main(p) { return { from: p.from, who: p.who, tick: p.tick } }"}}`, 200)
	do("PUT", "_/triggers/t", `{"parameters":[{"key":"from","value":"trigger"}]}`, 200)
	do("PUT", "_/rules/r", `{"trigger":"/_/t","action":"/_/echo"}`, 200)

	var fired struct {
		ActivationID string `json:"activationId"`
	}
	if err := json.Unmarshal(do("POST", "_/triggers/t", `{"who":"fire"}`, 202), &fired); err != nil {
		t.Fatal(err)
	}
	trig := activation(fired.ActivationID)
	var outcome struct {
		Success      bool   `json:"success"`
		ActivationID string `json:"activationId"`
	}
	if len(trig.Logs) != 1 || json.Unmarshal([]byte(trig.Logs[0]), &outcome) != nil || !outcome.Success {
		t.Fatalf("trigger activation logs: %v", trig.Logs)
	}
	ran := activation(outcome.ActivationID)
	if ran.Name != "echo" || ran.Cause != fired.ActivationID || !ran.Response.Success ||
		ran.Response.Result["from"] != "trigger" || ran.Response.Result["who"] != "fire" {
		t.Fatalf("the rule's action: %+v", ran)
	}

	do("POST", "_/rules/r", `{"status":"inactive"}`, 200)
	do("POST", "_/triggers/t", `{}`, 204)

	// The alarms feed on the real clock: a cron of seconds fires the trigger every second.
	do("PUT", "_/triggers/clock", `{"annotations":[{"key":"feed","value":"/whisk.system/alarms/alarm"}]}`, 200)
	do("PUT", "_/rules/every", `{"trigger":"/_/clock","action":"/_/echo"}`, 200)
	do("POST", "whisk.system/actions/alarms/alarm?blocking=true",
		`{"lifecycleEvent":"CREATE","triggerName":"/_/clock","cron":"* * * * * *","trigger_payload":{"tick":true}}`, 200)
	var ticks []record
	for len(ticks) < 2 {
		if ctx.Err() != nil {
			t.Fatalf("the alarm fired %d times", len(ticks))
		}
		time.Sleep(500 * time.Millisecond)
		var list []struct {
			ActivationID string `json:"activationId"`
		}
		if err := json.Unmarshal(do("GET", "_/activations?name=clock", "", 200), &list); err != nil {
			t.Fatal(err)
		}
		ticks = ticks[:0]
		for _, a := range list {
			ticks = append(ticks, activation(a.ActivationID))
		}
	}
	for _, tick := range ticks {
		if len(tick.Logs) != 1 || json.Unmarshal([]byte(tick.Logs[0]), &outcome) != nil || !outcome.Success {
			t.Fatalf("alarm's trigger activation: %+v", tick)
		}
		if ran := activation(outcome.ActivationID); ran.Response.Result["tick"] != true || ran.Cause == "" {
			t.Fatalf("the alarm's rule action: %+v", ran)
		}
	}
	do("POST", "whisk.system/actions/alarms/alarm?blocking=true", `{"lifecycleEvent":"DELETE","triggerName":"/_/clock"}`, 200)
	count := func() int {
		var n map[string]int
		if err := json.Unmarshal(do("GET", "_/activations?name=clock&count=true", "", 200), &n); err != nil {
			t.Fatal(err)
		}
		return n["activations"]
	}
	before := count()
	if before < 2 {
		t.Fatalf("counted %d alarm fires, listed %d", before, len(ticks))
	}
	time.Sleep(2 * time.Second)
	if after := count(); after != before {
		t.Fatalf("the alarm fired after its DELETE: %d -> %d", before, after)
	}
}
