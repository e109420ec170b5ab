package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/attest/attesttest"
)

// testImage is an image key held by the test, standing in for the enclave's (the enclave's own side
// is trusted/sealed.js, exercised against this package in interop_test.go).
type testImage struct {
	kem *ecdh.PrivateKey
	sig ed25519.PrivateKey
	ev  *attest.Evidence
}

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestImage(t *testing.T) *testImage {
	t.Helper()
	kem, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sigPub, sig, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ev := attest.NewSimulated("nodejs:20", kem.PublicKey().Bytes(), sigPub, strings.Repeat("ab", 32))
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if ev, err = attest.Parse(raw); err != nil {
		t.Fatal(err)
	}
	return &testImage{kem: kem, sig: sig, ev: ev}
}

// openEnvelope is the enclave's half in Go: it returns the params, the reply key and the envelope.
func (im *testImage) openEnvelope(t *testing.T, params json.RawMessage, namespace, action string) (json.RawMessage, []byte, Envelope, []byte) {
	t.Helper()
	var wrapped map[string]Envelope
	if err := json.Unmarshal(params, &wrapped); err != nil {
		t.Fatal(err)
	}
	env := wrapped[ParamsField]
	enc, ct := unb64(t, env.Enc), unb64(t, env.Ct)
	pt, err := open(im.kem, infoParams, ParamsAAD(env.V, namespace, action, env.Nonce, env.Iat), enc, ct)
	if err != nil {
		t.Fatalf("open envelope: %v", err)
	}
	var p paramsPlaintext
	if err := json.Unmarshal(pt, &p); err != nil {
		t.Fatal(err)
	}
	return p.Params, unb64(t, p.Reply), env, ct
}

