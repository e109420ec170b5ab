package whisk

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedFixtures adds every testdata fixture whose name starts with prefix.
func seedFixtures(f *testing.F, prefix string) {
	f.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", prefix+"*.json"))
	if err != nil || len(names) == 0 {
		f.Fatalf("no %s fixtures: %v", prefix, err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// Whatever is accepted must serialise, parse again, and serialise to the
// same bytes; whatever is rejected must wrap ErrMalformed. Nothing panics.
func FuzzParseActivationMessage(f *testing.F) {
	seedFixtures(f, "activation_message_")
	f.Add([]byte(`{"transid":["t",1],"action":"a/b","user":{"namespace":{"name":"n"}},"activationId":"00000000000000000000000000000000","rootControllerIndex":{"asString":"0"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseActivationMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		out, err := m.Serialize()
		if err != nil {
			t.Fatalf("accepted message does not serialise: %v", err)
		}
		if !bytes.Contains(out, m.TransID.Raw()) {
			t.Fatalf("transid not echoed: %s", out)
		}
		m2, err := ParseActivationMessage(out)
		if err != nil {
			t.Fatalf("serialised message does not parse: %v\n%s", err, out)
		}
		out2, err := m2.Serialize()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("round trip not stable (%v)\n%s\n%s", err, out, out2)
		}
		if m2.ActivationID != m.ActivationID || m2.Action != m.Action || !m2.TransID.Equal(m.TransID) {
			t.Fatalf("fields changed: %+v vs %+v", m, m2)
		}
	})
}

func FuzzParseAcknowledgement(f *testing.F) {
	seedFixtures(f, "ack_")
	f.Add([]byte(`{"transid":["t",1],"response":"00000000000000000000000000000000"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAcknowledgement(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		out, err := a.Serialize()
		if err != nil {
			t.Fatalf("accepted ack does not serialise: %v", err)
		}
		if !strings.HasPrefix(string(out), `{"transid":`+string(a.Transaction().Raw())) {
			t.Fatalf("transid not echoed first: %s", out)
		}
		a2, err := ParseAcknowledgement(out)
		if err != nil {
			t.Fatalf("serialised ack does not parse: %v\n%s", err, out)
		}
		out2, err := a2.Serialize()
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("round trip not stable (%v)\n%s\n%s", err, out, out2)
		}
		if a2.Kind() != a.Kind() || a2.AckActivationID() != a.AckActivationID() {
			t.Fatalf("kind or id changed: %v/%s vs %v/%s", a.Kind(), a.AckActivationID(), a2.Kind(), a2.AckActivationID())
		}
		s, err := a.Shrink().Serialize()
		if err != nil {
			t.Fatalf("shrunk ack does not serialise: %v", err)
		}
		if a3, err := ParseAcknowledgement(s); err != nil || a3.Kind() != a.Kind() {
			t.Fatalf("shrunk ack does not parse as %v: %v\n%s", a.Kind(), err, s)
		}
	})
}
