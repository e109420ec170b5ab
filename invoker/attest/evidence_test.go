package attest

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// testKeys returns a fresh image key's raw public halves.
func testKeys(t *testing.T) (kem, sig []byte) {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().Bytes(), pub
}

func TestReportData_Layout(t *testing.T) {
	kem, sig := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	rd := ReportData(kem, sig)
	want := sha256.Sum256(append(append([]byte("teemate-evidence-v1\n"), kem...), sig...))
	if !bytes.Equal(rd[:32], want[:]) {
		t.Fatalf("first half: got %x want %x", rd[:32], want)
	}
	if !bytes.Equal(rd[32:], make([]byte, 32)) {
		t.Fatalf("second half not zero: %x", rd[32:])
	}
	kidSum := sha256.Sum256(append(append([]byte(nil), kem...), sig...))
	if got := Kid(kem, sig); got != hex.EncodeToString(kidSum[:16]) {
		t.Fatalf("kid %s", got)
	}
}

func TestParse_KeepsRawAndRoundTrips(t *testing.T) {
	kem, sig := testKeys(t)
	ev := NewSimulated("nodejs:20", kem, sig, hex.EncodeToString(make([]byte, 32)))
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	// A served evidence may carry spaces; Raw keeps them so its hash is the enclave's.
	served := append([]byte(" "), data...)
	got, err := Parse(served)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Raw, served) {
		t.Fatal("Raw is not the served bytes")
	}
	sum := sha256.Sum256(served)
	if h, err := got.Sha256(); err != nil || h != hex.EncodeToString(sum[:]) {
		t.Fatalf("Sha256 %s %v", h, err)
	}
	if _, err := Verify(got, Policy{AllowSimulated: true}); err != nil {
		t.Fatal(err)
	}
}

func TestVerify_Simulated(t *testing.T) {
	kem, sig := testKeys(t)
	ev := NewSimulated("nodejs:20", kem, sig, "00")
	if _, err := Verify(ev, Policy{}); !errors.Is(err, ErrSimulated) {
		t.Fatalf("not allowed: got %v, want ErrSimulated", err)
	}
	id, err := Verify(ev, Policy{AllowSimulated: true})
	if err != nil {
		t.Fatal(err)
	}
	if id.Type != TypeSimulated || id.Kid != ev.Kid || !bytes.Equal(id.KEM, kem) || !bytes.Equal(id.Sig, sig) {
		t.Fatalf("identity %+v", id)
	}
}

func TestVerify_BindingAndShape(t *testing.T) {
	kem, sig := testKeys(t)
	otherKEM, _ := testKeys(t)
	allow := Policy{AllowSimulated: true}
	cases := []struct {
		name   string
		mutate func(ev *Evidence)
		want   error
	}{
		{"version", func(ev *Evidence) { ev.V = 2 }, ErrMalformed},
		{"type", func(ev *Evidence) { ev.Type = "tdx" }, ErrMalformed},
		{"no simulated object", func(ev *Evidence) { ev.Simulated = nil }, ErrMalformed},
		{"short key", func(ev *Evidence) { ev.Keys.KEM = ev.Keys.KEM[:31] }, ErrMalformed},
		{"kid not hex", func(ev *Evidence) { ev.Kid = "zz" }, ErrMalformed},
		{"reportData short", func(ev *Evidence) { ev.ReportData = ev.ReportData[:64] }, ErrMalformed},
		{"kid of other keys", func(ev *Evidence) { ev.Kid = Kid(otherKEM, sig) }, ErrBinding},
		{"key swapped", func(ev *Evidence) { ev.Keys.KEM = otherKEM }, ErrBinding},
		{"reportData of other keys", func(ev *Evidence) {
			rd := ReportData(otherKEM, sig)
			ev.ReportData = hex.EncodeToString(rd[:])
		}, ErrBinding},
		{"sgx-dcap without quote", func(ev *Evidence) { ev.Type = TypeSGXDCAP; ev.Simulated = nil }, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev := NewSimulated("nodejs:20", kem, sig, "00")
			tc.mutate(ev)
			if _, err := Verify(ev, allow); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := Verify(nil, allow); !errors.Is(err, ErrMalformed) {
		t.Fatalf("nil: %v", err)
	}
}

func TestParse_Refuses(t *testing.T) {
	for name, in := range map[string][]byte{
		"not json":  []byte("{"),
		"empty":     []byte(""),
		"array":     []byte("[]"),
		"oversize":  bytes.Repeat([]byte(" "), maxEvidenceBytes+1),
		"bad b64":   []byte(`{"v":1,"type":"simulated","keys":{"kem":"!!"}}`),
		"no fields": []byte(`{}`),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

// Equal looks at every field of Evidence (a field added later and left out of Equal fails here),
// and Clone shares no memory with its original.
func TestEvidence_EqualAndClone(t *testing.T) {
	base := NewSimulated("nodejs:20", bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), strings.Repeat("ab", 32))
	base.Quote, base.Raw = []byte{3}, []byte(`{"v":1}`)
	if !base.Equal(base.Clone()) {
		t.Fatal("a clone is not equal to its original")
	}
	var nilEv *Evidence
	if !nilEv.Equal(nil) || base.Equal(nil) || nilEv.Equal(base) {
		t.Error("nil evidence compares wrongly")
	}
	changes := map[string]func(*Evidence){
		"V": func(e *Evidence) { e.V++ }, "Type": func(e *Evidence) { e.Type = TypeSGXDCAP },
		"Image": func(e *Evidence) { e.Image += "x" }, "Kid": func(e *Evidence) { e.Kid += "0" },
		"Keys": func(e *Evidence) { e.Keys.KEM[0]++ }, "ReportData": func(e *Evidence) { e.ReportData += "0" },
		"Quote": func(e *Evidence) { e.Quote[0]++ }, "Simulated": func(e *Evidence) { e.Simulated.Measurement += "0" },
		"Raw": func(e *Evidence) { e.Raw[0]++ },
	}
	typ := reflect.TypeOf(Evidence{})
	for i := range typ.NumField() {
		if _, ok := changes[typ.Field(i).Name]; !ok {
			t.Errorf("field %s has no case here: does Equal compare it?", typ.Field(i).Name)
		}
	}
	for name, change := range changes {
		c := base.Clone()
		change(c)
		if base.Equal(c) || c.Equal(base) {
			t.Errorf("a change of %s is not seen", name)
		}
		if !base.Equal(base.Clone()) || base.Keys.KEM[0] != 1 || base.Quote[0] != 3 || base.Raw[0] != '{' || base.Simulated.Measurement != strings.Repeat("ab", 32) {
			t.Fatalf("changing a clone's %s changed the original", name)
		}
	}
	if base.Keys.Sig[0] != 2 {
		t.Error("the original's sig changed")
	}
}
