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

func TestSealed_Paired(t *testing.T) {
	sample := func(ms, platform, run, other float64) *SealedSample {
		// other is what the invoke spent outside its phases; isolate_teardown is off the path.
		return &SealedSample{Ms: ms, PlatformMs: platform, Phases: map[string]float64{"run": run, "isolate_teardown": 9,
			"attach": platform - run - other}}
	}
	s := &Sealed{
		UnsealedMs: []float64{10, 50, 12}, SealedMs: []float64{10.5, 51, 12.4}, SealedPlatformMs: []float64{10.3, 50.8, 12.2},
		UnsealedPhases: map[string][]float64{"run": {1, 1, 1}}, SealedPhases: map[string][]float64{"run": {1, 1, 1.1}},
		Rounds: []SealedRound{
			{Unsealed: sample(10, 10, 1, 2), Sealed: sample(10.5, 10.3, 1, 2.2)},
			{SealedFirst: true, Unsealed: sample(50, 50, 1, 2), Sealed: sample(51, 50.8, 1, 2.3)},
			{Unsealed: sample(12, 12, 1, 2), Sealed: sample(12.4, 12.2, 1.1, 2.1)},
			{Unsealed: sample(11, 11, 1, 2)}, // the sealed one was invalid: not a pair
		},
		CPUMs:          map[string]map[string]float64{"unsealed": {"bench": 2, "node": 3}, "sealed": {"bench": 2.5, "node": 3.25}},
		ClientCryptoMs: 0.3,
	}
	s.Summarize()
	near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if !near(s.PairedDiffP50Ms, 0.5) || !near(s.PairedPlatformDiffP50Ms, 0.3) {
		t.Fatalf("paired %v / %v, want 0.5 / 0.3", s.PairedDiffP50Ms, s.PairedPlatformDiffP50Ms)
	}
	if !near(s.PhasesPairedDiff["run"], 0) || !near(s.PhasesPairedDiff[OtherPhase], 0.2) || !near(s.PhasesPairedDiff["isolate_teardown"], 0) {
		t.Fatalf("phases %v", s.PhasesPairedDiff)
	}
	// Paired differences 0.5, 1.0 and 0.4: the bootstrap interval spans them, and its top (1.0)
	// is not under the 1 ms goal, though the median is.
	if !near(s.PairedDiffCI95Ms[0], 0.4) || !near(s.PairedDiffCI95Ms[1], 1.0) || s.PairedGoalMet {
		t.Fatalf("paired interval %v, goal met %v; want [0.4 1] and not met", s.PairedDiffCI95Ms, s.PairedGoalMet)
	}
	tab := s.Table()
	for _, want := range []string{"Paired (median over the rounds of sealed − unsealed in the same round): 0.50 ms (95% interval 0.40 to 1.00: not shown under the goal), invoke only 0.30 ms",
		"| other (outside the phases) | - | - | +0.20 |", "| node | 3.00 | 3.25 | 0.25 |", "| all | 5.00 | 5.75 | 0.75 |",
		"client's crypto (in bench): 0.30 ms"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
}
