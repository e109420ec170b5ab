package whisk

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestPackageJSON(t *testing.T) {
	// No binding is written {} (OpenWhisk's form, which the npm and Go clients read).
	b, err := json.Marshal(Package{Namespace: "guest", Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"namespace":"guest","name":"p","parameters":[],"version":"0.0.1","publish":false,"annotations":[],"updated":0,"binding":{}}`
	if string(b) != want {
		t.Fatalf("marshal = %s\nwant %s", b, want)
	}
	var p Package
	if err := json.Unmarshal(b, &p); err != nil || p.Binding != nil || p.Name != "p" {
		t.Fatalf("unmarshal: %+v %v", p, err)
	}
	b, _ = json.Marshal(Package{Namespace: "guest", Name: "b", Binding: &Binding{Namespace: "whisk.system", Name: "utils"}})
	if !strings.Contains(string(b), `"binding":{"namespace":"whisk.system","name":"utils"}`) {
		t.Fatalf("binding marshal = %s", b)
	}
	if err := json.Unmarshal(b, &p); err != nil || p.Binding == nil || p.Binding.Path() != "whisk.system/utils" {
		t.Fatalf("binding unmarshal: %+v %v", p, err)
	}
	for raw, ok := range map[string]bool{
		`{}`: true, `null`: true, ``: true,
		`{"namespace":"/whisk.system","name":"utils"}`: true,
		`{"namespace":"a"}`:                            false,
		`{"namespace":"a","name":"b/c"}`:               false,
		`"a/b"`:                                        false,
	} {
		_, err := ParseBinding(json.RawMessage(raw))
		if (err == nil) != ok {
			t.Errorf("ParseBinding(%s): %v", raw, err)
		}
	}
}
