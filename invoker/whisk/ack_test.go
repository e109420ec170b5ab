package whisk

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestAckGoldenRoundTrip(t *testing.T) {
	cases := []struct {
		file    string
		kind    AckKind
		frees   bool
		id      string
		sysErr  bool
		known   bool
		hasFull bool
	}{
		{"ack_completion.json", AckCompletion, true, "57db832f1e9642f79b832f1e9682f726", false, true, false},
		{"ack_result.json", AckResult, false, "d3b7ed1f632b4bd1b7ed1f632b4bd101", false, true, true},
		{"ack_result_shrunk.json", AckResult, false, "d3b7ed1f632b4bd1b7ed1f632b4bd101", false, false, false},
		{"ack_combined_shrunk.json", AckCombined, true, "d3b7ed1f632b4bd1b7ed1f632b4bd101", false, true, false},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			in := readFixture(t, c.file)
			a, err := ParseAcknowledgement(in)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if a.Kind() != c.kind || a.AckActivationID() != c.id || (a.SlotFree() != nil) != c.frees {
				t.Errorf("kind=%v id=%s slot=%v", a.Kind(), a.AckActivationID(), a.SlotFree())
			}
			if se, known := a.SystemError(); se != c.sysErr || known != c.known {
				t.Errorf("SystemError = %v,%v", se, known)
			}
			if r := a.AckResponse(); (r != nil && r.Activation != nil) != c.hasFull {
				t.Errorf("response = %+v", r)
			}
			out, err := a.Serialize()
			if err != nil {
				t.Fatalf("serialize: %v", err)
			}
			if !bytes.Equal(in, out) {
				t.Fatalf("round trip differs\n in: %s\nout: %s", in, out)
			}
		})
	}
}

