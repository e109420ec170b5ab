package whisk

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestByteSize(t *testing.T) {
	cases := []struct {
		in   string
		want ByteSize
		str  string
		ok   bool
	}{
		{"2048 MB", MB(2048), "2048 MB", true},
		{"2048m", MB(2048), "2048 MB", true},
		{"2048 mb", MB(2048), "2048 MB", true},
		{"2 GB", MB(2048), "2048 MB", true},
		{"1g", MB(1024), "1024 MB", true},
		{"512 KB", KB(512), "512 KB", true},
		{"1536 k", KB(1536), "1536 KB", true},
		{"10 B", 10, "10 B", true},
		{"10b", 10, "10 B", true},
		{"2147483648 B", MB(2048), "2048 MB", true},
		{" 1 MB ", MB(1), "1 MB", true},
		{"0 MB", 0, "0 MB", true},
		{"", 0, "", false},
		{"MB", 0, "", false},
		{"-1 MB", 0, "", false},
		{"1.5 MB", 0, "", false},
		{"1 TB", 0, "", false},
		{"1  MB", 0, "", false},
		{"1 MBB", 0, "", false},
		{"1 BB", 0, "", false},
		{"99999999999999999999 B", 0, "", false},
		{"9999999999999 GB", 0, "", false},
	}
	for _, c := range cases {
		got, err := ParseByteSize(c.in)
		if !c.ok {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseByteSize(%q) = %v, %v; want ErrMalformed", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want || got.String() != c.str {
			t.Errorf("ParseByteSize(%q) = %v (%d), %v; want %s", c.in, got, int64(got), err, c.str)
		}
		back, err := ParseByteSize(got.String())
		if err != nil || back != got {
			t.Errorf("String form %q does not parse back: %v %v", got.String(), back, err)
		}
	}
	var b ByteSize
	if err := json.Unmarshal([]byte(`2048`), &b); !errors.Is(err, ErrMalformed) {
		t.Errorf("number accepted: %v", err)
	}
	if _, err := json.Marshal(ByteSize(-1)); err == nil {
		t.Error("negative size marshalled")
	}
	if MB(3).MBytes() != 3 || (MB(1)+1).String() != "1048577 B" {
		t.Error("MBytes/String")
	}
}

func TestEntityNames(t *testing.T) {
	cases := []struct {
		in                       string
		path, name, ns, pkg, str string
		ok                       bool
	}{
		{"guest/hello", "guest", "hello", "guest", "", "guest/hello", true},
		{"/guest/hello", "guest", "hello", "guest", "", "guest/hello", true},
		{"guest/pkg/hello", "guest/pkg", "hello", "guest", "pkg", "guest/pkg/hello", true},
		{"/whisk.system/utils/echo", "whisk.system/utils", "echo", "whisk.system", "utils", "whisk.system/utils/echo", true},
		{"guest//hello/", "guest", "hello", "guest", "", "guest/hello", true},
		{"a b/c@d.e&f-g", "a b", "c@d.e&f-g", "a b", "", "a b/c@d.e&f-g", true},
		{"hello", "", "", "", "", "", false},
		{"/", "", "", "", "", "", false},
		{"", "", "", "", "", "", false},
		{"guest/-bad", "", "", "", "", "", false},
		{"guest/trailing ", "", "", "", "", "", false},
		{"guest/h\u00e9llo", "", "", "", "", "", false},
		{"guest/" + strings.Repeat("a", 257), "", "", "", "", "", false},
	}
	for _, c := range cases {
		n, err := ParseEntityName(c.in)
		if !c.ok {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseEntityName(%q) = %+v, %v; want error", c.in, n, err)
			}
			continue
		}
		if err != nil || n.Path != c.path || n.Name != c.name || n.Namespace() != c.ns || n.Package() != c.pkg || n.String() != c.str {
			t.Errorf("ParseEntityName(%q) = %+v (ns %q pkg %q), %v", c.in, n, n.Namespace(), n.Package(), err)
		}
		// The string form is accepted as JSON and written as the object form.
		var fq FullyQualifiedEntityName
		js, _ := json.Marshal(c.in)
		if err := json.Unmarshal(js, &fq); err != nil || fq != n {
			t.Errorf("JSON string %s: %+v %v", js, fq, err)
		}
	}
	var fq FullyQualifiedEntityName
	if err := json.Unmarshal([]byte(`{"path":"/guest/pkg/","name":"a","version":"0.0.2","binding":"/guest/b"}`), &fq); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(fq)
	if string(out) != `{"path":"guest/pkg","name":"a","version":"0.0.2","binding":"guest/b"}` {
		t.Errorf("normalised = %s", out)
	}
	if fq.QualifiedNameWithLeadingSlash() != "/guest/pkg/a" {
		t.Errorf("leading slash = %s", fq.QualifiedNameWithLeadingSlash())
	}
	for _, bad := range []string{`{"path":"","name":"a"}`, `{"path":"g","name":""}`, `{"path":"g","name":"a","binding":"-x"}`, `[]`, `{"path":1,"name":"a"}`} {
		if err := json.Unmarshal([]byte(bad), &fq); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}

