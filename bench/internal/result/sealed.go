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
	// Rounds are the measured rounds in order, each with its unsealed and its sealed sample
	// (nil when that one was invalid) and their phases: the two samples of a round ran one
	// right after the other, so their difference is the least disturbed by the machine.
	Rounds []SealedRound `json:"rounds,omitempty"`
	// CPUMs is the CPU time one invocation costs, per kind ("unsealed", "sealed") and process
	// group ("bench": the bench process with its in-process controller, broker, invoker and
	// client; "exited children": sandboxes and shims; each live descendant's main thread by
	// name, e.g. the enclave owner "node", which runs the trusted JS, and its other threads as
	// "node threads": the isolates), measured over a block of one kind only after the rounds.
	CPUMs map[string]map[string]float64 `json:"cpu_ms_per_activation,omitempty"`
	// ClientCryptoMs is the client's share of a sealed invocation (sealing the parameters,
	// opening the result and verifying the receipt; in the bench process), ms per invocation.
	ClientCryptoMs float64 `json:"client_crypto_ms,omitempty"`
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
	// PairedDiffP50Ms is the median over the rounds of sealed − unsealed within a round (client's
	// crypto included; PairedPlatformDiffP50Ms without it); PhasesPairedDiff the same per
	// invoker phase, and "other" for the invoke's time outside the phases the invoker records.
	PairedDiffP50Ms float64 `json:"paired_diff_p50_ms"`
	// PairedDiffCI95Ms is a 95% bootstrap interval of PairedDiffP50Ms (stats.MedianCI): the goal
	// is shown met only when the whole interval is under it (PairedGoalMet).
	PairedDiffCI95Ms        [2]float64         `json:"paired_diff_ci95_ms"`
	PairedGoalMet           bool               `json:"paired_goal_met"`
	PairedPlatformDiffP50Ms float64            `json:"paired_platform_diff_p50_ms"`
	PhasesPairedDiff        map[string]float64 `json:"phases_paired_diff_p50_ms,omitempty"`
	// P50DiffMs is SealedP50Ms - UnsealedP50Ms; GoalMet says whether it is under SealedGoalMs.
	P50DiffMs float64 `json:"p50_diff_ms"`
	GoalMs    float64 `json:"goal_ms"`
	GoalMet   bool    `json:"goal_met"`
}

// SealedRound is one round of a --sealed run: one unsealed and one sealed invocation, back to
// back, the sealed one first when SealedFirst.
type SealedRound struct {
	SealedFirst bool          `json:"sealed_first"`
	Unsealed    *SealedSample `json:"unsealed,omitempty"`
	Sealed      *SealedSample `json:"sealed,omitempty"`
}

// SealedSample is one invocation of a round: Ms as the client sees it (for a sealed one, with
// the client's crypto), PlatformMs the invoke alone, Phases the invoker's timings annotation.
type SealedSample struct {
	Ms           float64            `json:"ms"`
	PlatformMs   float64            `json:"platform_ms"`
	ActivationID string             `json:"activation_id"`
	Phases       map[string]float64 `json:"phases_ms,omitempty"`
}

// OtherPhase names, in PhasesPairedDiff, an invoke's time outside the invoker's phases: the
// controller, Kafka both ways, the action fetch, log collection, the record and the ack, and
// the owner's work between the shim's frames that no phase covers.
const OtherPhase = "other"

