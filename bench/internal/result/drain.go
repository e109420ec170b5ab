package result

import (
	"fmt"
	"sort"
	"strings"

	"github.com/teemate/platform/bench/internal/stats"
)

// The drain scenario (--scenario drain) takes an invoker out of service under a steady open-loop
// load twice, each time on a fresh platform: once by pre-copy (drain to another invoker, which
// takes the image's enclave state before routing moves) and once by stop-and-copy (OpenWhisk's
// /disable, after which the image's activations cold-start elsewhere). Times are milliseconds
// from the phase's load start, so a phase is analysed from its requests and a few event times.

// Phase names: the JSON fields of the two phases.
const (
	PhaseDrain       = "drain"
	PhaseStopAndCopy = "stop_and_copy"
)

// DrainConfig is what a drain run was asked to do.
type DrainConfig struct {
	RatePerSecond float64  `json:"rate_per_second"`
	BeforeS       float64  `json:"before_s"`
	AfterS        float64  `json:"after_s"`
	SwitchTailS   float64  `json:"switch_tail_s"`
	Actions       []string `json:"actions"`
	// Image is the one image every action runs on (the enclave runtime serves nodejs:20 only).
	Image string `json:"image"`
}

// DrainRequest is one request of the load.
type DrainRequest struct {
	Action string `json:"action"`
	Image  string `json:"image"`
	// StartMs is when the request was due (the open-loop schedule), EndMs when its answer came.
	StartMs float64 `json:"start_ms"`
	EndMs   float64 `json:"end_ms"`
	// OK: answered with a successful activation. Error says what else happened.
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Phases are the activation's "timings" annotation plus "wait" (OpenWhisk's waitTime, whole
	// ms: from the controller's transaction start to the invoker's start), so that a slow answer
	// can be attributed. Absent for a request that got no activation.
	Phases map[string]float64 `json:"phases_ms,omitempty"`
}

