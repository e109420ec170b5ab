package sealed

import (
	"encoding/json"
	"testing"
)

// The client's share of a sealed invocation (bench/README.md, "Sealed vs unsealed"): sealing
// the parameters, and opening a result with its receipt.

func BenchmarkSealParams(b *testing.B) {
	t := &testing.T{}
	im := newTestImage(t)
	params := json.RawMessage(`{"n":42}`)
	for b.Loop() {
		if _, _, err := SealParams(im.ev, "guest", "noop", params); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenResult(b *testing.B) {
	t := &testing.T{}
	im := newTestImage(t)
	params, reply, err := SealParams(im.ev, "guest", "noop", json.RawMessage(`{"n":42}`))
	if err != nil {
		b.Fatal(err)
	}
	_, replyPub, env, inCT := im.openEnvelope(t, params, "guest", "/guest/noop")
	rec := im.sealResult(t, replyPub, env, inCT, "act1", "guest", "/guest/noop",
		resultPlaintext{Result: json.RawMessage(`{"noop":true,"n":42}`), Error: json.RawMessage("null"), Logs: []string{}})
	for b.Loop() {
		if _, err := OpenResult(reply, "act1", rec); err != nil {
			b.Fatal(err)
		}
	}
}
