package client

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"github.com/teemate/platform/invoker/sealed"
)

func record(id string, result json.RawMessage, success bool) *Activation {
	a := &Activation{ActivationID: id}
	a.Response = &struct {
		Status  string          `json:"status"`
		Success bool            `json:"success"`
		Result  json.RawMessage `json:"result,omitempty"`
	}{Status: "success", Success: success, Result: result}
	return a
}

// TestOpen_FailureClasses: Open tells an enclave's refusal and a result that does not open
// (ErrIntegrity) from a receipt that does not match (ErrReceipt) and from the action's own error
// (ErrActionFailed, with the opened error).
func TestOpen_FailureClasses(t *testing.T) {
	k := newImageKey(t)
	const ns, action, id = "guest", "/guest/hello", "0123456789abcdef0123456789abcdef"
	env, reply, err := sealed.SealParams(k.ev, ns, action, json.RawMessage(`{"b":1}`))
	if err != nil {
		t.Fatal(err)
	}
	_, replyPub, e := k.open(t, env, ns, action)
	ok := k.sealResult(t, replyPub, e, ns, action, id, map[string]any{"result": map[string]int{"c": 2}, "error": nil, "logs": []string{}})
	if o, err := Open(k.ev, reply, record(id, ok, true)); err != nil || string(o.Result) != `{"c":2}` {
		t.Fatalf("a good result: %v", err)
	}

	var doc map[string]sealed.SealedResult
	if err := json.Unmarshal(ok, &doc); err != nil {
		t.Fatal(err)
	}
	sr := doc[sealed.ResultField]
	ct, _ := base64.StdEncoding.DecodeString(sr.Ct)
	ct[len(ct)-1] ^= 1
	sr.Ct = base64.StdEncoding.EncodeToString(ct)
	tampered, err := json.Marshal(map[string]sealed.SealedResult{sealed.ResultField: sr})
	if err != nil {
		t.Fatal(err)
	}
	appErr := k.sealResult(t, replyPub, e, ns, action, id, map[string]any{"result": nil, "error": "bad input", "logs": []string{}})
	appErrRecord := json.RawMessage(`{"error":` + string(appErr) + `}`)

	for _, c := range []struct {
		name string
		a    *Activation
		want error
	}{
		{"tampered output", record(id, tampered, true), ErrReceipt},
		{"another activation", record("ffffffffffffffffffffffffffffffff", ok, true), ErrReceipt},
		{"the enclave refused", record(id, json.RawMessage(`{"error":"TeeMate sealed: integrity: replayed envelope"}`), false), ErrIntegrity},
		{"not sealed", record(id, json.RawMessage(`{"c":2}`), true), ErrIntegrity},
		{"not finished", &Activation{ActivationID: id}, ErrNotReady},
		{"the action's error", record(id, appErrRecord, false), ErrActionFailed},
	} {
		o, err := Open(k.ev, reply, c.a)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if c.want == ErrActionFailed && (o == nil || string(o.Error) != `"bad input"`) {
			t.Errorf("%s: opened %+v", c.name, o)
		}
	}
}
