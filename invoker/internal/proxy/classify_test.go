package proxy

import (
	"encoding/json"
	"testing"

	"github.com/teemate/platform/invoker/internal/wire"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		in     Reply
		code   int
		result string // JSON of the result, "" for none
	}{
		{"init ok", Reply{Init: true, Status: 200, Body: []byte(`{"OK":true}`)}, 0, ""},
		{"init error field", Reply{Init: true, Status: 502, Body: []byte(`{"error":"Initialization has failed due to: SyntaxError"}`)},
			2, `{"error":"Initialization has failed due to: SyntaxError"}`},
		{"init non-json", Reply{Init: true, Status: 500, Body: []byte(`boom`)},
			2, `{"error":"The action failed during initialization: boom"}`},
		{"init second time", Reply{Init: true, Status: 403, Body: []byte(`{"error":"Cannot initialize the action more than once."}`)},
			2, `{"error":"Cannot initialize the action more than once."}`},
		{"init timeout", Reply{Init: true, TimedOut: true, TimeoutMs: 300},
			2, `{"error":"The action exceeded its time limits of 300 milliseconds during initialization."}`},
		{"init no reply", Reply{Init: true, Failed: true}, 2, `{"error":"The action did not initialize and exited unexpectedly."}`},
		{"run success", Reply{Status: 200, Body: []byte(`{"greeting":"hi"}`)}, 0, `{"greeting":"hi"}`},
		{"run array", Reply{Status: 200, Body: []byte(`[1,2]`)}, 0, `[1,2]`},
		{"run application error", Reply{Status: 200, Body: []byte(`{"error":{"code":7}}`), Outcome: wire.OutcomeApplication},
			1, `{"error":{"code":7}}`},
		{"run developer error", Reply{Status: 502, Body: []byte(`{"error":"An error has occurred: Error: x"}`), Outcome: wire.OutcomeDeveloper},
			2, `{"error":"An error has occurred: Error: x"}`},
		{"run non-200 without error", Reply{Status: 500, Body: []byte(`{"a":1}`)},
			2, `{"error":"The action did not produce a valid JSON or JSON Array response: {\"a\":1}"}`},
		{"run non-json", Reply{Status: 200, Body: []byte(`hello`)},
			2, `{"error":"The action did not produce a valid JSON or JSON Array response: hello"}`},
		{"run scalar", Reply{Status: 200, Body: []byte(`42`)},
			2, `{"error":"The action did not produce a valid JSON or JSON Array response: 42"}`},
		{"run empty", Reply{Status: 200}, 2, `{"error":"The action did not produce a valid JSON or JSON Array response."}`},
		{"run array non-200", Reply{Status: 502, Body: []byte(`[1]`)},
			2, `{"error":"The action did not produce a valid JSON or JSON Array response: [1]"}`},
		{"run timeout (invoker clock)", Reply{TimedOut: true, TimeoutMs: 1000},
			2, `{"error":"The action exceeded its time limits of 1000 milliseconds."}`},
		{"run timeout (enclave)", Reply{Status: 502, Outcome: wire.OutcomeTimeout,
			Body: []byte(`{"error":"The action exceeded its time limits of 500 milliseconds."}`)},
			2, `{"error":"The action exceeded its time limits of 500 milliseconds."}`},
		{"run memory (enclave)", Reply{Status: 502, Outcome: wire.OutcomeMemory,
			Body: []byte(`{"error":"The action exhausted its memory and was aborted."}`)},
			2, `{"error":"The action exhausted its memory and was aborted."}`},
		{"run OOM killed", Reply{OOM: true, Failed: true}, 2, `{"error":"The action exhausted its memory and was aborted."}`},
		{"run died", Reply{Failed: true}, 2, `{"error":"The action did not produce a valid response and exited unexpectedly."}`},
		{"run truncated", Reply{Status: 200, Body: []byte(`{"a":"xx`), Truncated: true, Length: 20, MaxLength: 8},
			1, `{"error":"The action produced a response that exceeded the allowed length: 20 > 8 bytes. The truncated response was: {\"a\":\"xx"}`},
		{"gate failure", Reply{Status: 503, Outcome: wire.OutcomeGate, Body: []byte(`{"error":"No enclave thread could be taken: busy"}`)},
			3, `{"error":"No enclave thread could be taken."}`},
		{"gate failure names no host path", Reply{Init: true, Status: 502, Outcome: wire.OutcomeGate,
			Body: []byte(`{"error":"The enclave is not reachable: dial gate /tmp/eo1/nodejs-20-1/gate.sock: No such file or directory"}`)},
			3, `{"error":"The enclave is not reachable."}`},
		{"gate failure, not a string", Reply{Status: 502, Outcome: wire.OutcomeGate, Body: []byte(`{"error":{"x":1}}`)},
			3, `{"error":"Failed to provision resources to run the action."}`},
		{"gate failure without body", Reply{Status: 502, Outcome: wire.OutcomeGate}, 3, `{"error":"Failed to provision resources to run the action."}`},
		{"init gate failure", Reply{Init: true, Status: 502, Outcome: wire.OutcomeGate, Body: []byte(`{"error":"owner gone"}`)},
			3, `{"error":"owner gone."}`},
		{"not reached", Reply{Unreached: true}, 3, `{"error":"Failed to provision resources to run the action."}`},
		{"aborted wins", Reply{Aborted: "invoker stopping", Status: 200, Body: []byte(`{}`)},
			3, `{"error":"The activation was aborted: invoker stopping"}`},
		{"native developer error (no outcome)", Reply{Status: 502, Body: []byte(`{"error":"boom"}`)}, 2, `{"error":"boom"}`},

		// The owner died under the activation (evidence of the enclave manager): without a result
		// of the enclave it is the platform's failure; the action's own failures stay its own.
		{"owner died: gate lost during run", Reply{Status: 502, Outcome: wire.OutcomeDeveloper, OwnerDied: true,
			Body: []byte(`{"error":"The action did not produce a valid response and exited unexpectedly."}`)},
			3, `{"error":"The enclave serving the action failed while the action ran."}`},
		{"gate lost during run, owner alive", Reply{Status: 502, Outcome: wire.OutcomeDeveloper,
			Body: []byte(`{"error":"The action did not produce a valid response and exited unexpectedly."}`)},
			2, `{"error":"The action did not produce a valid response and exited unexpectedly."}`},
		{"owner died: gate lost during init", Reply{Init: true, Status: 502, Outcome: wire.OutcomeDeveloper, OwnerDied: true,
			Body: []byte(`{"error":"The action did not initialize and exited unexpectedly."}`)},
			3, `{"error":"The enclave serving the action failed before the action ran."}`},
		{"owner died after a successful init", Reply{Init: true, Status: 200, OwnerDied: true, Body: []byte(`{"OK":true}`)},
			3, `{"error":"The enclave serving the action failed before the action ran."}`},
		{"owner died: no reply (backstop abort)", Reply{Failed: true, OwnerDied: true},
			3, `{"error":"The enclave serving the action failed while the action ran."}`},
		{"owner died: invoker's clock ran out", Reply{TimedOut: true, TimeoutMs: 1000, OwnerDied: true},
			3, `{"error":"The enclave serving the action failed while the action ran."}`},
		{"owner died after the action threw", Reply{Status: 502, Outcome: wire.OutcomeDeveloper, OwnerDied: true,
			Body: []byte(`{"error":"An error has occurred: Error: x"}`)}, 2, `{"error":"An error has occurred: Error: x"}`},
		{"owner died after process.exit was reported", Reply{Status: 502, Outcome: wire.OutcomeDeveloper, OwnerDied: true,
			Body: []byte(`{"error":"An error has occurred: the action called process.exit(1)."}`)},
			2, `{"error":"An error has occurred: the action called process.exit(1)."}`},
		{"owner died after a result", Reply{Status: 200, Outcome: wire.OutcomeSuccess, OwnerDied: true, Body: []byte(`{"a":1}`)}, 0, `{"a":1}`},
		{"owner died after an enclave timeout", Reply{Status: 502, Outcome: wire.OutcomeTimeout, OwnerDied: true,
			Body: []byte(`{"error":"The action exceeded its time limits of 500 milliseconds."}`)},
			2, `{"error":"The action exceeded its time limits of 500 milliseconds."}`},
		{"owner died: init syntax error stays the action's", Reply{Init: true, Status: 502, Outcome: wire.OutcomeDeveloper, OwnerDied: true,
			Body: []byte(`{"error":"Initialization has failed due to: SyntaxError"}`)},
			2, `{"error":"Initialization has failed due to: SyntaxError"}`},
		{"shim's sandbox exited at init", Reply{Init: true, Failed: true, Shim: true},
			3, `{"error":"Failed to provision resources to run the action."}`},
		{"shim's sandbox exited at run", Reply{Failed: true, Shim: true},
			2, `{"error":"The action did not produce a valid response and exited unexpectedly."}`},
		{"owner died but the sandbox was OOM-killed", Reply{Failed: true, OOM: true, OwnerDied: true},
			2, `{"error":"The action exhausted its memory and was aborted."}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Classify(tc.in).Response
			if got.StatusCode != tc.code {
				t.Fatalf("status %d (%s), want %d", got.StatusCode, got.Result, tc.code)
			}
			if tc.result == "" {
				if got.Result != nil {
					t.Fatalf("result %s, want none", got.Result)
				}
				return
			}
			if !jsonEqual(t, got.Result, []byte(tc.result)) {
				t.Fatalf("result %s, want %s", got.Result, tc.result)
			}
		})
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("result %q is not JSON: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("want %q is not JSON: %v", b, err)
	}
	xb, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	yb, err := json.Marshal(y)
	if err != nil {
		t.Fatal(err)
	}
	return string(xb) == string(yb)
}

// The verdict's flags: a timeout from either clock, and "no user code ran" for the platform's own
// failures only.
func TestClassifyFlags(t *testing.T) {
	tests := []struct {
		name                 string
		in                   Reply
		timedOut, noUserCode bool
	}{
		{"enclave timeout", Reply{Status: 502, Outcome: wire.OutcomeTimeout}, true, false},
		{"invoker timeout", Reply{TimedOut: true, TimeoutMs: 5}, true, false},
		{"gate", Reply{Status: 503, Outcome: wire.OutcomeGate}, false, true},
		{"not reached", Reply{Unreached: true}, false, true},
		{"developer", Reply{Status: 502, Outcome: wire.OutcomeDeveloper, Body: []byte(`{"error":"x"}`)}, false, false},
		{"success", Reply{Status: 200, Outcome: wire.OutcomeSuccess, Body: []byte(`{}`)}, false, false},
		{"owner died at init", Reply{Init: true, Failed: true, OwnerDied: true}, false, true},
		{"owner died after init", Reply{Init: true, Status: 200, OwnerDied: true}, false, true},
		// /run went out behind /init: the shim may have begun it, so the /run reply decides.
		{"owner died after init, run queued", Reply{Init: true, Status: 200, OwnerDied: true, RunQueued: true}, false, false},
		{"owner died at init, run queued", Reply{Init: true, Status: 502, Outcome: wire.OutcomeGate, OwnerDied: true, RunQueued: true}, false, true},
		{"owner died at run", Reply{Failed: true, OwnerDied: true}, false, false},
		{"shim never answered init", Reply{Init: true, Failed: true, Shim: true}, false, true},
		{"standard proxy died at init", Reply{Init: true, Failed: true}, false, false},
		{"owner died, invoker timeout", Reply{TimedOut: true, OwnerDied: true}, false, false},
	}
	for _, tc := range tests {
		v := Classify(tc.in)
		if v.TimedOut != tc.timedOut || v.NoUserCode != tc.noUserCode {
			t.Errorf("%s: timedOut %v noUserCode %v, want %v %v", tc.name, v.TimedOut, v.NoUserCode, tc.timedOut, tc.noUserCode)
		}
	}
}
