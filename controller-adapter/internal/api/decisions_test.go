package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

func TestMergeAction(t *testing.T) {
	code := "x"
	old := &whisk.Action{
		Namespace: "guest", Name: "a", Version: "0.0.3",
		Exec:        whisk.Exec{Kind: "nodejs:20", Code: "old"},
		Parameters:  whisk.Parameters{{Key: "p", Value: json.RawMessage(`1`)}},
		Annotations: whisk.Parameters{{Key: "keep", Value: json.RawMessage(`1`)}, {Key: "drop", Value: json.RawMessage(`2`)}, {Key: "provide-api-key", Value: json.RawMessage(`false`)}},
		Limits:      whisk.ActionLimits{Timeout: 1000, Memory: 128, Logs: 5, Concurrency: 1},
		Publish:     true,
	}
	newParams := whisk.Parameters{{Key: "q", Value: json.RawMessage(`2`)}}
	newAnn := whisk.Parameters{{Key: "keep", Value: json.RawMessage(`"new"`)}}
	for _, c := range []struct {
		name  string
		req   putRequest
		old   *whisk.Action
		check func(t *testing.T, a *whisk.Action)
		err   string
	}{
		{"create defaults", putRequest{Exec: &execRequest{Kind: "nodejs:default", Code: &code}}, nil, func(t *testing.T, a *whisk.Action) {
			if a.Limits != whisk.DefaultLimits() || a.Exec.Kind != "nodejs:20" || a.Publish {
				t.Errorf("got %+v", a)
			}
			if v, _ := a.Annotations.Get("provide-api-key"); string(v) != "false" {
				t.Errorf("provide-api-key = %s", v)
			}
			if v, _ := a.Annotations.GetString("exec"); v != "nodejs:20" {
				t.Errorf("exec annotation = %q", v)
			}
		}, ""},
		{"create keeps explicit provide-api-key", putRequest{Exec: &execRequest{Kind: "nodejs:20", Code: &code},
			Annotations: &whisk.Parameters{{Key: "provide-api-key", Value: json.RawMessage(`true`)}}}, nil, func(t *testing.T, a *whisk.Action) {
			if v, _ := a.Annotations.Get("provide-api-key"); string(v) != "true" {
				t.Errorf("provide-api-key = %s", v)
			}
		}, ""},
		{"create without exec", putRequest{}, nil, nil, "exec undefined"},
		{"update keeps everything", putRequest{}, old, func(t *testing.T, a *whisk.Action) {
			if a.Exec.Code != "old" || len(a.Parameters) != 1 || a.Limits != old.Limits || !a.Publish || len(a.Annotations) != 4 {
				t.Errorf("got %+v", a)
			}
		}, ""},
		{"update merges", putRequest{Parameters: &newParams, Annotations: &newAnn, DelAnnotations: []string{"drop"},
			Limits: &limitsRequest{Memory: intp(256)}, Publish: new(bool)}, old, func(t *testing.T, a *whisk.Action) {
			if len(a.Parameters) != 1 || a.Parameters[0].Key != "q" {
				t.Errorf("parameters = %+v", a.Parameters)
			}
			if v, _ := a.Annotations.GetString("keep"); v != "new" {
				t.Errorf("keep = %q", v)
			}
			if _, ok := a.Annotations.Get("drop"); ok {
				t.Error("delAnnotations ignored")
			}
			if a.Limits.Memory != 256 || a.Limits.Timeout != 1000 || a.Limits.Logs != 5 || a.Publish {
				t.Errorf("limits %+v publish %v", a.Limits, a.Publish)
			}
		}, ""},
		{"update bad limits", putRequest{Limits: &limitsRequest{Logs: intp(11), Concurrency: intp(2)}}, old, nil, "logs 11 MB"},
	} {
		a, err := mergeAction("guest", "a", &c.req, c.old)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err = %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		c.check(t, a)
	}
	if len(old.Annotations) != 3 {
		t.Fatal("mergeAction modified the stored action")
	}
}

