package attest_test

import (
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/teemate/platform/invoker/attest"
)

// testdata/identity-vectors.json is shared with the enclave runtime's JS
// (enclave-runtime/test/sealed.test.js): both must give the same identity hash.
func TestIdentitySha256SharedVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/identity-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vecs []struct {
		Evidence json.RawMessage `json:"evidence"`
		Identity string          `json:"identitySha256"`
	}
	if err := json.Unmarshal(b, &vecs); err != nil {
		t.Fatal(err)
	}
	if len(vecs) != 2 {
		t.Fatalf("want a simulated and an sgx-dcap vector, got %d", len(vecs))
	}
	for _, v := range vecs {
		ev, err := attest.Parse(v.Evidence)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ev.IdentitySha256()
		if err != nil {
			t.Fatal(err)
		}
		if got != v.Identity {
			t.Errorf("%s: identity %s, want %s", ev.Type, got, v.Identity)
		}
		// The identity ignores what differs between owners of one key and measurement
		// (the quote's signatures, the served bytes), and changes with what it binds.
		other := *ev
		other.Raw = append([]byte(" "), ev.Raw...)
		if ev.Type == attest.TypeSGXDCAP {
			q := append([]byte(nil), ev.Quote...)
			q[len(q)-1] ^= 1 // in the certification data, not the report body
			other.Quote = q
		}
		if got2, err := other.IdentitySha256(); err != nil || got2 != got {
			t.Errorf("%s: another owner's evidence gives %s, %v; want %s", ev.Type, got2, err, got)
		}
		other.Image += "x"
		if got3, _ := other.IdentitySha256(); got3 == got {
			t.Errorf("%s: the identity does not bind the image", ev.Type)
		}
	}
}

func TestIdentitySha256Refusals(t *testing.T) {
	if _, err := (*attest.Evidence)(nil).IdentitySha256(); !errors.Is(err, attest.ErrMalformed) {
		t.Errorf("nil evidence: %v", err)
	}
	if _, err := (&attest.Evidence{Type: attest.TypeSGXDCAP, Quote: []byte{3, 0}}).IdentitySha256(); !errors.Is(err, attest.ErrMalformed) {
		t.Errorf("short quote: %v", err)
	}
	if _, err := (&attest.Evidence{Type: "other"}).IdentitySha256(); !errors.Is(err, attest.ErrMalformed) {
		t.Errorf("unknown type: %v", err)
	}
}

func TestCanonicalJSON(t *testing.T) {
	b, err := attest.CanonicalJSON(map[string]string{"b": "x\"\\\n\u0001é<>", "a": ""}, map[string]int{"v": 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"a":"","b":"x\"\\\n\u0001é<>","v":1}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	if _, err := attest.CanonicalJSON(map[string]string{"v": ""}, map[string]int{"v": 1}); !errors.Is(err, attest.ErrMalformed) {
		t.Errorf("a key twice: %v", err)
	}
	if _, err := attest.CanonicalJSON(map[string]string{"a": "\xff"}, nil); !errors.Is(err, attest.ErrMalformed) {
		t.Errorf("not UTF-8: %v", err)
	}
}
