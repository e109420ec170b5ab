package whisk

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// The Scala controller's compact output, re-serialised, must come back byte
// for byte: same fields, same order, null revision, [] and {} defaults.
func TestActivationMessageGoldenRoundTrip(t *testing.T) {
	for _, name := range []string{
		"activation_message_blocking.json",
		"activation_message_health.json",
		"activation_message_array_content.json",
	} {
		t.Run(name, func(t *testing.T) {
			in := readFixture(t, name)
			m, err := ParseActivationMessage(in)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			out, err := m.Serialize()
			if err != nil {
				t.Fatalf("serialize: %v", err)
			}
			if !bytes.Equal(in, out) {
				t.Fatalf("round trip differs\n in: %s\nout: %s", in, out)
			}
		})
	}
}

func TestActivationMessageBlockingFields(t *testing.T) {
	m, err := ParseActivationMessage(readFixture(t, "activation_message_blocking.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m.TransID.ID != "Lsak05H6yGift4jzypAFWOUMLQGj7jAf" || m.TransID.StartMillis() != 1700000000123 {
		t.Errorf("transid = %+v", m.TransID)
	}
	if m.Action.String() != "guest/hello" || m.Action.Version != "0.0.1" || m.Action.Namespace() != "guest" || m.Action.Package() != "" {
		t.Errorf("action = %+v", m.Action)
	}
	if m.Revision == nil || *m.Revision != "1-b4f39c1aa00716db5039c5e0babbb4c5" {
		t.Errorf("revision = %v", m.Revision)
	}
	if m.User.Namespace.Name != "guest" || m.User.AuthKey.UUID() != "23bc46b1-71f6-4ed5-8c54-816aa4f8c502" || len(m.User.AuthKey.Key()) != 64 {
		t.Errorf("user = %+v", m.User)
	}
	if m.RootControllerIndex.AckTopic() != "completed0" || !m.Blocking || string(m.Content) != `{"name":"Bob"}` {
		t.Errorf("message = %+v", m)
	}
	if len(m.InitArgs) != 0 || len(m.LockedArgs) != 0 || m.Cause != "" || m.TraceContext != nil {
		t.Errorf("optional fields = %+v", m)
	}
}

func TestActivationMessageHealthAction(t *testing.T) {
	in := readFixture(t, "activation_message_health.json")
	m, err := ParseActivationMessage(in)
	if err != nil {
		t.Fatal(err)
	}
	if m.Revision != nil || m.Content != nil || m.Blocking {
		t.Errorf("revision=%v content=%s blocking=%v", m.Revision, m.Content, m.Blocking)
	}
	if m.TransID.ID != TransIDInvokerHealth || !m.TransID.IsSystem() {
		t.Errorf("transid = %+v", m.TransID)
	}
	if m.Action.Namespace() != "whisk.system" || m.Action.Name != "invokerHealthTestAction0" {
		t.Errorf("action = %+v", m.Action)
	}
	if len(m.User.Rights) != 0 || string(m.User.Limits) != "{}" {
		t.Errorf("user = %+v", m.User)
	}
	// The completion for the health action must carry the transid unchanged.
	c := &CompletionMessage{TransID: m.TransID, ActivationID: m.ActivationID,
		Instance: InvokerInstanceID{Instance: 0, UserMemory: MB(2048), UniqueName: ptr("0")}}
	out, err := c.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	if want := readFixture(t, "ack_completion.json"); !bytes.Equal(out, want) {
		t.Fatalf("completion\n got: %s\nwant: %s", out, want)
	}
}

func TestActivationMessageStringActionAndExtras(t *testing.T) {
	in := readFixture(t, "activation_message_string_action.json")
	m, err := ParseActivationMessage(in)
	if err != nil {
		t.Fatal(err)
	}
	if m.Action.Path != "guest/utils" || m.Action.Name != "echo" || m.Action.Package() != "utils" {
		t.Errorf("action = %+v", m.Action)
	}
	if !m.TransID.ExtraLogging || m.RootControllerIndex.AsString != "controller-a" {
		t.Errorf("transid=%+v controller=%+v", m.TransID, m.RootControllerIndex)
	}
	if m.Cause != "ffeeddccbbaa99887766554433221100" || m.LockedArgs["SECRET"] != "aes-256" || m.InitArgs[0] != "SECRET" {
		t.Errorf("extras = %+v", m)
	}
	if m.TraceContext["traceparent"] == "" || string(m.User.Limits) != `{"concurrentInvocations":30}` {
		t.Errorf("trace=%v limits=%s", m.TraceContext, m.User.Limits)
	}
	out, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	// The transid keeps its original spacing; content keeps 1.50 and is not
	// HTML-escaped; unknown fields are dropped; controller gets instanceType.
	for _, want := range []string{
		`"transid":["c2FtcGxlVHJhbnNhY3Rpb25JZDAwMDAx", 1700000000456, true]`,
		`"content":{"payload": "<b>&</b>", "n": 1.50}`,
		`"action":{"path":"guest/utils","name":"echo"}`,
		`"rootControllerIndex":{"asString":"controller-a","instanceType":"controller"}`,
		`"cause":"ffeeddccbbaa99887766554433221100"`,
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("serialized lacks %s\n%s", want, out)
		}
	}
	if bytes.Contains(out, []byte("someFutureField")) {
		t.Errorf("unknown field was kept: %s", out)
	}
	again, err := ParseActivationMessage(out)
	if err != nil {
		t.Fatal(err)
	}
	out2, _ := again.Serialize()
	if !bytes.Equal(out, out2) {
		t.Fatalf("second round trip differs\n%s\n%s", out, out2)
	}
}