// LatencyWindow is the latency of the successful requests started in [FromMs, ToMs).
type LatencyWindow struct {
	FromMs float64 `json:"from_ms"`
	ToMs   float64 `json:"to_ms"`
	N      int     `json:"n"`
	Failed int     `json:"failed"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// DrainTransfer is the enclave state transfer the destination's manager logged ("image state
// transferred"): the image key and the opened code cache, moved in chunks.
type DrainTransfer struct {
	Image string `json:"image"`
	// AtMs is when the destination logged the transfer: before TriggerMs when its owner took the
	// state as it started (the health test action starts it on every invoker that joins), so
	// the drain found the image warm and keyed there.
	AtMs              float64 `json:"at_ms"`
	Bytes             int64   `json:"bytes"`
	Chunks            int     `json:"chunks"`
	Resumes           int     `json:"resumes"`
	SenderPeakBytes   int64   `json:"sender_peak_bytes"`
	ReceiverPeakBytes int64   `json:"receiver_peak_bytes"`
	SenderRSSBytes    int64   `json:"sender_rss_bytes"`
	TookMs            float64 `json:"took_ms"`
	// PeakExtraBytes is the larger of the two peaks; PeakExtraFraction is it over the sending
	// enclave owner's RSS (0.01 = 1%).
	PeakExtraBytes    int64   `json:"peak_extra_bytes"`
	PeakExtraFraction float64 `json:"peak_extra_fraction"`
}

// DrainPhase is one way of taking invoker0 out of service, measured.
type DrainPhase struct {
	// Trigger is what the bench did at TriggerMs.
	Trigger   string  `json:"trigger"`
	TriggerMs float64 `json:"trigger_ms"`
	// SwitchMs is when routing moved: the controller's "image moved" for a drain, the disable
	// itself for stop-and-copy (the controller stops routing to a disabled invoker at its ping).
	SwitchMs float64 `json:"switch_ms"`
	// DrainedMs is from the trigger until the source was out of service: the drain status
	// "drained" (routing moved and the source's in-flight activations settled), or for
	// stop-and-copy the controller no longer listing invoker0 as up.
	DrainedMs float64 `json:"time_to_drained_ms"`
	EndMs     float64 `json:"end_ms"`

	Submitted int `json:"submitted"`
	Failed    int `json:"failed"`
	// Errors are the distinct failure messages (at most a few).
	Errors []string `json:"errors,omitempty"`

	// DestinationOwnerStartsMs are the destination's enclave owner starts ("enclave owner
	// ready"); ColdStartsAfterSwitch counts those after SwitchMs.
	DestinationOwnerStartsMs []float64 `json:"destination_owner_starts_ms"`
	ColdStartsAfterSwitch    int       `json:"cold_starts_after_switch"`

	// DowntimeMs is the longest gap between consecutive successful answers of an image from the
	// trigger to the end (the largest over images); per action too. BeforeGapMs is the same
	// measure before the trigger: the load's own spacing, for scale.
	DowntimeMs          float64            `json:"downtime_ms"`
	DowntimePerImageMs  map[string]float64 `json:"downtime_per_image_ms"`
	DowntimePerActionMs map[string]float64 `json:"downtime_per_action_ms"`
	BeforeGapMs         float64            `json:"before_gap_ms"`

	// Before is the steady state before the trigger; Switch the switch window: requests started
	// from the trigger until SwitchTail after the later of drained and the switch.
	Before LatencyWindow `json:"before"`
	Switch LatencyWindow `json:"switch_window"`

	// Transfer is the state transfer (nil for stop-and-copy: nothing moves).
	Transfer *DrainTransfer `json:"transfer,omitempty"`

	Requests []DrainRequest `json:"requests"`
}

// Goal is one of the goals, with this run's value.
type Goal struct {
	Target string  `json:"target"`
	Value  float64 `json:"value"`
	Met    bool    `json:"met"`
}

// DrainGoals are the drain scenario's goals (issue #20): pre-copy fails nothing and cold-starts
// nothing after the switch, its downtime is at least 4x shorter than stop-and-copy's, and the
// transfer's peak extra memory is under 1% of the enclave's.
type DrainGoals struct {
	NoFailed      Goal `json:"no_failed"`
	NoColdStarts  Goal `json:"no_cold_starts_after_switch"`
	DowntimeRatio Goal `json:"downtime_ratio"`
	PeakMemory    Goal `json:"peak_extra_memory"`
	AllMet        bool `json:"all_met"`
}

// Goal thresholds.
const (
	GoalDowntimeRatio      = 4.0
	GoalPeakExtraFraction  = 0.01
	maxDistinctDrainErrors = 5
)

// LongestGap is the longest time without a successful answer in [from, to]: between the last
// answer at or before from (from itself when there is none) and the next, between consecutive
// answers, and from the last answer to to (an outage that lasts to the end counts whole).
// answers need not be sorted and are not modified.
func LongestGap(answers []float64, from, to float64) float64 {
	if to < from {
		return 0
	}
	s := append([]float64(nil), answers...)
	sort.Float64s(s)
	prev := from
	for _, a := range s {
		if a <= from {
			prev = a // sorted: the last one at or before from wins
		}
	}
	longest := 0.0
	for _, a := range s {
		if a <= from || a > to {
			continue
		}
		longest = max(longest, a-prev)
		prev = a
	}
	return max(longest, to-prev)
}

// Window is the latency of the successful requests started in [from, to); failed ones are counted.
func Window(reqs []DrainRequest, from, to float64) LatencyWindow {
	w := LatencyWindow{FromMs: from, ToMs: to}
	var lat []float64
	for _, r := range reqs {
		if r.StartMs < from || r.StartMs >= to {
			continue
		}
		if !r.OK {
			w.Failed++
			continue
		}
		lat = append(lat, r.EndMs-r.StartMs)
	}
	if s, err := stats.Summarize(lat); err == nil {
		w.N, w.P50Ms, w.P99Ms, w.MaxMs = s.N, s.P50, s.P99, s.Max
	}
	return w
}

// SwitchWindowEnd is the end of the switch window: tail after the later of the switch and the
// source being drained (both relative to the trigger's clock).
func SwitchWindowEnd(trigger, switched, drainedAfter, tail float64) float64 {
	return max(switched, trigger+drainedAfter, trigger) + tail
}

// Analyze derives a phase's figures from its requests and event times (TriggerMs, SwitchMs,
// DrainedMs, EndMs, DestinationOwnerStartsMs set); tail is the switch window's tail.
func (p *DrainPhase) Analyze(tail float64) {
	p.Submitted, p.Failed, p.Errors = len(p.Requests), 0, nil
	seen := map[string]bool{}
	byImage, byAction := map[string][]float64{}, map[string][]float64{}
	var all []float64
	for _, r := range p.Requests {
		if !r.OK {
			p.Failed++
			if !seen[r.Error] && len(p.Errors) < maxDistinctDrainErrors {
				seen[r.Error] = true
				p.Errors = append(p.Errors, r.Error)
			}
			continue
		}
		byImage[r.Image] = append(byImage[r.Image], r.EndMs)
		byAction[r.Action] = append(byAction[r.Action], r.EndMs)
		all = append(all, r.EndMs)
	}
	p.DowntimePerImageMs, p.DowntimePerActionMs = map[string]float64{}, map[string]float64{}
	p.DowntimeMs = 0
	for img, a := range byImage {
		p.DowntimePerImageMs[img] = LongestGap(a, p.TriggerMs, p.EndMs)
		p.DowntimeMs = max(p.DowntimeMs, p.DowntimePerImageMs[img])
	}
	for act, a := range byAction {
		p.DowntimePerActionMs[act] = LongestGap(a, p.TriggerMs, p.EndMs)
	}
	// The load's own spacing: the same measure over the second half of the time before the
	// trigger (the first half holds the load's ramp-up).
	p.BeforeGapMs = LongestGap(all, p.TriggerMs/2, p.TriggerMs)
	p.ColdStartsAfterSwitch = ColdStartsAfter(p.DestinationOwnerStartsMs, p.SwitchMs)
	p.Before = Window(p.Requests, 0, p.TriggerMs)
	p.Switch = Window(p.Requests, p.TriggerMs, SwitchWindowEnd(p.TriggerMs, p.SwitchMs, p.DrainedMs, tail))
}

// ColdStartsAfter counts the owner starts after the switch.
func ColdStartsAfter(starts []float64, switched float64) int {
	n := 0
	for _, s := range starts {
		if s > switched {
			n++
		}
	}
	return n
}

// PeakExtra fills the transfer's peak extra memory and its fraction of the sender's RSS.
func (t *DrainTransfer) PeakExtra() {
	t.PeakExtraBytes = max(t.SenderPeakBytes, t.ReceiverPeakBytes)
	t.PeakExtraFraction = 0
	if t.SenderRSSBytes > 0 {
		t.PeakExtraFraction = float64(t.PeakExtraBytes) / float64(t.SenderRSSBytes)
	}
}

// Goals judges the run: drain is the pre-copy phase, stop the stop-and-copy one.
func Goals(drain, stop *DrainPhase) DrainGoals {
	g := DrainGoals{
		NoFailed:      Goal{Target: "0 failed activations during the drain", Value: float64(drain.Failed)},
		NoColdStarts:  Goal{Target: "0 cold starts on the destination after the switch", Value: float64(drain.ColdStartsAfterSwitch)},
		DowntimeRatio: Goal{Target: fmt.Sprintf("downtime stop-and-copy / drain >= %.0f", GoalDowntimeRatio)},
		PeakMemory:    Goal{Target: fmt.Sprintf("transfer peak extra memory < %.0f%% of the enclave owner's RSS", GoalPeakExtraFraction*100)},
	}
	g.NoFailed.Met = drain.Failed == 0 && drain.Submitted > 0
	g.NoColdStarts.Met = drain.ColdStartsAfterSwitch == 0
	g.DowntimeRatio.Value = stats.Ratio(stop.DowntimeMs, drain.DowntimeMs)
	g.DowntimeRatio.Met = g.DowntimeRatio.Value >= GoalDowntimeRatio
	if t := drain.Transfer; t != nil && t.SenderRSSBytes > 0 {
		g.PeakMemory.Value = t.PeakExtraFraction
		g.PeakMemory.Met = t.PeakExtraFraction < GoalPeakExtraFraction
	}
	g.AllMet = g.NoFailed.Met && g.NoColdStarts.Met && g.DowntimeRatio.Met && g.PeakMemory.Met
	return g
}

// DrainTable is the printed side-by-side table of the two phases.
func DrainTable(drain, stop *DrainPhase) string {
	var b strings.Builder
	row := func(name string, f func(p *DrainPhase) string) {
		fmt.Fprintf(&b, "%-34s %14s %14s\n", name, f(drain), f(stop))
	}
	fmt.Fprintf(&b, "%-34s %14s %14s\n", "", "drain", "stop-and-copy")
	row("submitted", func(p *DrainPhase) string { return fmt.Sprint(p.Submitted) })
	row("failed", func(p *DrainPhase) string { return fmt.Sprint(p.Failed) })
	row("cold starts after the switch", func(p *DrainPhase) string { return fmt.Sprint(p.ColdStartsAfterSwitch) })
	row("downtime ms (longest answer gap)", func(p *DrainPhase) string { return fmt.Sprintf("%.0f", p.DowntimeMs) })
	row("answer gap before the trigger ms", func(p *DrainPhase) string { return fmt.Sprintf("%.0f", p.BeforeGapMs) })
	row("switch window p50 ms", func(p *DrainPhase) string { return fmt.Sprintf("%.1f", p.Switch.P50Ms) })
	row("switch window p99 ms", func(p *DrainPhase) string { return fmt.Sprintf("%.1f", p.Switch.P99Ms) })
	row("before p99 ms", func(p *DrainPhase) string { return fmt.Sprintf("%.1f", p.Before.P99Ms) })
	row("time to drained ms", func(p *DrainPhase) string { return fmt.Sprintf("%.0f", p.DrainedMs) })
	row("bytes moved", func(p *DrainPhase) string {
		return transferCell(p, func(t *DrainTransfer) string { return fmt.Sprint(t.Bytes) })
	})
	row("transfer peak extra KiB", func(p *DrainPhase) string {
		return transferCell(p, func(t *DrainTransfer) string { return fmt.Sprintf("%.1f", float64(t.PeakExtraBytes)/1024) })
	})
	row("... of the owner's RSS", func(p *DrainPhase) string {
		return transferCell(p, func(t *DrainTransfer) string { return fmt.Sprintf("%.3f%%", t.PeakExtraFraction*100) })
	})
	return b.String()
}

func transferCell(p *DrainPhase, f func(*DrainTransfer) string) string {
	if p.Transfer == nil {
		return "-"
	}
	return f(p.Transfer)
}

// GoalLines are the goals, one line each.
func (g DrainGoals) GoalLines() []string {
	line := func(x Goal, value string) string {
		met := "met"
		if !x.Met {
			met = "NOT met"
		}
		return fmt.Sprintf("%s: %s (%s)", x.Target, value, met)
	}
	return []string{
		line(g.NoFailed, fmt.Sprintf("%.0f", g.NoFailed.Value)),
		line(g.NoColdStarts, fmt.Sprintf("%.0f", g.NoColdStarts.Value)),
		line(g.DowntimeRatio, fmt.Sprintf("%.1fx", g.DowntimeRatio.Value)),
		line(g.PeakMemory, fmt.Sprintf("%.3f%%", g.PeakMemory.Value*100)),
	}
}

// drainMarkdown is the report's drain section.
func (r *Result) drainMarkdown() string {
	d, s := r.Drain, r.StopAndCopy
	if d == nil || s == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n## Drain: pre-copy vs stop-and-copy\n\n")
	if c := r.Config.Drain; c != nil {
		fmt.Fprintf(&b, "Open-loop load of %.0f requests/s over %d actions of image %s (%s), %.0f s before the trigger and %.0f s after it, "+
			"on a fresh platform per phase (broker, controller, invoker0 with the image prestarted, invoker1 without). "+
			"**drain**: `POST /invokers/0/drain {\"to\": 1}`; **stop-and-copy**: invoker0's `POST /disable`. "+
			"Downtime = the longest gap between consecutive successful answers of the image from the trigger to the end; "+
			"switch window = requests started from the trigger until %.0f s after the later of the switch and drained.\n\n",
			c.RatePerSecond, len(c.Actions), c.Image, strings.Join(c.Actions, ", "), c.BeforeS, c.AfterS, c.SwitchTailS)
	}
	b.WriteString("| | drain (pre-copy) | stop-and-copy |\n| --- | --- | --- |\n")
	row := func(name string, f func(p *DrainPhase) string) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, f(d), f(s))
	}
	row("submitted", func(p *DrainPhase) string { return fmt.Sprint(p.Submitted) })
	row("failed", func(p *DrainPhase) string { return fmt.Sprint(p.Failed) })
	row("cold starts after the switch", func(p *DrainPhase) string { return fmt.Sprint(p.ColdStartsAfterSwitch) })
	row("downtime ms", func(p *DrainPhase) string { return fmt.Sprintf("%.0f", p.DowntimeMs) })
	row("answer gap before the trigger ms", func(p *DrainPhase) string { return fmt.Sprintf("%.0f", p.BeforeGapMs) })
	row("switch window n", func(p *DrainPhase) string { return fmt.Sprint(p.Switch.N) })
	row("switch window p50 / p99 ms", func(p *DrainPhase) string { return fmt.Sprintf("%.1f / %.1f", p.Switch.P50Ms, p.Switch.P99Ms) })
	row("before the trigger p50 / p99 ms", func(p *DrainPhase) string { return fmt.Sprintf("%.1f / %.1f", p.Before.P50Ms, p.Before.P99Ms) })
	row("time to drained ms", func(p *DrainPhase) string { return fmt.Sprintf("%.0f", p.DrainedMs) })
	row("bytes moved (chunks)", func(p *DrainPhase) string {
		return transferCell(p, func(t *DrainTransfer) string { return fmt.Sprintf("%d (%d)", t.Bytes, t.Chunks) })
	})
	row("transfer peak extra (sender / receiver) KiB", func(p *DrainPhase) string {
		return transferCell(p, func(t *DrainTransfer) string {
			return fmt.Sprintf("%.1f / %.1f", float64(t.SenderPeakBytes)/1024, float64(t.ReceiverPeakBytes)/1024)
		})
	})
	row("transfer at ms (trigger at)", func(p *DrainPhase) string {
		return transferCell(p, func(t *DrainTransfer) string { return fmt.Sprintf("%.0f (%.0f)", t.AtMs, p.TriggerMs) })
	})
	row("enclave owner RSS MiB", func(p *DrainPhase) string {
		return transferCell(p, func(t *DrainTransfer) string { return fmt.Sprintf("%.1f", float64(t.SenderRSSBytes)/(1<<20)) })
	})
	row("peak extra / owner RSS", func(p *DrainPhase) string {
		return transferCell(p, func(t *DrainTransfer) string { return fmt.Sprintf("%.3f%%", t.PeakExtraFraction*100) })
	})
	b.WriteString("\nDowntime per action (ms):\n\n| action | drain | stop-and-copy |\n| --- | --- | --- |\n")
	for _, a := range sortedKeys(d.DowntimePerActionMs) {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f |\n", a, d.DowntimePerActionMs[a], s.DowntimePerActionMs[a])
	}
	if g := r.Goals; g != nil {
		b.WriteString("\nGoals:\n\n")
		for _, l := range g.GoalLines() {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, p := range []*DrainPhase{d, s} {
		for _, e := range p.Errors {
			fmt.Fprintf(&b, "\n- %s error: %s", p.Trigger, e)
		}
	}
	return b.String()
}
