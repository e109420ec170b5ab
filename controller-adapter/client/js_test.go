package client

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/teemate/platform/internal/testtool"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/sealed"
)

// imageKey is the test's enclave: an image key and its simulated evidence, with Go's crypto/hpke
// on the enclave's side of the formats, so that the JS client module (js/teemate.js) is checked
// against an implementation that is not its own.
type imageKey struct {
	kem *ecdh.PrivateKey
	sig ed25519.PrivateKey
	ev  *attest.Evidence
}

func newImageKey(t *testing.T) *imageKey {
	t.Helper()
	kem, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sigPub, sig, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(attest.NewSimulated("nodejs:20", kem.PublicKey().Bytes(), sigPub, hex.EncodeToString(make([]byte, 32))))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := attest.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return &imageKey{kem: kem, sig: sig, ev: ev}
}

// open is the enclave opening an envelope for ns and action.
func (k *imageKey) open(t *testing.T, envelope json.RawMessage, ns, action string) (params json.RawMessage, reply []byte, e sealed.Envelope) {
	t.Helper()
	var doc map[string]sealed.Envelope
	if err := json.Unmarshal(envelope, &doc); err != nil {
		t.Fatal(err)
	}
	e = doc[sealed.ParamsField]
	enc, err1 := base64.StdEncoding.DecodeString(e.Enc)
	ct, err2 := base64.StdEncoding.DecodeString(e.Ct)
	if err1 != nil || err2 != nil {
		t.Fatalf("envelope: %v %v", err1, err2)
	}
	priv, err := hpke.NewDHKEMPrivateKey(k.kem)
	if err != nil {
		t.Fatal(err)
	}
	r, err := hpke.NewRecipient(enc, priv, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte("teemate-sealed-v1"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := r.Open(sealed.ParamsAAD(e.V, ns, action, e.Nonce, e.Iat), ct)
	if err != nil {
		t.Fatalf("the envelope does not open with Go's crypto/hpke: %v", err)
	}
	var body struct {
		Params json.RawMessage `json:"params"`
		Reply  string          `json:"reply"`
	}
	if err := json.Unmarshal(pt, &body); err != nil {
		t.Fatal(err)
	}
	if reply, err = base64.StdEncoding.DecodeString(body.Reply); err != nil {
		t.Fatal(err)
	}
	return body.Params, reply, e
}

// sealResult is the enclave sealing an outcome with the (v2) reply key, with its signed receipt:
// the record's result.
func (k *imageKey) sealResult(t *testing.T, reply []byte, e sealed.Envelope, ns, action, activationID string, plain any) json.RawMessage {
	t.Helper()
	if e.V != sealed.EnvelopeVersion {
		t.Fatalf("envelope version %d, want %d", e.V, sealed.EnvelopeVersion)
	}
	block, err := aes.NewCipher(reply)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := json.Marshal(plain)
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(iv); err != nil {
		t.Fatal(err)
	}
	ct := gcm.Seal(nil, iv, pt, sealed.ResultAAD(e.V, activationID, e.Nonce))
	in, _ := base64.StdEncoding.DecodeString(e.Ct)
	inSum, outSum := sha256.Sum256(in), sha256.Sum256(ct)
	identity, err := k.ev.IdentitySha256()
	if err != nil {
		t.Fatal(err)
	}
	r := sealed.Receipt{V: 1, ActivationID: activationID, Namespace: ns, Action: action, Nonce: e.Nonce, Kid: k.ev.Kid,
		IdentitySHA256: identity, CodeSHA256: hex.EncodeToString(make([]byte, 32)),
		InputSHA256: hex.EncodeToString(inSum[:]), OutputSHA256: hex.EncodeToString(outSum[:])}
	msg, err := r.SignedBytes()
	if err != nil {
		t.Fatal(err)
	}
	r.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(k.sig, msg))
	out, err := json.Marshal(map[string]sealed.SealedResult{sealed.ResultField: {V: e.V,
		IV: base64.StdEncoding.EncodeToString(iv), Ct: base64.StdEncoding.EncodeToString(ct), Receipt: r}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func runJS(t *testing.T, req any) map[string]json.RawMessage {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join("testdata", "jsclient.js"))
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node jsclient.js: %v\n%s", err, out)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("node jsclient.js answered %q: %v", out, err)
	}
	return m
}

// TestJSClient_InteropWithGo: the JS module's envelope opens with Go's crypto/hpke under the
// design's AAD; its reply key is the Go package's ReplyKey JSON (Go opens the result with it), and
// the JS module opens and verifies a result and receipt that Go sealed and signed, for a reply key
// made by either side.
func TestJSClient_InteropWithGo(t *testing.T) {
	testtool.Require(t, "node")
	k := newImageKey(t)
	const ns, action, id = "guest", "/guest/hello", "0123456789abcdef0123456789abcdef"
	plain := map[string]any{"result": map[string]string{"c": "see"}, "error": nil, "logs": []string{"line one"}}

	// JS seals, Go opens; Go seals the result, JS and Go open it with the JS reply key.
	js := runJS(t, map[string]any{"op": "seal", "evidence": string(k.ev.Raw), "namespace": ns, "action": action,
		"params": map[string]string{"b": "bee"}})
	params, reply, env := k.open(t, js["params"], ns, action)
	if string(params) != `{"b":"bee"}` {
		t.Fatalf("params opened in Go: %s", params)
	}
	record := k.sealResult(t, reply, env, ns, action, id, plain)
	var rk sealed.ReplyKey
	if err := json.Unmarshal(js["reply"], &rk); err != nil {
		t.Fatalf("the JS reply key is not a Go ReplyKey: %v", err)
	}
	a := &Activation{ActivationID: id}
	a.Response = &struct {
		Status  string          `json:"status"`
		Success bool            `json:"success"`
		Result  json.RawMessage `json:"result,omitempty"`
	}{Status: "success", Success: true, Result: record}
	o, err := Open(k.ev, &rk, a)
	if err != nil || string(o.Result) != `{"c":"see"}` || len(o.Logs) != 1 {
		t.Fatalf("Go opens with the JS reply key: %v %+v", err, o)
	}
	got := runJS(t, map[string]any{"op": "open", "reply": js["reply"], "activationId": id, "result": record})
	if string(got["result"]) != `{"c":"see"}` || string(got["logs"]) != `["line one"]` {
		t.Fatalf("JS opens what Go sealed: %s", got)
	}

	// Go seals the params; JS opens the result with the Go reply key.
	envelope, goReply, err := sealed.SealParams(k.ev, ns, action, json.RawMessage(`{"b":"go"}`))
	if err != nil {
		t.Fatal(err)
	}
	_, reply, env = k.open(t, envelope, ns, action)
	record = k.sealResult(t, reply, env, ns, action, id, plain)
	rb, err := json.Marshal(goReply)
	if err != nil {
		t.Fatal(err)
	}
	got = runJS(t, map[string]any{"op": "open", "reply": json.RawMessage(rb), "activationId": id, "result": record})
	if string(got["result"]) != `{"c":"see"}` {
		t.Fatalf("JS opens with the Go reply key: %s", got)
	}
	// A receipt for another activation is refused on both sides.
	got = runJS(t, map[string]any{"op": "open", "reply": json.RawMessage(rb), "activationId": "other", "result": record})
	if string(got["failed"]) != `"receipt"` {
		t.Fatalf("JS with another activation id: %s", got)
	}
	a.ActivationID = "other"
	a.Response.Result = record
	if _, err := Open(k.ev, goReply, a); err == nil {
		t.Fatal("Go opened a result for another activation")
	}
}
