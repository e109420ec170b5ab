package result

import (
	"fmt"
	"strings"

	"github.com/teemate/platform/bench/internal/stats"
)

// SealedGoalMs is issue #16's goal: the sealed noop's p50 within this of the unsealed one.
const SealedGoalMs = 1.0

// Sealed is the --sealed run: the noop action invoked unsealed and sealed (sealed code and
// parameters, the result sealed back with a receipt), alternately, on the same warm enclave.
type Sealed struct {
	Description string `json:"description"`
	// UnsealedMs and SealedMs are the client-side latencies of the valid samples, in order. A
	// sealed sample runs from before the parameters are sealed to after the result is opened and
	// its receipt verified; SealedPlatformMs is the same samples' invoke alone (no client crypto).
	UnsealedMs       []float64 `json:"unsealed_ms"`
	SealedMs         []float64 `json:"sealed_ms"`
	SealedPlatformMs []float64 `json:"sealed_platform_ms"`
	// UnsealedPhases and SealedPhases are the invoker's per-phase timings of the valid samples
	// (the activation's "timings" annotation, ms), phase by phase, to show where a difference lies.
	UnsealedPhases map[string][]float64 `json:"unsealed_phases_ms,omitempty"`
	SealedPhases   map[string][]float64 `json:"sealed_phases_ms,omitempty"`
	// Invalid counts the samples whose answer was wrong (or a sealed result that did not open).
	UnsealedInvalid int `json:"unsealed_invalid"`
	SealedInvalid   int `json:"sealed_invalid"`
	// Derived by Summarize:
	UnsealedP50Ms       float64 `json:"unsealed_p50_ms"`
	UnsealedP99Ms       float64 `json:"unsealed_p99_ms"`
	SealedP50Ms         float64 `json:"sealed_p50_ms"`
	SealedP99Ms         float64 `json:"sealed_p99_ms"`
	SealedPlatformP50Ms float64 `json:"sealed_platform_p50_ms"`
	// PhasesP50 is each phase's p50, unsealed and sealed: {"init": [0.4, 0.9], ...}.
	PhasesP50 map[string][2]float64 `json:"phases_p50_ms,omitempty"`
	// P50DiffMs is SealedP50Ms - UnsealedP50Ms; GoalMet says whether it is under SealedGoalMs.
	P50DiffMs float64 `json:"p50_diff_ms"`
	GoalMs    float64 `json:"goal_ms"`
	GoalMet   bool    `json:"goal_met"`
}

// Summarize fills the derived figures from the samples.
func (s *Sealed) Summarize() {
	// Percentile fails only on no samples, and then 0 is what the table shows.
	s.UnsealedP50Ms, _ = stats.Percentile(s.UnsealedMs, 50)
	s.UnsealedP99Ms, _ = stats.Percentile(s.UnsealedMs, 99)             // as above
	s.SealedP50Ms, _ = stats.Percentile(s.SealedMs, 50)                 // as above
	s.SealedP99Ms, _ = stats.Percentile(s.SealedMs, 99)                 // as above
	s.SealedPlatformP50Ms, _ = stats.Percentile(s.SealedPlatformMs, 50) // as above
	s.PhasesP50 = map[string][2]float64{}
	for ph, xs := range s.UnsealedPhases {
		u, _ := stats.Percentile(xs, 50)                 // 0 when empty, as the table shows
		v, _ := stats.Percentile(s.SealedPhases[ph], 50) // as above
		s.PhasesP50[ph] = [2]float64{u, v}
	}
	s.GoalMs = SealedGoalMs
	s.P50DiffMs = s.SealedP50Ms - s.UnsealedP50Ms
	s.GoalMet = len(s.SealedMs) > 0 && len(s.UnsealedMs) > 0 && s.P50DiffMs < SealedGoalMs
}

// Table is the side-by-side table (Markdown), shared by the report and the command's summary.
func (s *Sealed) Table() string {
	var b strings.Builder
	b.WriteString("| noop | n | p50 ms | p99 ms | invalid |\n| --- | --- | --- | --- | --- |\n")
	fmt.Fprintf(&b, "| unsealed | %d | %s | %s | %d |\n", len(s.UnsealedMs), f2(s.UnsealedP50Ms), f2(s.UnsealedP99Ms), s.UnsealedInvalid)
	fmt.Fprintf(&b, "| sealed (client seal + invoke + open + receipt) | %d | %s | %s | %d |\n", len(s.SealedMs), f2(s.SealedP50Ms), f2(s.SealedP99Ms), s.SealedInvalid)
	fmt.Fprintf(&b, "| sealed, invoke only | %d | %s | - | - |\n", len(s.SealedPlatformMs), f2(s.SealedPlatformP50Ms))
	met := "met"
	if !s.GoalMet {
		met = "NOT met"
	}
	if len(s.PhasesP50) > 0 {
		b.WriteString("\n| invoker phase (p50 ms) | unsealed | sealed |\n| --- | --- | --- |\n")
		for _, ph := range sortedKeys(s.PhasesP50) {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", ph, f2(s.PhasesP50[ph][0]), f2(s.PhasesP50[ph][1]))
		}
	}
	fmt.Fprintf(&b, "\np50 sealed - unsealed: %s ms (goal < %s ms: %s)\n", f2(s.P50DiffMs), f2(s.GoalMs), met)
	return b.String()
}

// Markdown is the report's section for a --sealed run.
func (s *Sealed) Markdown() string {
	return "\n## Sealed vs unsealed noop (ms)\n\n" + s.Description + "\n\n" + s.Table()
}