func TestAckCombinedFull(t *testing.T) {
	a, err := ParseAcknowledgement(readFixture(t, "ack_combined_full.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, ok := a.(*CombinedCompletionAndResultMessage)
	if !ok {
		t.Fatalf("type %T", a)
	}
	act := c.Response.Activation
	if act == nil || !act.IsSystemError() || !c.IsSystemError {
		t.Fatalf("activation = %+v", act)
	}
	// ISO timestamps are read and written back as epoch millis.
	if act.Start.UnixMilli() != 1700000000200 || act.End.UnixMilli() != 1700000000200 {
		t.Errorf("start=%v end=%v", act.Start, act.End)
	}
	inv := c.Instance
	if inv.Instance != 3 || inv.UserMemory != MB(2048) || inv.BusyMemory == nil || *inv.BusyMemory != MB(512) ||
		inv.Tags[0] != "sgx" || inv.DedicatedNamespaces[0] != "guest" || inv.String() != "invoker3/3/invoker3" {
		t.Errorf("instance = %+v", inv)
	}
	out, err := a.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"start":1700000000200`, `"userMemory":"2048 MB"`, `"busyMemory":"512 MB"`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("missing %s in %s", want, out)
		}
	}
}

func TestAckShrink(t *testing.T) {
	full, err := ParseAcknowledgement(readFixture(t, "ack_result.json"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := full.Shrink().Serialize()
	if err != nil {
		t.Fatal(err)
	}
	if want := readFixture(t, "ack_result_shrunk.json"); !bytes.Equal(out, want) {
		t.Fatalf("shrunk\n got: %s\nwant: %s", out, want)
	}
	if full.AckResponse().Activation == nil {
		t.Fatal("Shrink modified the original")
	}

	var act WhiskActivation
	if err := act.UnmarshalJSON(readFixture(t, "activation.json")); err != nil {
		t.Fatal(err)
	}
	tid := NewTransactionID("Lsak05H6yGift4jzypAFWOUMLQGj7jAf", time.UnixMilli(1700000000123))
	inv := InvokerInstanceID{Instance: 0, UserMemory: MB(2048)}
	combined := NewCombined(tid, &act, inv).Shrink()
	out, err = combined.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	if want := readFixture(t, "ack_combined_shrunk.json"); !bytes.Equal(out, want) {
		t.Fatalf("combined shrunk\n got: %s\nwant: %s", out, want)
	}
	if combined.SlotFree() == nil {
		t.Fatal("shrunk combined must still free the slot")
	}

	// A Result carries the activation without logs.
	r := NewResult(tid, &act)
	if len(r.Response.Activation.Logs) != 0 || len(act.Logs) == 0 {
		t.Fatalf("result logs = %v, original %v", r.Response.Activation.Logs, act.Logs)
	}
	c := NewCompletion(tid, &act, inv)
	if c.ActivationID != act.ActivationID || c.IsSystemError {
		t.Fatalf("completion = %+v", c)
	}
}

// The kind is decided only by which keys exist, exactly as OpenWhisk does.
func TestParseAcknowledgementKind(t *testing.T) {
	const (
		tid  = `"transid":["t",1]`
		id   = `"d3b7ed1f632b4bd1b7ed1f632b4bd101"`
		inst = `"instance":{"instance":0,"userMemory":"1 MB","instanceType":"invoker","tags":[],"dedicatedNamespaces":[]}`
	)
	cases := []struct {
		in   string
		kind AckKind
		ok   bool
	}{
		{`{` + tid + `,"response":` + id + `,` + inst + `}`, AckCombined, true},
		{`{` + tid + `,"activationId":` + id + `,` + inst + `}`, AckCompletion, true},
		{`{` + tid + `,"response":` + id + `}`, AckResult, true},
		{`{` + tid + `,"response":` + id + `,"isSystemError":true}`, AckResult, true},
		{`{` + tid + `,"activationId":` + id + `}`, 0, false},           // neither: Result without response
		{`{` + tid + `,` + inst + `}`, 0, false},                        // Completion without activationId
		{`{` + tid + `,"response":` + id + `,"instance":{}}`, 0, false}, // Combined with a bad instance
		{`{` + tid + `,"response":42}`, 0, false},
		{`{` + tid + `,"response":"not-an-id"}`, 0, false},
		{`{` + tid + `,"response":{"activationId":"x"}}`, 0, false},
		{`{"response":` + id + `}`, 0, false},
		{`{` + tid + `,"activationId":` + id + `,"isSystemError":"no",` + inst + `}`, 0, false},
		{`{` + tid + `,"activationId":` + id + `,` + `"instance":{"instance":0,"userMemory":"1 MB","instanceType":"controller"}}`, 0, false},
		{`null`, 0, false},
		{`"x"`, 0, false},
	}
	for _, c := range cases {
		a, err := ParseAcknowledgement([]byte(c.in))
		if !c.ok {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: err = %v, want ErrMalformed", c.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if a.Kind() != c.kind {
			t.Errorf("%s: kind %v want %v", c.in, a.Kind(), c.kind)
		}
	}
}

func TestPingMessage(t *testing.T) {
	in := readFixture(t, "ping.json")
	p, err := ParsePingMessage(in)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name.Name() != "invoker0" || !p.IsEnabled || p.Name.UserMemory != MB(2048) {
		t.Errorf("ping = %+v", p)
	}
	out, err := p.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, out) {
		t.Fatalf("round trip\n in: %s\nout: %s", in, out)
	}
	// A ping without isEnabled means enabled; the minimal writer form still
	// carries every field the controller's reader requires.
	p, err = ParsePingMessage([]byte(`{"name":{"instance":1,"userMemory":"512 MB"}}`))
	if err != nil || !p.IsEnabled {
		t.Fatalf("ping %+v err %v", p, err)
	}
	p.IsEnabled = false
	out, _ = p.Serialize()
	want := `{"name":{"instance":1,"userMemory":"512 MB","instanceType":"invoker","tags":[],"dedicatedNamespaces":[]},"isEnabled":false}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
	// Ours: the warm images, written only when there are some, read back as written.
	p.Warm = []WarmImage{{Image: "nodejs:20", Kid: "k1"}, {Image: "nodejs:18"}}
	out, _ = p.Serialize()
	want = want[:len(want)-1] + `,"warm":[{"image":"nodejs:20","kid":"k1"},{"image":"nodejs:18"}]}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
	if back, err := ParsePingMessage(out); err != nil || len(back.Warm) != 2 || back.Warm[0] != p.Warm[0] || back.Warm[1] != p.Warm[1] {
		t.Fatalf("warm images read back as %+v (%v)", back, err)
	}
	many := `{"name":{"instance":1,"userMemory":"1 MB"},"warm":[` + strings.Repeat(`{"image":"x"},`, maxWarmImages) + `{"image":"y"}]}`
	for _, bad := range []string{`{}`, `{"name":{"instance":1}}`, `{"name":{"userMemory":"1 MB"}}`, `{"name":{"instance":-1,"userMemory":"1 MB"}}`,
		`{"name":{"instance":1,"userMemory":"1 TB"}}`, `{"name":{"instance":1,"userMemory":"1 MB"},"isEnabled":1}`,
		`{"name":{"instance":1,"userMemory":"1 MB"},"warm":{}}`, many} {
		if _, err := ParsePingMessage([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}

func TestAckJSONInterfaces(t *testing.T) {
	in := readFixture(t, "ack_completion.json")
	var c CompletionMessage
	if err := json.Unmarshal(in, &c); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(c) // by value
	if err != nil || !bytes.Equal(out, in) {
		t.Fatalf("marshal by value: %v\n%s", err, out)
	}
	var r ResultMessage
	if err := json.Unmarshal(in, &r); !errors.Is(err, ErrMalformed) {
		t.Fatalf("completion read as result: %v", err)
	}
}