// outside is the invoke's time outside the phases on its path (teardowns happen after the
// reply and are not on it).
func (x *SealedSample) outside() float64 {
	t := x.PlatformMs
	for ph, ms := range x.Phases {
		if ph != "isolate_teardown" && ph != "sandbox_teardown" {
			t -= ms
		}
	}
	return t
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
	var diff, platform []float64
	perPhase := map[string][]float64{}
	for _, r := range s.Rounds {
		if r.Unsealed == nil || r.Sealed == nil {
			continue
		}
		diff = append(diff, r.Sealed.Ms-r.Unsealed.Ms)
		platform = append(platform, r.Sealed.PlatformMs-r.Unsealed.PlatformMs)
		for ph := range r.Unsealed.Phases {
			perPhase[ph] = append(perPhase[ph], r.Sealed.Phases[ph]-r.Unsealed.Phases[ph])
		}
		perPhase[OtherPhase] = append(perPhase[OtherPhase], r.Sealed.outside()-r.Unsealed.outside())
	}
	s.PairedDiffP50Ms, _ = stats.Percentile(diff, 50)             // 0 when no round has both
	s.PairedPlatformDiffP50Ms, _ = stats.Percentile(platform, 50) // as above
	s.PairedDiffCI95Ms = [2]float64{}
	if lo, hi, err := stats.MedianCI(diff, 0.95, 2000, 1); err == nil { // err: no round has both
		s.PairedDiffCI95Ms = [2]float64{lo, hi}
	}
	s.PhasesPairedDiff = nil
	if len(diff) > 0 {
		s.PhasesPairedDiff = map[string]float64{}
		for ph, xs := range perPhase {
			s.PhasesPairedDiff[ph], _ = stats.Percentile(xs, 50) // xs is not empty
		}
	}
	s.GoalMs = SealedGoalMs
	s.P50DiffMs = s.SealedP50Ms - s.UnsealedP50Ms
	s.GoalMet = len(s.SealedMs) > 0 && len(s.UnsealedMs) > 0 && s.P50DiffMs < SealedGoalMs
	s.PairedGoalMet = len(diff) > 0 && s.PairedDiffCI95Ms[1] < SealedGoalMs
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
		b.WriteString("\n| invoker phase (p50 ms) | unsealed | sealed | paired difference |\n| --- | --- | --- | --- |\n")
		for _, ph := range sortedKeys(s.PhasesP50) {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", ph, f2(s.PhasesP50[ph][0]), f2(s.PhasesP50[ph][1]), pairedCell(s.PhasesPairedDiff, ph))
		}
		if _, ok := s.PhasesPairedDiff[OtherPhase]; ok {
			fmt.Fprintf(&b, "| %s (outside the phases) | - | - | %s |\n", OtherPhase, pairedCell(s.PhasesPairedDiff, OtherPhase))
		}
	}
	if len(s.Rounds) > 0 {
		pairedMet := "the whole interval under the goal: met"
		if !s.PairedGoalMet {
			pairedMet = "not shown under the goal"
		}
		fmt.Fprintf(&b, "\nPaired (median over the rounds of sealed − unsealed in the same round): %s ms (95%% interval %s to %s: %s), invoke only %s ms\n",
			f2(s.PairedDiffP50Ms), f2(s.PairedDiffCI95Ms[0]), f2(s.PairedDiffCI95Ms[1]), pairedMet, f2(s.PairedPlatformDiffP50Ms))
	}
	if len(s.CPUMs) > 0 {
		groups := map[string]bool{}
		for _, m := range s.CPUMs {
			for g := range m {
				groups[g] = true
			}
		}
		b.WriteString("\n| CPU per invocation (ms) | unsealed | sealed | difference |\n| --- | --- | --- | --- |\n")
		var tu, ts float64
		for _, g := range sortedKeys(groups) {
			u, v := s.CPUMs["unsealed"][g], s.CPUMs["sealed"][g]
			if u < 0.005 && v < 0.005 {
				continue // a process that came and went within a tick
			}
			tu, ts = tu+u, ts+v
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g, f2(u), f2(v), f2(v-u))
		}
		fmt.Fprintf(&b, "| all | %s | %s | %s |\n", f2(tu), f2(ts), f2(ts-tu))
		fmt.Fprintf(&b, "\nof which the client's crypto (in bench): %s ms per sealed invocation\n", f2(s.ClientCryptoMs))
	}
	fmt.Fprintf(&b, "\np50 sealed - unsealed: %s ms (goal < %s ms: %s)\n", f2(s.P50DiffMs), f2(s.GoalMs), met)
	return b.String()
}

func pairedCell(m map[string]float64, ph string) string {
	v, ok := m[ph]
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%+.2f", v)
}

// Markdown is the report's section for a --sealed run.
func (s *Sealed) Markdown() string {
	return "\n## Sealed vs unsealed noop (ms)\n\n" + s.Description + "\n\n" + s.Table()
}
