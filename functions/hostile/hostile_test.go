package hostile

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCasesAreComplete(t *testing.T) {
	seen := map[string]bool{}
	lethalSeen := false
	for _, c := range Cases() {
		if c.Name == "" || c.Tries == "" || c.Want == "" || c.Expect == nil || !strings.Contains(c.Code, "function main") {
			t.Errorf("case %+v is incomplete", c.Name)
		}
		if seen[c.Name] {
			t.Errorf("case %s twice", c.Name)
		}
		seen[c.Name] = true
		if c.MemoryMB < 128 || c.TimeoutMs < 100 {
			t.Errorf("%s: limits %d MB %d ms", c.Name, c.MemoryMB, c.TimeoutMs)
		}
		// Lethal cases come last, so that the others are observed before one can end the platform.
		if lethalSeen && !c.Lethal {
			t.Errorf("%s: a non-lethal case after a lethal one", c.Name)
		}
		lethalSeen = lethalSeen || c.Lethal
	}
}

func TestExpectations(t *testing.T) {
	byName := map[string]Case{}
	for _, c := range Cases() {
		byName[c.Name] = c
	}
	tests := []struct {
		name string
		o    Outcome
		ok   bool
	}{
		{"fork-bomb", Outcome{Status: StatusAppError, Text: "TeeMate: child_process is not available to actions in a shared enclave"}, true},
		{"fork-bomb", Outcome{Status: StatusSuccess, Text: `{"spawned":36}`}, false},
		{"fork-bomb", Outcome{Status: StatusWhiskErr, Text: "TeeMate: child_process is not available"}, false},
		{"fork-bomb", Outcome{Status: StatusAppError, Text: "Error: spawn EPERM"}, false},
		{"infinite-loop", Outcome{Status: StatusDevError, Text: "The action exceeded its time limits of 1000 milliseconds."}, true},
		{"infinite-loop", Outcome{Status: StatusNoAnswer, Text: "EOF"}, false},
		{"console-flood", Outcome{Status: StatusSuccess, LogNote: "Logs were truncated because the total bytes size exceeds the limit of 10485760 bytes."}, true},
		{"console-flood", Outcome{Status: StatusSuccess, LogNote: "none"}, false},
		{"kill-parent", Outcome{Status: StatusAppError, Text: "TeeMate: process.kill is not available to actions in a shared enclave"}, true},
	}
	for _, tt := range tests {
		err := byName[tt.name].Expect(tt.o)
		if (err == nil) != tt.ok {
			t.Errorf("%s %+v: err %v, want ok=%v", tt.name, tt.o, err, tt.ok)
		}
	}
}

func TestNormalizeIsStable(t *testing.T) {
	subst := map[string]string{"s3cr3t": "<A's secret>", "/tmp/hostile-123/d": "<data-dir>", ":41234": ":<api-port>"}
	a := Normalize("2026-12-06T11:36:01.123Z stdout: pid 73412 read /tmp/hostile-123/d/x s3cr3t at 127.0.0.1:41234 | id 0123456789abcdef0123456789abcdef  in 1000 ms", subst)
	want := `pid N read <data-dir>/x <A's secret> at 127.0.0.1:<api-port> \| id <id> in 1000 ms`
	if a != want {
		t.Fatalf("Normalize = %q\nwant        %q", a, want)
	}
	if got := Normalize("scandir '/tmp/scratch/run-1-12/x'", nil); got != "scandir '/tmp/scratch/<run>/x'" {
		t.Fatalf("scratch dir not normalised: %q", got)
	}
	long := Normalize(strings.Repeat("x", 500), nil)
	if len([]rune(long)) != 160 || !strings.HasSuffix(long, "...") {
		t.Fatalf("long text not cut: %d", len(long))
	}
}

func TestLogNote(t *testing.T) {
	trunc := "Logs were truncated because the total bytes size exceeds the limit of 10485760 bytes."
	for _, c := range []struct {
		logs []string
		want string
	}{{nil, "-"}, {[]string{"a", "b"}, "-"}, {[]string{"x", trunc}, trunc}} {
		if logs, want := c.logs, c.want; LogNote(logs) != want {
			got := LogNote(logs)
			t.Errorf("LogNote(%q) = %q, want %q", logs, got, want)
		}
	}
}

func TestResultText(t *testing.T) {
	for in, want := range map[string]string{
		`{"error":"The action exceeded its time limits of 1000 milliseconds."}`:                          "The action exceeded its time limits of 1000 milliseconds.",
		`{"error":{"name":"RangeError","message":"Maximum call stack size exceeded","stack":"at /tmp"}}`: "RangeError: Maximum call stack size exceeded",
		`{"files":3,"dump":"secret stuff"}`:                                                              `{"files":3}`,
		`"plain"`:                                                                                        `"plain"`,
	} {
		if got := ResultText(json.RawMessage(in)); got != want {
			t.Errorf("ResultText(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestBenignWants(t *testing.T) {
	bs := BenignActions("s3cr3t")
	if len(bs) != 4 {
		t.Fatalf("%d benign actions", len(bs))
	}
	echo := bs[3]
	if !SameJSON(json.RawMessage(`{"secret":"s3cr3t","i":7}`), echo.Want(7, echo.Bound)) {
		t.Fatal("echo want does not match its result")
	}
	if SameJSON(json.RawMessage(`{"secret":"other","i":7}`), echo.Want(7, echo.Bound)) {
		t.Fatal("echo want matches a wrong secret")
	}
	if !SameJSON(json.RawMessage(`{"n":100002,"sum":300006}`), bs[0].Want(2, nil)) {
		t.Fatalf("compute want %v", bs[0].Want(2, nil))
	}
}

func TestTableAndSection(t *testing.T) {
	cases := Cases()[:2]
	outs := []Outcome{
		{Case: cases[0].Name, Status: StatusSuccess, Text: `{"bytes":N}`, LogNote: "none"},
		{Case: cases[1].Name, Status: StatusAppError, Text: "TeeMate: file a|b", LogNote: "some", BenignFailures: 2, Meets: true},
	}
	table := Table(cases, outs, Summary{Platform: "test", SecretLeaks: 1, AnswersAfterMix: true})
	for _, want := range []string{"| read-shadow |", "| **no** |", `a\|b`, "| 2 | yes |", "secret seen in tenant B's results or logs: **1**", "answers after the mix: yes"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	doc := "# x\n\n" + BeginMarker + "\n" + EndMarker + "\n\nafter\n"
	updated, err := ReplaceSection(doc, table)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Section(updated)
	if err != nil || got != strings.Trim(table, "\n") || !strings.HasSuffix(updated, EndMarker+"\n\nafter\n") {
		t.Fatalf("section round trip: %v\n%s", err, updated)
	}
	again, _ := ReplaceSection(updated, table)
	if again != updated {
		t.Fatal("ReplaceSection is not idempotent")
	}
	if _, err := Section("no markers"); err == nil {
		t.Fatal("missing markers accepted")
	}
}