func TestActivationMessageArrayContentAndParent(t *testing.T) {
	m, err := ParseActivationMessage(readFixture(t, "activation_message_array_content.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Content) != "[1,2,3]" || m.ContentObject() {
		t.Errorf("content = %s", m.Content)
	}
	if m.Action.Binding != "guest/mypkg" || m.Action.Version != "0.0.3" {
		t.Errorf("action = %+v", m.Action)
	}
	if got := string(m.TransID.Raw()); got != `["ArrayContentTid000000000000000001",1700000000789,["parentTid",1700000000700]]` {
		t.Errorf("transid raw = %s", got)
	}
}

func TestParseActivationMessageRejects(t *testing.T) {
	base := string(readFixture(t, "activation_message_blocking.json"))
	repl := func(old, new string) string {
		if !strings.Contains(base, old) {
			t.Fatalf("fixture lacks %q", old)
		}
		return strings.Replace(base, old, new, 1)
	}
	cases := map[string]string{
		"empty":                 "",
		"not an object":         `[1,2]`,
		"truncated":             base[:len(base)-1],
		"no transid":            repl(`"transid":["Lsak05H6yGift4jzypAFWOUMLQGj7jAf",1700000000123],`, ""),
		"transid object":        repl(`["Lsak05H6yGift4jzypAFWOUMLQGj7jAf",1700000000123]`, `{"id":"x"}`),
		"transid one element":   repl(`["Lsak05H6yGift4jzypAFWOUMLQGj7jAf",1700000000123]`, `["x"]`),
		"transid number id":     repl(`["Lsak05H6yGift4jzypAFWOUMLQGj7jAf",1700000000123]`, `[1,2]`),
		"transid string start":  repl(`1700000000123]`, `"1700000000123"]`),
		"transid bad third":     repl(`1700000000123]`, `1700000000123,"x",["p",1]]`),
		"no action":             repl(`"action":{"path":"guest","name":"hello","version":"0.0.1"},`, ""),
		"action bad name":       repl(`"name":"hello"`, `"name":"-hello"`),
		"action bare string":    repl(`{"path":"guest","name":"hello","version":"0.0.1"}`, `"hello"`),
		"action number":         repl(`{"path":"guest","name":"hello","version":"0.0.1"}`, `42`),
		"revision number":       repl(`"1-b4f39c1aa00716db5039c5e0babbb4c5"`, `1`),
		"activationId upper":    repl(`d3b7ed1f632b4bd1b7ed1f632b4bd101`, `D3B7ED1F632B4BD1B7ED1F632B4BD101`),
		"activationId short":    repl(`d3b7ed1f632b4bd1b7ed1f632b4bd101`, `d3b7ed1f632b4bd1b7ed1f632b4bd10`),
		"activationId dashes":   repl(`"d3b7ed1f632b4bd1b7ed1f632b4bd101"`, `"d3b7ed1f-632b-4bd1-b7ed-1f632b4b"`),
		"no user":               repl(`"user":`, `"nouser":`),
		"user namespace empty":  repl(`"namespace":{"name":"guest"`, `"namespace":{"name":""`),
		"user limits array":     repl(`"limits":{}`, `"limits":[]`),
		"no controller":         repl(`"rootControllerIndex"`, `"rootcontrollerindex"`),
		"controller bad chars":  repl(`"asString":"0"`, `"asString":"a/b"`),
		"controller wrong type": repl(`"instanceType":"controller"`, `"instanceType":"invoker"`),
		"blocking string":       repl(`"blocking":true`, `"blocking":"true"`),
		"initArgs not strings":  repl(`"initArgs":[]`, `"initArgs":[1]`),
		"lockedArgs array":      repl(`"lockedArgs":{}`, `"lockedArgs":[]`),
		"cause not id":          repl(`"initArgs"`, `"cause":"nope","initArgs"`),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseActivationMessage([]byte(in))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestParseActivationMessageOversize(t *testing.T) {
	big := `{"pad":"` + strings.Repeat("x", MaxMessageBytes) + `"}`
	_, err := ParseActivationMessage([]byte(big))
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrTooLarge and ErrMalformed", err)
	}
}

// OpenWhisk writes nothing for these, but the Scala reader needs revision,
// initArgs and lockedArgs, and a missing content must stay missing.
func TestActivationMessageSerializeDefaults(t *testing.T) {
	m := &ActivationMessage{
		TransID:             NewTransactionID("abc", time.UnixMilli(1700000000000)),
		Action:              FullyQualifiedEntityName{Path: "guest", Name: "hello"},
		User:                Identity{Subject: "guest", Namespace: Namespace{Name: "guest", UUID: "u"}, AuthKey: AuthKey{APIKey: "u:k"}},
		ActivationID:        ActivationIDNew(),
		RootControllerIndex: NewControllerInstanceID("0"),
	}
	out, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"transid":["abc",1700000000000],"action":{"path":"guest","name":"hello"},"revision":null,` +
		`"user":{"subject":"guest","namespace":{"name":"guest","uuid":"u"},"authkey":{"api_key":"u:k"},"rights":[],"limits":{}},` +
		`"activationId":"` + m.ActivationID + `","rootControllerIndex":{"asString":"0","instanceType":"controller"},` +
		`"blocking":false,"initArgs":[],"lockedArgs":{}}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
	m.Content = []byte(`{bad`)
	if _, err := m.Serialize(); err == nil {
		t.Fatal("invalid content serialized")
	}
}

func TestTransactionIDEchoExactBytes(t *testing.T) {
	for _, raw := range []string{
		`["sid_invokerHealth",1700000000000]`,
		`[ "sid_invokerHealth" , 1700000000000 ]`,
		`["x<y>&z",1.7000000000001e12,true]`,
		`["child",5,false,["parent",4,true,["grandparent",3]]]`,
		`["child",5,{"weird":"parent"}]`,
	} {
		var tid TransactionID
		if err := tid.UnmarshalJSON([]byte(raw)); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		c := &CompletionMessage{TransID: tid, ActivationID: ActivationIDNew(), Instance: InvokerInstanceID{UserMemory: MB(1)}}
		out, err := c.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(out, []byte(`{"transid":`+raw+`,`)) {
			t.Errorf("echo of %s changed: %s", raw, out)
		}
	}
	tid := NewTransactionID("sid_invokerHealth", time.UnixMilli(1700000000000))
	if got := string(tid.Raw()); got != `["sid_invokerHealth",1700000000000]` {
		t.Errorf("built raw = %s", got)
	}
	var parsed TransactionID
	if err := parsed.UnmarshalJSON(tid.Raw()); err != nil || !parsed.Equal(tid) {
		t.Errorf("parsed %+v err %v", parsed, err)
	}
	r := NewRandomTransactionID(time.Now())
	if len(r.ID) != 32 || r.IsSystem() {
		t.Errorf("random transid %q", r.ID)
	}
}

func TestActivationIDNew(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id := ActivationIDNew()
		if !ValidActivationID(id) {
			t.Fatalf("invalid id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
}

func ptr[T any](v T) *T { return &v }

func TestHealthTestActionName(t *testing.T) {
	m, err := ParseActivationMessage(readFixture(t, "activation_message_health.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := HealthTestAction(m.RootControllerIndex); got != m.Action {
		t.Fatalf("HealthTestAction = %+v, message has %+v", got, m.Action)
	}
}

// A message whose content went by reference carries contentRef instead of content; it round-trips,
// the reference checks the fetched bytes, and a reference that could not be honoured is malformed.
func TestActivationMessageContentRef(t *testing.T) {
	base := string(readFixture(t, "activation_message_blocking.json"))
	m, err := ParseActivationMessage([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	content := m.Content
	m.Content, m.ContentRef = nil, NewContentRef(content)
	out, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(out), `,"contentRef":{"bytes":`+strconv.Itoa(len(content))+`,"sha256":"`+m.ContentRef.SHA256+`"}}`) ||
		strings.Contains(string(out), `"content":`) {
		t.Fatalf("serialized %s", out)
	}
	back, err := ParseActivationMessage(out)
	if err != nil {
		t.Fatal(err)
	}
	if back.ContentRef == nil || *back.ContentRef != *m.ContentRef || back.Content != nil {
		t.Fatalf("parsed back %+v", back)
	}
	if err := back.ContentRef.Check(content); err != nil {
		t.Fatalf("the content fails its own reference: %v", err)
	}
	tampered := bytes.Clone(content)
	tampered[len(tampered)-2] ^= 1
	if back.ContentRef.Check(tampered) == nil || back.ContentRef.Check(content[1:]) == nil {
		t.Fatal("other content passes the reference")
	}

	sum := m.ContentRef.SHA256
	for name, ref := range map[string]string{
		"with content":  `"content":{"a":1},"contentRef":{"bytes":7,"sha256":"` + sum + `"}`,
		"zero bytes":    `"contentRef":{"bytes":0,"sha256":"` + sum + `"}`,
		"over the max":  `"contentRef":{"bytes":` + strconv.Itoa(MaxContentBytes+1) + `,"sha256":"` + sum + `"}`,
		"short digest":  `"contentRef":{"bytes":7,"sha256":"abc"}`,
		"upper digest":  `"contentRef":{"bytes":7,"sha256":"` + strings.ToUpper(sum) + `"}`,
		"not an object": `"contentRef":"` + sum + `"`,
	} {
		in := strings.Replace(string(out), `"contentRef":{"bytes":`+strconv.Itoa(len(content))+`,"sha256":"`+sum+`"}`, ref, 1)
		if _, err := ParseActivationMessage([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

// Size is OpenWhisk's measure (keys plus compact values), below the JSON the parameters become.
func TestParametersSize(t *testing.T) {
	p := Parameters{
		{Key: "name", Value: json.RawMessage(`"a b"`)},
		{Key: "obj", Value: json.RawMessage("{ \"x\" : [1, 2],\n \"s\": \" \\\" \" }")},
		{Key: "unset"},
	}
	// name 4 + "a b" 5, obj 3 + {"x":[1,2],"s":" \" "} 22, unset 5 + null 4
	if got, want := p.Size(), 4+5+3+22+5+4; got != want {
		t.Fatalf("Size = %d, want %d", got, want)
	}
	obj, err := p.ToObject()
	if err != nil {
		t.Fatal(err)
	}
	if len(obj) <= p.Size() {
		t.Fatalf("the content object (%d bytes) is not larger than the measure (%d)", len(obj), p.Size())
	}
}