// sealResult is the enclave's half of the result in Go.
func (im *testImage) sealResult(t *testing.T, reply []byte, env Envelope, inputCT []byte, activationID, namespace, action string, pt resultPlaintext) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(pt)
	if err != nil {
		t.Fatal(err)
	}
	sr := SealedResult{V: env.V}
	var ct []byte
	if env.V == 1 {
		var enc []byte
		enc, ct, err = seal(reply, infoResult, ResultAAD(1, activationID, env.Nonce), b)
		if err != nil {
			t.Fatal(err)
		}
		sr.Enc = base64.StdEncoding.EncodeToString(enc)
	} else {
		block, err := aes.NewCipher(reply)
		if err != nil {
			t.Fatal(err)
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			t.Fatal(err)
		}
		iv := make([]byte, gcm.NonceSize())
		if _, err := rand.Read(iv); err != nil {
			t.Fatal(err)
		}
		ct = gcm.Seal(nil, iv, b, ResultAAD(env.V, activationID, env.Nonce))
		sr.IV = base64.StdEncoding.EncodeToString(iv)
	}
	evSum, err := im.ev.IdentitySha256()
	if err != nil {
		t.Fatal(err)
	}
	in, out := sha256.Sum256(inputCT), sha256.Sum256(ct)
	r := Receipt{V: 1, ActivationID: activationID, Namespace: namespace, Action: action, Nonce: env.Nonce,
		Kid: im.ev.Kid, IdentitySHA256: evSum, CodeSHA256: strings.Repeat("0", 64),
		InputSHA256: hex.EncodeToString(in[:]), OutputSHA256: hex.EncodeToString(out[:])}
	msg, err := r.SignedBytes()
	if err != nil {
		t.Fatal(err)
	}
	r.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(im.sig, msg))
	sr.Ct, sr.Receipt = base64.StdEncoding.EncodeToString(ct), r
	res, err := json.Marshal(map[string]SealedResult{ResultField: sr})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestSealParams_RoundTrip(t *testing.T) {
	im := newTestImage(t)
	params, reply, err := SealParams(im.ev, "guest", "hello", json.RawMessage(`{"name":"canary-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(params), "canary") || !IsSealed(params) {
		t.Fatalf("sealed params: %s", params)
	}
	if reply.Action != "/guest/hello" {
		t.Fatalf("action %q, want the fully qualified name", reply.Action)
	}
	got, replyPub, env, inCT := im.openEnvelope(t, params, "guest", "/guest/hello")
	if string(got) != `{"name":"canary-1"}` {
		t.Fatalf("params %s", got)
	}
	// The reply key survives being stored and read back.
	stored, err := json.Marshal(reply)
	if err != nil {
		t.Fatal(err)
	}
	var back ReplyKey
	if err := json.Unmarshal(stored, &back); err != nil {
		t.Fatal(err)
	}
	rec := im.sealResult(t, replyPub, env, inCT, "act1", "guest", "/guest/hello",
		resultPlaintext{Result: json.RawMessage(`{"ok":true}`), Logs: []string{"line one"}})
	opened, err := OpenResult(&back, "act1", rec)
	if err != nil {
		t.Fatal(err)
	}
	if string(opened.Result) != `{"ok":true}` || string(opened.Error) != "null" || len(opened.Logs) != 1 {
		t.Fatalf("opened %+v", opened)
	}
	var sr map[string]SealedResult
	if err := json.Unmarshal(rec, &sr); err != nil {
		t.Fatal(err)
	}
	ct := unb64(t, sr[ResultField].Ct)
	if err := VerifyReceipt(opened.Receipt, im.ev, &back, ct); err != nil {
		t.Fatal(err)
	}

	// Another activation id, a flipped byte, another client's reply key: all refused.
	if _, err := OpenResult(&back, "act2", rec); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("other activation: %v", err)
	}
	_, other, err := SealParams(im.ev, "guest", "hello", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenResult(other, "act1", rec); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("other reply key: %v", err)
	}
	bad := sr[ResultField]
	bad.Receipt.CodeSHA256 = strings.Repeat("1", 64)
	badRec := marshal(t, map[string]SealedResult{ResultField: bad})
	if _, err := OpenResult(&back, "act1", badRec); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("edited receipt: %v", err)
	}
	// An application error is under "error".
	appRec := marshal(t, map[string]json.RawMessage{"error": rec})
	if _, err := OpenResult(&back, "act1", appRec); err != nil {
		t.Fatalf("application error shape: %v", err)
	}
	// A refusal and a plain result say what they are.
	if _, err := OpenResult(&back, "act1", json.RawMessage(`{"error":"TeeMate sealed: integrity: replayed nonce"}`)); !errors.Is(err, ErrRefused) {
		t.Fatalf("refusal: %v", err)
	}
	if _, err := OpenResult(&back, "act1", json.RawMessage(`{"error":"The action exceeded its time limits of 100 milliseconds."}`)); !errors.Is(err, ErrNotSealed) {
		t.Fatalf("timeout: %v", err)
	}
}

func TestSealParams_BadInput(t *testing.T) {
	im := newTestImage(t)
	for name, c := range map[string]struct {
		ev     *attest.Evidence
		params string
	}{
		"no evidence":  {nil, `{}`},
		"array params": {im.ev, `[1]`},
		"not json":     {im.ev, `{`},
		"wrong kid":    {&attest.Evidence{Kid: strings.Repeat("0", 32), Keys: im.ev.Keys}, `{}`},
	} {
		if _, _, err := SealParams(c.ev, "guest", "a", json.RawMessage(c.params)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	big := `{"x":"` + strings.Repeat("a", MaxSealedBytes) + `"}`
	if _, _, err := SealParams(im.ev, "guest", "a", json.RawMessage(big)); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversize: %v", err)
	}
}

func TestSealCode_Binding(t *testing.T) {
	im := newTestImage(t)
	code, err := SealCode(im.ev, "guest", "pkg/a", []byte("function main(){return {}}"))
	if err != nil {
		t.Fatal(err)
	}
	if !IsSealedCode(code) || IsSealedCode("function main(){}") {
		t.Fatal("IsSealedCode")
	}
	var sc map[string]SealedCode
	if err := json.Unmarshal([]byte(code), &sc); err != nil {
		t.Fatal(err)
	}
	enc, ct := unb64(t, sc[CodeField].Enc), unb64(t, sc[CodeField].Ct)
	if _, err := open(im.kem, infoCode, CodeAAD("guest", "/guest/pkg/a"), enc, ct); err != nil {
		t.Fatal(err)
	}
	if _, err := open(im.kem, infoCode, CodeAAD("guest", "/guest/pkg/b"), enc, ct); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("moved to another action: %v", err)
	}
}

func TestReceipt_SignedBytes(t *testing.T) {
	r := Receipt{V: 1, ActivationID: "a", Namespace: "n\"\\\n\x01é", Action: "/n/x"}
	b, err := r.SignedBytes()
	if err != nil {
		t.Fatal(err)
	}
	want := "teemate-receipt-v1\n" + `{"action":"/n/x","activationId":"a","codeSha256":"","identitySha256":"","inputSha256":"","kid":"","namespace":"n\"\\\n\u0001é","nonce":"","outputSha256":"","v":1}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}

// On sgx every owner of an image serves its own quote for the same key. A receipt from one owner
// verifies against the evidence another one published, because it names the identity (image, key,
// measurement), not the served bytes; an enclave of another measurement does not pass for it.
func TestReceipt_AnotherSGXOwnerOfTheImage(t *testing.T) {
	base := newTestImage(t)
	kemPub, sigPub := base.ev.Keys.KEM, base.ev.Keys.Sig
	owner := func(mrenclave byte) *testImage {
		ca, err := attesttest.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		var rb attest.ReportBody
		rb.MREnclave[0], rb.MRSigner[0] = mrenclave, 7
		ev, err := ca.Evidence("nodejs:20", kemPub, sigPub, rb)
		if err != nil {
			t.Fatal(err)
		}
		return &testImage{kem: base.kem, sig: base.sig, ev: ev}
	}
	published, serving, other := owner(1), owner(1), owner(2)
	if a, b := published.ev.Quote, serving.ev.Quote; string(a) == string(b) {
		t.Fatal("the two owners' quotes should differ")
	}
	for _, c := range []struct {
		name string
		ran  *testImage
		ok   bool
	}{{"same measurement", serving, true}, {"other measurement", other, false}} {
		params, reply, err := SealParams(published.ev, "guest", "hello", json.RawMessage(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		_, replyPub, env, inCT := c.ran.openEnvelope(t, params, "guest", "/guest/hello")
		rec := c.ran.sealResult(t, replyPub, env, inCT, "act1", "guest", "/guest/hello", resultPlaintext{Result: json.RawMessage(`1`)})
		_, err = OpenResult(reply, "act1", rec)
		if c.ok && err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if !c.ok && !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: got %v, want ErrIntegrity", c.name, err)
		}
	}
}

// A reply key of a v1 envelope (an X25519 key; stored by an earlier client) still opens the v1
// result an enclave answers such an envelope with, and a result of the other version is refused.
func TestOpenResult_V1ReplyKey(t *testing.T) {
	im := newTestImage(t)
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	inCT := []byte("the envelope's ciphertext")
	sum := sha256.Sum256(inCT)
	evSum, err := im.ev.IdentitySha256()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keysOf(im.ev)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := json.Marshal(&ReplyKey{key: priv, Namespace: "guest", Action: "/guest/hello", Kid: im.ev.Kid,
		Nonce: strings.Repeat("ab", 16), InputSHA256: hex.EncodeToString(sum[:]), SigKey: keys.sig, IdentitySHA256: evSum})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(stored), `"v":1`) {
		t.Fatalf("a v1 reply key stored as %s", stored)
	}
	var reply ReplyKey
	if err := json.Unmarshal(stored, &reply); err != nil {
		t.Fatal(err)
	}
	env := Envelope{V: 1, Nonce: reply.Nonce}
	rec := im.sealResult(t, priv.PublicKey().Bytes(), env, inCT, "act1", "guest", "/guest/hello",
		resultPlaintext{Result: json.RawMessage(`{"ok":1}`)})
	opened, err := OpenResult(&reply, "act1", rec)
	if err != nil || string(opened.Result) != `{"ok":1}` {
		t.Fatalf("v1 result: %+v %v", opened, err)
	}
	v2 := im.sealResult(t, make([]byte, 32), Envelope{V: 2, Nonce: reply.Nonce}, inCT, "act1", "guest", "/guest/hello",
		resultPlaintext{Result: json.RawMessage(`{"ok":1}`)})
	if _, err := OpenResult(&reply, "act1", v2); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a v2 result for a v1 reply key: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"v":2,"key":"AAAA"}`), &reply); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a short v2 reply key: %v", err)
	}
}

// Envelopes sealed one after another, and many at once, take the sender set up ahead at most
// once each: no two share an ephemeral key, and every one opens.
func TestSealParams_SpareSenderUsedOnce(t *testing.T) {
	im := newTestImage(t)
	const n = 40
	encs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		seal := func() {
			params, _, err := SealParams(im.ev, "guest", "hello", json.RawMessage(`{"i":1}`))
			if err != nil {
				t.Error(err)
				return
			}
			var wrapped map[string]Envelope
			if err := json.Unmarshal(params, &wrapped); err != nil {
				t.Error(err)
				return
			}
			encs[i] = wrapped[ParamsField].Enc
			if _, err := open(im.kem, infoParams, ParamsAAD(EnvelopeVersion, "guest", "/guest/hello",
				wrapped[ParamsField].Nonce, wrapped[ParamsField].Iat), unb64(t, encs[i]), unb64(t, wrapped[ParamsField].Ct)); err != nil {
				t.Error(err)
			}
		}
		if i < n/2 {
			seal()
			time.Sleep(time.Millisecond) // the spare is made meanwhile
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); seal() }()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, e := range encs {
		if seen[e] {
			t.Fatalf("two envelopes share the encapsulated key %s", e)
		}
		seen[e] = true
	}
}

// The AADs are byte strings the enclave builds the same way (trusted/sealed.js); pinned here so
// that a change of how they are built cannot change what they are.
func TestAADBytes(t *testing.T) {
	if got, want := string(ParamsAAD(2, "guest", "/guest/pkg/a", "00ff", 1700000000123)), "teemate-params-v2\nguest\n/guest/pkg/a\n00ff\n1700000000123"; got != want {
		t.Errorf("ParamsAAD = %q, want %q", got, want)
	}
	if got, want := string(ResultAAD(1, "act1", "00ff")), "teemate-result-v1\nact1\n00ff"; got != want {
		t.Errorf("ResultAAD = %q, want %q", got, want)
	}
}

// isObject takes exactly the texts that are one JSON object.
func TestIsObject(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{`{}`, true}, {` {"a":[1,{"b":null}]} `, true}, {"\n\t{\"x\":\"<&>\"}", true},
		{`[]`, false}, {`null`, false}, {`"{}"`, false}, {`42`, false}, {``, false}, {`   `, false},
		{`{"a":1} {}`, false}, {`{"a":}`, false}, {`{`, false}, {`{"a":1}x`, false},
	} {
		if got := isObject(json.RawMessage(c.in)); got != c.want {
			t.Errorf("isObject(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

// keysOf remembers an evidence's keys, but never past a change of the evidence: a changed kid is
// refused as it would be the first time, and the same evidence restored seals again.
func TestKeysOfFollowsAChangedEvidence(t *testing.T) {
	im := newTestImage(t)
	if _, _, err := SealParams(im.ev, "guest", "noop", nil); err != nil {
		t.Fatal(err)
	}
	kid := im.ev.Kid
	im.ev.Kid = strings.Repeat("0", len(kid))
	if _, _, err := SealParams(im.ev, "guest", "noop", nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("sealing to an evidence whose kid changed: %v, want ErrMalformed", err)
	}
	im.ev.Kid = kid
	other := newTestImage(t)
	copy(im.ev.Keys.KEM, other.ev.Keys.KEM) // the same slice, other bytes: the kid no longer matches
	if _, _, err := SealParams(im.ev, "guest", "noop", nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("sealing to an evidence whose key bytes changed: %v, want ErrMalformed", err)
	}
	*im.ev = *other.ev
	env, reply, err := SealParams(im.ev, "guest", "noop", nil)
	if err != nil {
		t.Fatal(err)
	}
	if reply.Kid != other.ev.Kid {
		t.Fatalf("sealed to kid %s, want the new evidence's %s", reply.Kid, other.ev.Kid)
	}
	if _, _, _, _ = other.openEnvelope(t, env, "guest", "/guest/noop"); t.Failed() {
		t.Fatal("the new image's key does not open the envelope")
	}
}

// findSealedResult tells the shapes of a record's result apart: the sealed result at the top or
// under "error", the enclave's refusal, any other unsealed result, and what does not parse.
func TestFindSealedResultShapes(t *testing.T) {
	const sealedJSON = `{"v":2,"iv":"AAAAAAAAAAAAAAAA","ct":"AA==","receipt":{"v":1}}`
	for _, c := range []struct {
		name, in string
		want     error // nil: found
	}{
		{"success", `{"` + ResultField + `":` + sealedJSON + `}`, nil},
		{"application error", `{"error":{"` + ResultField + `":` + sealedJSON + `}}`, nil},
		{"refusal", `{"error":"` + IntegrityPrefix + `: replayed envelope"}`, ErrRefused},
		{"unsealed error", `{"error":"The action exceeded its time limits"}`, ErrNotSealed},
		{"unsealed error object", `{"error":{"code":1}}`, ErrNotSealed},
		{"unsealed result", `{"n":42}`, ErrNotSealed},
		{"not an object", `[1]`, ErrMalformed},
		{"sealed result of the wrong type", `{"` + ResultField + `":"x"}`, ErrMalformed},
		{"sealed error of the wrong type", `{"error":{"` + ResultField + `":[1]}}`, ErrMalformed},
	} {
		sr, err := findSealedResult(json.RawMessage(c.in))
		switch {
		case c.want == nil && (err != nil || sr == nil || sr.V != 2 || sr.Ct != "AA=="):
			t.Errorf("%s: %+v, %v; want the sealed result", c.name, sr, err)
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}