func TestIsBase64Zip(t *testing.T) {
	for in, want := range map[string]bool{
		"UEsDBAoAAAAAAA==":  true, // "PK\x03\x04" + padding
		"abcd":              false,
		"function main(){}": false,
		"UEsDBAoAAAAAAA=":   false, // bad length
		"QUJDREVGR0g=":      false, // valid base64, not a zip
	} {
		if got := isBase64Zip(in); got != want {
			t.Errorf("isBase64Zip(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestListParams(t *testing.T) {
	for _, c := range []struct {
		limit, skip string
		l, s        int
		err         bool
	}{
		{"", "", 30, 0, false},
		{"0", "", 200, 0, false},
		{"200", "5", 200, 5, false},
		{"201", "", 0, 0, true},
		{"-1", "", 0, 0, true},
		{"", "-1", 0, 0, true},
		{"x", "", 0, 0, true},
	} {
		l, s, err := listParams(c.limit, c.skip, "actions")
		if (err != nil) != c.err || !c.err && (l != c.l || s != c.s) {
			t.Errorf("listParams(%q,%q) = %d,%d,%v", c.limit, c.skip, l, s, err)
		}
	}
}

func TestInvokeReply(t *testing.T) {
	for code, want := range map[int]int{0: 200, 1: 502, 2: 502, 3: 500} {
		if got := httpStatusFor(code); got != want {
			t.Errorf("httpStatusFor(%d) = %d, want %d", code, got, want)
		}
	}
	a := &whisk.WhiskActivation{Namespace: "guest", Name: "a", ActivationID: whisk.ActivationIDNew(),
		Start: time.UnixMilli(1000), End: time.UnixMilli(1010), Response: whisk.Success(json.RawMessage(`{"x":1}`))}
	if st, b, _ := invokeReply(a, true); st != 200 || string(b) != `{"x":1}` {
		t.Errorf("result only: %d %s", st, b)
	}
	if _, b, _ := invokeReply(a, false); !strings.Contains(string(b), `"success":true`) || !strings.Contains(string(b), `"duration":10`) {
		t.Errorf("full: %s", b)
	}
	a.Response = whisk.Success(nil)
	if _, b, _ := invokeReply(a, true); string(b) != `{}` {
		t.Errorf("no result: %s", b)
	}
}

func TestBuildMessage(t *testing.T) {
	a := &whisk.Action{Namespace: "guest", Name: "a", Version: "0.0.4", Revision: "4-abc",
		Parameters: whisk.Parameters{{Key: "p", Value: json.RawMessage(`1`)}, {Key: "i", Value: json.RawMessage(`"s"`), Init: true}}}
	id := whisk.Identity{Subject: "guest", Namespace: whisk.Namespace{Name: "guest", UUID: "u"}, AuthKey: whisk.AuthKey{APIKey: "u:k"}}
	tid := whisk.NewTransactionID("abc", time.UnixMilli(1700000000123))
	m, err := buildMessage(whisk.NewControllerInstanceID("0"), tid, a, id, map[string]json.RawMessage{"p": json.RawMessage(`2`), "z": json.RawMessage(`true`)}, true)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"transid":["abc",1700000000123]`,
		`"action":{"path":"guest","name":"a","version":"0.0.4"}`,
		`"revision":"4-abc"`,
		`"rootControllerIndex":{"asString":"0","instanceType":"controller"}`,
		`"blocking":true`,
		`"content":{"p":2,"i":"s","z":true}`,
		`"initArgs":["i"]`,
		`"lockedArgs":{}`,
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("message lacks %s:\n%s", want, raw)
		}
	}
}

func TestParsePayload(t *testing.T) {
	for in, ok := range map[string]bool{"": true, "  ": true, "{}": true, `{"a":[1]}`: true, "[]": false, "1": false, "null": false, "{": false} {
		_, err := parsePayload([]byte(in))
		if (err == nil) != ok {
			t.Errorf("parsePayload(%q) = %v", in, err)
		}
	}
}
