package fault

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestAsserted(t *testing.T) {
	names := []string{"a", "b", "c"}
	defaults := map[string]bool{"b": true}
	for _, tc := range []struct {
		spec string
		want map[string]bool
		err  bool
	}{
		{"", map[string]bool{"a": false, "b": true, "c": false}, false},
		{"all", map[string]bool{"a": true, "b": true, "c": true}, false},
		{"none", map[string]bool{"a": false, "b": false, "c": false}, false},
		{"all,-c", map[string]bool{"a": true, "b": true, "c": false}, false},
		{"a, +c", map[string]bool{"a": true, "b": true, "c": true}, false},
		{"-b", map[string]bool{"a": false, "b": false, "c": false}, false},
		{"d", nil, true},
		{"-d", nil, true},
	} {
		got, err := Asserted(tc.spec, names, defaults)
		if (err != nil) != tc.err || (!tc.err && !reflect.DeepEqual(got, tc.want)) {
			t.Errorf("Asserted(%q) = %v, %v; want %v (error %v)", tc.spec, got, err, tc.want, tc.err)
		}
	}
}

func TestCheck(t *testing.T) {
	clean := Result{Sent: 10, OK: 10, RecoverySeconds: 1}
	for _, tc := range []struct {
		name string
		r    Result
		g    Guarantee
		want []string
	}{
		{"clean", clean, Guarantee{}, nil},
		{"lost", Result{Lost: 2, RecoverySeconds: 1}, Guarantee{}, []string{"2 activation records lost"}},
		{"rerun allowed", Result{Duplicated: 3, MaxStarts: 2, RecoverySeconds: 1}, Guarantee{Rerun: true}, nil},
		{"rerun not allowed", Result{Duplicated: 3, MaxStarts: 2, RecoverySeconds: 1}, Guarantee{}, []string{"3 activations ran twice"}},
		{"three runs", Result{Duplicated: 1, MaxStarts: 3, RecoverySeconds: 1}, Guarantee{Rerun: true}, []string{"an activation ran 3 times"}},
		{"after answer", Result{RerunAfterAnswer: 1, Duplicated: 1, MaxStarts: 2, RecoverySeconds: 1}, Guarantee{Rerun: true},
			[]string{"1 answered activations ran again"}},
		{"broken counts only for SIGTERM", Result{Broken: 4, RecoverySeconds: 1}, Guarantee{}, nil},
		{"broken", Result{Broken: 4, RecoverySeconds: 1}, Guarantee{NoBroken: true}, []string{"4 callers saw a broken connection"}},
		{"blamed, left, never", Result{Blamed: 1, LeftBehind: 2, RecoverySeconds: -1}, Guarantee{},
			[]string{"1 platform faults answered as developer errors", "2 processes or mounts of the old instance left behind",
				"no successful invocation after the fault"}},
	} {
		if got := tc.r.Check(tc.g); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Check = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestRender(t *testing.T) {
	m := Meta{Date: "2026-01-02 03:04 UTC", Commit: "abc", Command: "make fault-test", Setup: "setup"}
	rs := []Result{
		{Scenario: "x", Fault: "x SIGKILL", Deployment: "split", Sent: 3, OK: 2, Lost: 1, RecoverySeconds: 1.5,
			Statuses: map[string]int{"success": 2, "lost": 1}, Violations: []string{"1 activation records lost"}},
		{Scenario: "y", Fault: "y", Deployment: "standalone", RecoverySeconds: -1},
	}
	md := Markdown(m, rs)
	for _, want := range []string{
		"at commit `abc` by `make fault-test`",
		"| x SIGKILL | split | 3 | 2 | 0 | 0 | 1 | 0 | 0 | 0 | 0 | 1.5 s | **broken**: 1 activation records lost |",
		"| y | standalone | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | never | held |",
		"- **x**: 1 lost, 2 success.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	b, err := JSON(m, rs)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Commit  string   `json:"commit"`
		Results []Result `json:"results"`
	}
	if err := json.Unmarshal(b, &back); err != nil || back.Commit != "abc" || len(back.Results) != 2 || back.Results[0].Lost != 1 {
		t.Fatalf("JSON round trip: %v %+v", err, back)
	}
}
