package result

import (
	"strings"
	"testing"
)

func TestSealed_SummarizeAndTable(t *testing.T) {
	s := &Sealed{UnsealedMs: []float64{3, 4, 5}, SealedMs: []float64{3.5, 4.5, 5.5}, SealedPlatformMs: []float64{3.4, 4.4, 5.4}, SealedInvalid: 1}
	s.Summarize()
	if s.UnsealedP50Ms != 4 || s.SealedP50Ms != 4.5 || s.P50DiffMs != 0.5 || !s.GoalMet || s.GoalMs != SealedGoalMs {
		t.Fatalf("summary %+v", s)
	}
	tab := s.Table()
	for _, want := range []string{"| unsealed | 3 | 4.00 |", "| sealed (client seal + invoke + open + receipt) | 3 | 4.50 |", "0.50 ms (goal < 1.00 ms: met)", "| 1 |"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	s.SealedMs = []float64{6, 6, 6}
	s.Summarize()
	if s.GoalMet || !strings.Contains(s.Table(), "NOT met") {
		t.Errorf("a 2 ms difference meets the goal: %+v", s)
	}
	empty := &Sealed{}
	empty.Summarize()
	if empty.GoalMet {
		t.Error("no samples meets the goal")
	}
	r := &Result{Sealed: &Sealed{UnsealedMs: []float64{1}, SealedMs: []float64{1}, UnsealedInvalid: 2}}
	r.Finish()
	if len(r.Warnings) == 0 || !strings.Contains(strings.Join(r.Warnings, "\n"), "sealed run: 2 answers were invalid") {
		t.Errorf("warnings %q", r.Warnings)
	}
}
