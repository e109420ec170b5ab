package sealed

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/attest"
)

// jsEnclave is testdata/enclave.js in a node child: the enclave's half of the formats
// (trusted/sealed.js with a real trusted/keys.js image key), so every test here crosses
// between Go's crypto/hpke and the JS implementation.
type jsEnclave struct {
	ev  *attest.Evidence
	in  io.WriteCloser
	out *bufio.Reader
}

func startJSEnclave(t *testing.T) *jsEnclave {
	t.Helper()
	testtool.Require(t, "node")
	cmd := exec.Command("node", filepath.Join("testdata", "enclave.js"))
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Closing stdin ends the script; its exit status is checked so a crash fails the test.
		if err := in.Close(); err != nil {
			t.Errorf("close node stdin: %v", err)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("node enclave: %v\n%s", err, stderr.String())
		}
	})
	e := &jsEnclave{in: in, out: bufio.NewReader(outPipe)}
	line, err := e.out.ReadBytes('\n')
	if err != nil {
		t.Fatalf("node enclave gave no evidence: %v\n%s", err, stderr.String())
	}
	if e.ev, err = attest.Parse(line[:len(line)-1]); err != nil {
		t.Fatal(err)
	}
	if _, err := attest.Verify(e.ev, attest.Policy{AllowSimulated: true}); err != nil {
		t.Fatalf("the JS enclave's evidence does not verify: %v", err)
	}
	return e
}