func TestActivationExternalAndSummary(t *testing.T) {
	var a WhiskActivation
	if err := json.Unmarshal(readFixture(t, "activation.json"), &a); err != nil {
		t.Fatal(err)
	}
	ext, err := a.External()
	if err != nil {
		t.Fatal(err)
	}
	assertJSONEqual(t, ext, readFixture(t, "activation_external.json"))

	// Without a duration it is computed; without an end there is neither.
	a.Duration = nil
	a.End = a.Start.Add(75 * time.Millisecond)
	ext, _ = a.External()
	var m map[string]any
	_ = json.Unmarshal(ext, &m)
	if m["duration"] != float64(75) {
		t.Errorf("computed duration = %v", m["duration"])
	}
	sum, _ := a.Summary()
	assertJSONEqual(t, sum, []byte(`{"namespace":"guest","name":"hello","version":"0.0.1","publish":false,
		"annotations":`+string(mustJSON(t, a.Annotations))+`,"activationId":"d3b7ed1f632b4bd1b7ed1f632b4bd101",
		"start":1700000000130,"end":1700000000205,"duration":75,"statusCode":0}`))
	a.End = time.Time{}
	ext, _ = a.External()
	m = nil
	_ = json.Unmarshal(ext, &m)
	if _, ok := m["end"]; ok {
		t.Errorf("unfinished activation has end: %s", ext)
	}
	if _, ok := m["duration"]; ok {
		t.Errorf("unfinished activation has duration: %s", ext)
	}
}

