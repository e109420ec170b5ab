package result

import (
	"fmt"
	"sort"
	"strings"

	"github.com/teemate/platform/bench/internal/stats"
)

// Hostile is the --hostile run: the benign teemate stream measured alone (Baseline) and with the
// hostile mix of functions/hostile running beside it on the same warm enclave (UnderAttack).
type Hostile struct {
	// Description says how the two phases ran.
	Description string `json:"description"`
	// HostileStreams is how many hostile activations ran at a time during UnderAttack.
	HostileStreams int `json:"hostile_streams"`
	// Passes is how many full passes of the hostile mix finished during UnderAttack.
	Passes int `json:"passes"`
	// LoadAvgAfter is the load average at the end of the run.
	LoadAvgAfter [3]float64 `json:"loadavg_after"`
	Baseline     []*Case    `json:"baseline"`
	UnderAttack  []*Case    `json:"under_attack"`
	// Cases are the hostile actions that ran, with what they returned.
	Cases []*HostileCase `json:"hostile_cases"`
	// Derived by Summarize:
	Rows []HostileRow `json:"rows"`
}

// HostileCase counts one hostile action's activations by status.
type HostileCase struct {
	Name     string         `json:"name"`
	Runs     int            `json:"runs"`
	Statuses map[string]int `json:"statuses"`
	// Example is one answer (the last), for the report.
	Example string `json:"example"`
}

// HostileRow is one benign function side by side.
type HostileRow struct {
	Function string `json:"function"`
	Size     string `json:"size"`
	// Baseline and UnderAttack latency (valid samples only) and invalid-answer counts.
	BaselineN          int     `json:"baseline_n"`
	BaselineP50Ms      float64 `json:"baseline_p50_ms"`
	BaselineP99Ms      float64 `json:"baseline_p99_ms"`
	BaselineInvalid    int     `json:"baseline_invalid"`
	UnderAttackN       int     `json:"under_attack_n"`
	UnderAttackP50Ms   float64 `json:"under_attack_p50_ms"`
	UnderAttackP99Ms   float64 `json:"under_attack_p99_ms"`
	UnderAttackInvalid int     `json:"under_attack_invalid"`
	// P50Ratio and P99Ratio are under attack / baseline (1 = unaffected; 0 when undefined).
	P50Ratio float64 `json:"p50_ratio"`
	P99Ratio float64 `json:"p99_ratio"`
}

// Summarize fills Rows from the samples: latency of valid KindLatency samples, invalid counts of
// all measured ones, matched by function and size.
func (h *Hostile) Summarize() {
	h.Rows = nil
	under := map[string]*Case{}
	for _, c := range h.UnderAttack {
		under[caseKey(c)] = c
	}
	for _, b := range h.Baseline {
		row := HostileRow{Function: b.Function, Size: b.Size}
		row.BaselineN, row.BaselineP50Ms, row.BaselineP99Ms, row.BaselineInvalid = latency(b)
		if u := under[caseKey(b)]; u != nil {
			row.UnderAttackN, row.UnderAttackP50Ms, row.UnderAttackP99Ms, row.UnderAttackInvalid = latency(u)
		}
		if row.BaselineN > 0 && row.UnderAttackN > 0 {
			row.P50Ratio = stats.Ratio(row.UnderAttackP50Ms, row.BaselineP50Ms)
			row.P99Ratio = stats.Ratio(row.UnderAttackP99Ms, row.BaselineP99Ms)
		}
		h.Rows = append(h.Rows, row)
	}
}

// BenignInvalid is the number of benign answers that were not valid, in both phases.
func (h *Hostile) BenignInvalid() int {
	n := 0
	for _, r := range h.Rows {
		n += r.BaselineInvalid + r.UnderAttackInvalid
	}
	return n
}

func latency(c *Case) (n int, p50, p99 float64, invalid int) {
	var xs []float64
	for _, s := range c.Samples {
		if s.Kind != KindLatency {
			continue
		}
		if !s.Valid {
			invalid++
			continue
		}
		xs = append(xs, s.ClientMs)
	}
	// Percentile fails only on no samples, and then 0 is what the table shows.
	p50, _ = stats.Percentile(xs, 50)
	p99, _ = stats.Percentile(xs, 99) // as above
	return len(xs), p50, p99, invalid
}

// Table is the side-by-side table (Markdown), shared by the report and the command's summary.
func (h *Hostile) Table() string {
	var b strings.Builder
	b.WriteString("| function | size | n alone | p50 alone | p99 alone | n beside hostile | p50 beside | p99 beside | p50 ratio | p99 ratio | invalid alone / beside |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range h.Rows {
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %d | %s | %s | %s | %s | %d / %d |\n", r.Function, r.Size,
			r.BaselineN, f1(r.BaselineP50Ms), f1(r.BaselineP99Ms), r.UnderAttackN, f1(r.UnderAttackP50Ms), f1(r.UnderAttackP99Ms),
			f2(r.P50Ratio), f2(r.P99Ratio), r.BaselineInvalid, r.UnderAttackInvalid)
	}
	return b.String()
}

// Markdown is the report's section for a --hostile run.
func (h *Hostile) Markdown() string {
	var b strings.Builder
	b.WriteString("\n## Benign latency with and without a hostile tenant (ms)\n\n")
	b.WriteString(h.Description + "\n\n")
	b.WriteString(h.Table())
	fmt.Fprintf(&b, "\nHostile mix: full passes %d, streams %d; load average after: %.2f %.2f %.2f.\n\n",
		h.Passes, h.HostileStreams, h.LoadAvgAfter[0], h.LoadAvgAfter[1], h.LoadAvgAfter[2])
	b.WriteString("| hostile case | runs | statuses | example answer |\n| --- | --- | --- | --- |\n")
	for _, c := range h.Cases {
		var st []string
		for _, k := range sortedKeys(c.Statuses) {
			st = append(st, fmt.Sprintf("%s: %d", k, c.Statuses[k]))
		}
		sort.Strings(st)
		fmt.Fprintf(&b, "| %s | %d | %s | %s |\n", c.Name, c.Runs, strings.Join(st, ", "),
			strings.ReplaceAll(strings.ReplaceAll(c.Example, "|", `\|`), "\n", " "))
	}
	return b.String()
}