// do sends one request and returns the raw answer.
func (e *jsEnclave) do(t *testing.T, req map[string]any) map[string]json.RawMessage {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.in.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
	line, err := e.out.ReadBytes('\n')
	if err != nil {
		t.Fatalf("node enclave: %v", err)
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal(line, &out); err != nil {
		t.Fatalf("node enclave answered %q: %v", line, err)
	}
	return out
}

func refusal(t *testing.T, out map[string]json.RawMessage) string {
	t.Helper()
	var msg string
	if err := json.Unmarshal(out["refused"], &msg); err != nil {
		t.Fatalf("want a refusal, got %v", out)
	}
	if !strings.HasPrefix(msg, IntegrityPrefix) {
		t.Fatalf("refusal %q does not start with %q", msg, IntegrityPrefix)
	}
	return msg
}

func envOf(ns, action, activationID string) map[string]string {
	return map[string]string{"__OW_NAMESPACE": ns, "__OW_ACTION_NAME": action, "__OW_ACTIVATION_ID": activationID}
}

func TestInterop_GoSealsJSOpensJSSealsGoOpens(t *testing.T) {
	e := startJSEnclave(t)
	code := "function main(p) { return p }"
	params, reply, err := SealParams(e.ev, "guest", "echo", json.RawMessage(`{"secret":"canary-in","n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	out := e.do(t, map[string]any{"op": "run", "value": json.RawMessage(params), "env": envOf("guest", "/guest/echo", "act-1"),
		"outcome": "success", "logs": []string{"canary-log"}, "code": code})
	if _, ok := out["refused"]; ok {
		t.Fatalf("refused: %s", out["refused"])
	}
	if strings.Contains(string(out["result"]), "canary") || strings.Contains(string(out["logs"]), "canary") {
		t.Fatalf("plaintext reached the host: %v", out)
	}
	if !strings.Contains(string(out["logs"]), "sealed: 1 log lines in the sealed result") {
		t.Fatalf("logs %s", out["logs"])
	}
	opened, err := OpenResult(reply, "act-1", out["result"])
	if err != nil {
		t.Fatal(err)
	}
	var echoed map[string]any
	if err := json.Unmarshal(opened.Result, &echoed); err != nil || echoed["secret"] != "canary-in" {
		t.Fatalf("result %s (%v)", opened.Result, err)
	}
	if len(opened.Logs) != 1 || !strings.HasSuffix(opened.Logs[0], "stdout: canary-log") {
		t.Fatalf("logs %q", opened.Logs)
	}
	sum := sha256.Sum256([]byte(code))
	if opened.Receipt.CodeSHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("receipt code hash %s", opened.Receipt.CodeSHA256)
	}
	// The receipt also verifies against the evidence itself (not just what the reply key kept).
	var sr map[string]SealedResult
	if err := json.Unmarshal(out["result"], &sr); err != nil {
		t.Fatal(err)
	}
	ct, err := base64.StdEncoding.DecodeString(sr[ResultField].Ct)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyReceipt(opened.Receipt, e.ev, reply, ct); err != nil {
		t.Fatal(err)
	}
	if err := VerifyReceipt(opened.Receipt, e.ev, reply, append(ct[:len(ct):len(ct)], 0)); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("other output: %v", err)
	}

	// The same envelope again: refused as a replay.
	out = e.do(t, map[string]any{"op": "run", "value": json.RawMessage(params), "env": envOf("guest", "/guest/echo", "act-2"), "outcome": "success"})
	if msg := refusal(t, out); !strings.Contains(msg, "replayed") {
		t.Fatalf("replay: %s", msg)
	}
}

func TestInterop_ApplicationError(t *testing.T) {
	e := startJSEnclave(t)
	params, reply, err := SealParams(e.ev, "guest", "/guest/pkg/fail", nil)
	if err != nil {
		t.Fatal(err)
	}
	out := e.do(t, map[string]any{"op": "run", "value": json.RawMessage(params), "env": envOf("guest", "/guest/pkg/fail", "act-3"),
		"outcome": "application", "result": map[string]any{"error": map[string]string{"message": "canary-err"}}})
	if strings.Contains(string(out["result"]), "canary") {
		t.Fatalf("plaintext error reached the host: %s", out["result"])
	}
	opened, err := OpenResult(reply, "act-3", out["result"])
	if err != nil {
		t.Fatal(err)
	}
	if string(opened.Result) != "null" || string(opened.Error) != `{"message":"canary-err"}` {
		t.Fatalf("opened %s / %s", opened.Result, opened.Error)
	}
}

// TestInterop_Refusals: every envelope that was tampered with, moved or is out of time is
// refused by the JS enclave with an integrity error, and the enclave keeps answering.
func TestInterop_Refusals(t *testing.T) {
	e := startJSEnclave(t)
	seal := func() map[string]Envelope {
		params, _, err := SealParams(e.ev, "guest", "a", json.RawMessage(`{"x":1}`))
		if err != nil {
			t.Fatal(err)
		}
		var env map[string]Envelope
		if err := json.Unmarshal(params, &env); err != nil {
			t.Fatal(err)
		}
		return env
	}
	flip := func(s string) string {
		b := unb64(t, s)
		b[len(b)/2] ^= 1
		return base64.StdEncoding.EncodeToString(b)
	}
	good := envOf("guest", "/guest/a", "act")
	for name, c := range map[string]struct {
		edit func(*Envelope)
		env  map[string]string
		want string
	}{
		"ct flipped":         {func(v *Envelope) { v.Ct = flip(v.Ct) }, good, "does not open"},
		"enc flipped":        {func(v *Envelope) { v.Enc = flip(v.Enc) }, good, ""},
		"nonce changed":      {func(v *Envelope) { v.Nonce = strings.Repeat("0", 32) }, good, "does not open"},
		"iat changed":        {func(v *Envelope) { v.Iat-- }, good, "does not open"},
		"other action":       {func(*Envelope) {}, envOf("guest", "/guest/b", "act"), "does not open"},
		"other namespace":    {func(*Envelope) {}, envOf("other", "/guest/a", "act"), "does not open"},
		"unknown kid":        {func(v *Envelope) { v.Kid = strings.Repeat("ab", 16) }, good, "unknown kid"},
		"stale":              {func(v *Envelope) { v.Iat = time.Now().Add(-11 * time.Minute).UnixMilli() }, good, "stale"},
		"future":             {func(v *Envelope) { v.Iat = time.Now().Add(11 * time.Minute).UnixMilli() }, good, "future"},
		"version":            {func(v *Envelope) { v.V = 3 }, good, "version"},
		"version relabelled": {func(v *Envelope) { v.V = 1 }, good, "does not open"},
		"no activation id":   {func(*Envelope) {}, envOf("guest", "/guest/a", ""), "activation id"},
		"ct not base64":      {func(v *Envelope) { v.Ct = "%%%%" }, good, "not base64"},
		"oversize":           {func(v *Envelope) { v.Ct = base64.StdEncoding.EncodeToString(make([]byte, MaxSealedBytes+1)) }, good, "larger than"},
		"ct without its tag": {func(v *Envelope) { v.Ct = "AAAA" }, good, "shorter than its tag"},
	} {
		t.Run(name, func(t *testing.T) {
			env := seal()
			v := env[ParamsField]
			c.edit(&v)
			env[ParamsField] = v
			out := e.do(t, map[string]any{"op": "run", "value": env, "env": c.env, "outcome": "success"})
			if msg := refusal(t, out); !strings.Contains(msg, c.want) {
				t.Fatalf("refusal %q does not say %q", msg, c.want)
			}
		})
	}
	// Still serving: a good envelope opens after all of that.
	out := e.do(t, map[string]any{"op": "run", "value": seal(), "env": good, "outcome": "success"})
	if _, ok := out["refused"]; ok {
		t.Fatalf("refused after the bad ones: %s", out["refused"])
	}
}

func TestInterop_SealedCode(t *testing.T) {
	e := startJSEnclave(t)
	src := "function main() { return {canary: 'code'} }"
	code, err := SealCode(e.ev, "guest", "secret", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	out := e.do(t, map[string]any{"op": "code", "code": code, "env": envOf("guest", "/guest/secret", "")})
	var got string
	if err := json.Unmarshal(out["code"], &got); err != nil || got != src {
		t.Fatalf("opened code %v (%v)", out, err)
	}
	out = e.do(t, map[string]any{"op": "code", "code": code, "env": envOf("guest", "/guest/other", "")})
	refusal(t, out)
}