func TestActivationResponses(t *testing.T) {
	cases := []struct {
		r      ActivationResponse
		code   int
		result string
		sysErr bool
		status string
	}{
		{Success(json.RawMessage(`{"a":1}`)), 0, `{"a":1}`, false, "success"},
		{ApplicationError(MsgActionNotFound), 1, `{"error":"Action could not be found or may have been deleted."}`, false, "application error"},
		{DeveloperError(MsgTimedOut(60000, false)), 2, `{"error":"The action exceeded its time limits of 60000 milliseconds."}`, false, "action developer error"},
		{WhiskError(MsgActionNotFetched), 3, `{"error":"Action could not be fetched."}`, true, "whisk internal error"},
		{ErrorResponse(StatusApplicationError, json.RawMessage(`{"code":7}`)), 1, `{"error":{"code":7}}`, false, "application error"},
		{ApplicationError("<&>"), 1, `{"error":"<&>"}`, false, "application error"},
	}
	for _, c := range cases {
		if c.r.StatusCode != c.code || string(c.r.Result) != c.result || c.r.IsSystemError() != c.sysErr || StatusMessage(c.r.StatusCode) != c.status {
			t.Errorf("response %+v (%s)", c.r, c.r.Result)
		}
		b, err := json.Marshal(c.r)
		if err != nil {
			t.Fatal(err)
		}
		var back ActivationResponse
		if err := json.Unmarshal(b, &back); err != nil || back.StatusCode != c.code {
			t.Errorf("round trip %s: %+v %v", b, back, err)
		}
	}
	if got := MsgTimedOut(100, true); got != "The action exceeded its time limits of 100 milliseconds during initialization." {
		t.Error(got)
	}
	if got := MsgTruncatedResponse(2000000, 1048576, "{\"a\":"); got != "The action produced a response that exceeded the allowed length: 2000000 > 1048576 bytes. The truncated response was: {\"a\":" {
		t.Error(got)
	}
	if got := MsgTruncatedLogs(MB(10)); got != "Logs were truncated because the total bytes size exceeds the limit of 10485760 bytes." {
		t.Error(got)
	}
	if MsgInvalidRunResponse("") != "The action did not produce a valid JSON or JSON Array response." || MsgInvalidInitResponse("x") != "The action failed during initialization: x" {
		t.Error("invalid response texts")
	}
	for _, bad := range []string{`{}`, `{"statusCode":4}`, `{"statusCode":"0"}`, `[]`} {
		var r ActivationResponse
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestWhiskActivationRejects(t *testing.T) {
	good := string(readFixture(t, "activation.json"))
	for name, in := range map[string]string{
		"bad id":        strings.Replace(good, `"activationId":"d3b7ed1f632b4bd1b7ed1f632b4bd101"`, `"activationId":"x"`, 1),
		"bad start":     strings.Replace(good, `"start":1700000000130`, `"start":"yesterday"`, 1),
		"bool end":      strings.Replace(good, `"end":1700000000180`, `"end":true`, 1),
		"no response":   strings.Replace(good, `"response":`, `"resp":`, 1),
		"logs not strs": strings.Replace(good, `"logs":["2024`, `"logs":[1,"2024`, 1),
		"annotations":   strings.Replace(good, `"annotations":[`, `"annotations":{"a":[`, 1) + "}",
	} {
		var a WhiskActivation
		if err := json.Unmarshal([]byte(in), &a); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestParameters(t *testing.T) {
	var p Parameters
	if err := json.Unmarshal([]byte(`[{"key":"a","value":1},{"key":"b","value":"x","init":true},{"key":"a","value":2},{"key":"c","value":null,"encryption":"aes-256"}]`), &p); err != nil {
		t.Fatal(err)
	}
	if len(p) != 3 {
		t.Fatalf("duplicate key not collapsed: %+v", p)
	}
	if v, _ := p.Get("a"); string(v) != "2" {
		t.Errorf("a = %s", v)
	}
	if s, ok := p.GetString("b"); !ok || s != "x" || !reflect.DeepEqual(p.InitKeys(), []string{"b"}) {
		t.Errorf("b = %q %v %v", s, ok, p.InitKeys())
	}
	if err := p.Set("a", map[string]int{"n": 3}); err != nil {
		t.Fatal(err)
	}
	if err := p.Set("d", json.RawMessage(`[true]`)); err != nil {
		t.Fatal(err)
	}
	if err := p.Set("e", json.RawMessage(`{bad`)); err == nil {
		t.Error("invalid raw value accepted")
	}
	out, _ := json.Marshal(p)
	want := `[{"key":"a","value":{"n":3}},{"key":"b","value":"x","init":true},{"key":"c","value":null,"encryption":"aes-256"},{"key":"d","value":[true]}]`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	merged := Parameters{{Key: "x", Value: json.RawMessage(`1`)}, {Key: "y", Value: json.RawMessage(`1`)}}.
		Merge(Parameters{{Key: "y", Value: json.RawMessage(`2`)}, {Key: "z", Value: json.RawMessage(`3`)}})
	obj, _ := merged.ToObject()
	if string(obj) != `{"x":1,"y":2,"z":3}` {
		t.Errorf("merge = %s", obj)
	}
	truthy := Parameters{}
	for k, v := range map[string]string{"t": "true", "f": "false", "n": "null", "zero": "0", "one": "1.5", "es": `""`, "s": `"x"`, "o": "{}", "a": "[]"} {
		_ = truthy.Set(k, json.RawMessage(v))
	}
	for k, want := range map[string]bool{"t": true, "f": false, "n": false, "zero": false, "one": true, "es": false, "s": true, "o": true, "a": true} {
		if truthy.IsTruthy(k, false) != want {
			t.Errorf("IsTruthy(%s) != %v", k, want)
		}
	}
	if !truthy.IsTruthy("missing", true) || truthy.IsTruthy("missing", false) {
		t.Error("missing key default")
	}
	if b, _ := json.Marshal(Parameters(nil)); string(b) != "[]" {
		t.Errorf("nil params = %s", b)
	}
	for _, bad := range []string{`{}`, `[1]`, `[{"value":1}]`, `[{"key":"a"}]`, `[{"key":1,"value":1}]`, `[{"key":"a","value":1,"init":"yes"}]`} {
		if err := json.Unmarshal([]byte(bad), &p); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}

func TestActionDocument(t *testing.T) {
	var a Action
	if err := json.Unmarshal(readFixture(t, "action.json"), &a); err != nil {
		t.Fatal(err)
	}
	if a.Revision != "2-5c0b1d2e3f4a5b6c7d8e9f0a1b2c3d4e" || a.Exec.Kind != "nodejs:20" || a.Exec.Code == "" || a.Limits != DefaultLimits() {
		t.Errorf("action = %+v", a)
	}
	if a.Annotations.IsTruthy("provide-api-key", true) || a.FullyQualifiedName().String() != "guest/hello" {
		t.Errorf("annotations = %+v", a.Annotations)
	}
	if err := a.Limits.Validate(); err != nil {
		t.Error(err)
	}
	out, _ := json.Marshal(a)
	var back Action
	if err := json.Unmarshal(out, &back); err != nil || !reflect.DeepEqual(a, back) {
		t.Errorf("round trip: %v\n%+v\n%+v", err, a, back)
	}

	// Missing limits take the defaults; a CouchDB _rev is the revision; code
	// may be an attachment record.
	doc := `{"namespace":"guest","name":"x","exec":{"kind":"nodejs:default","code":{"attachmentName":"couch:1234","attachmentType":"text/plain","length":10,"digest":"sha256-aa"},"binary":false},"limits":{"memory":128},"_rev":"7-x"}`
	if err := json.Unmarshal([]byte(doc), &a); err != nil {
		t.Fatal(err)
	}
	if a.Revision != "7-x" || a.Limits.Memory != 128 || a.Limits.Timeout != TimeoutDefaultMs || a.Exec.CodeAttachment == nil || a.Exec.CodeAttachment.AttachmentName != "couch:1234" {
		t.Errorf("action = %+v", a)
	}
	if a.Version != DefaultVersion || a.Limits.MemoryBytes() != MB(128) {
		t.Errorf("version %q", a.Version)
	}

	for _, c := range []struct {
		l  ActionLimits
		ok bool
	}{
		{DefaultLimits(), true},
		{ActionLimits{Timeout: 99, Memory: 256, Logs: 10, Concurrency: 1}, false},
		{ActionLimits{Timeout: 300001, Memory: 256, Logs: 10, Concurrency: 1}, false},
		{ActionLimits{Timeout: 100, Memory: 127, Logs: 0, Concurrency: 1}, false},
		{ActionLimits{Timeout: 300000, Memory: 512, Logs: 0, Concurrency: 1}, true},
		{ActionLimits{Timeout: 1000, Memory: 513, Logs: 10, Concurrency: 1}, false},
		{ActionLimits{Timeout: 1000, Memory: 256, Logs: 11, Concurrency: 1}, false},
		{ActionLimits{Timeout: 1000, Memory: 256, Logs: 10, Concurrency: 2}, false},
	} {
		if err := c.l.Validate(); (err == nil) != c.ok {
			t.Errorf("Validate(%+v) = %v", c.l, err)
		}
	}
	for _, bad := range []string{`{"name":"x"}`, `{"name":"x","exec":{"kind":"nodejs:20","code":5}}`, `{"name":"x","exec":{"code":"a"}}`, `{"name":"x","exec":{"kind":"k"},"limits":{"memory":"256"}}`} {
		if err := json.Unmarshal([]byte(bad), &a); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}

func TestExecShapes(t *testing.T) {
	cases := []struct {
		e    Exec
		want string
	}{
		{Exec{Kind: "nodejs:20", Code: "x"}, `{"kind":"nodejs:20","code":"x","binary":false}`},
		{Exec{Kind: "nodejs:20", Code: "UEsD", Binary: true, Main: "run"}, `{"kind":"nodejs:20","code":"UEsD","binary":true,"main":"run"}`},
		{Exec{Kind: KindBlackbox, Image: "me/img"}, `{"kind":"blackbox","image":"me/img","binary":false}`},
		{Exec{Kind: KindSequence, Components: []string{"/guest/a", "/guest/b"}}, `{"kind":"sequence","components":["/guest/a","/guest/b"]}`},
	}
	for _, c := range cases {
		b, err := json.Marshal(c.e)
		if err != nil || string(b) != c.want {
			t.Errorf("got %s %v\nwant %s", b, err, c.want)
		}
		var back Exec
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, c.e) {
			t.Errorf("round trip %s: %+v %v", b, back, err)
		}
	}
	for _, c := range []struct{ kind, resolved, image string }{
		{"nodejs:20", "nodejs:20", "openwhisk/action-nodejs-v20:nightly"},
		{"nodejs:default", "nodejs:20", "openwhisk/action-nodejs-v20:nightly"},
		{"nodejs:18", "", ""}, // not offered: the enclave runtime is Node 20
		{"python:3.11", "", ""},
		{"nodejs", "", ""},
	} {
		r, err := ExecKind(c.kind).Resolve()
		img, err2 := ExecKind(c.kind).Image()
		if string(r) != c.resolved || img != c.image || (c.resolved == "") != (err != nil) || (c.image == "") != (err2 != nil) {
			t.Errorf("%s: %q %v, %q %v", c.kind, r, err, img, err2)
		}
	}
	if ExecKind("nodejs:20").Family() != "nodejs" {
		t.Error("family")
	}
}

func TestInvokerInstanceIDRequiredFields(t *testing.T) {
	b, err := json.Marshal(InvokerInstanceID{Instance: 2, UserMemory: MB(1024)})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"instance":2,"userMemory":"1024 MB","instanceType":"invoker","tags":[],"dedicatedNamespaces":[]}` {
		t.Errorf("got %s", b)
	}
	if (InvokerInstanceID{Instance: 2}).Name() != "invoker2" {
		t.Error("name")
	}
	if _, err := json.Marshal(InvokerInstanceID{Instance: -1}); err == nil {
		t.Error("negative instance marshalled")
	}
}

func assertJSONEqual(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want is not JSON: %v\n%s", err, want)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("JSON differs\n got: %s\nwant: %s", got, want)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
