package result

import (
	"encoding/json"
	"fmt"

	"github.com/teemate/platform/bench/internal/stats"
)

// ModelSummary combines a model's cases (function × size, noop excluded) by geometric mean.
type ModelSummary struct {
	Cases          int     `json:"cases"`
	P50Ms          float64 `json:"p50_ms"`
	P99Ms          float64 `json:"p99_ms"`
	Throughput8    float64 `json:"throughput_8"`
	Throughput64   float64 `json:"throughput_64"`
	PeakMemory1MB  float64 `json:"peak_memory_1_mb"`
	PeakMemory64MB float64 `json:"peak_memory_64_mb"`
	// CPUMs is the CPU per activation (ms, all components), absent when not measured.
	CPUMs float64 `json:"cpu_ms_per_activation,omitempty"`
}

// Ratios compare teemate with the other models; each is oriented so that larger is better for
// teemate. A ratio is the geometric mean over the cases both models have; 0 means it could not be
// formed (a model did not run, or a value was missing).
type Ratios struct {
	LatencyTeemateVsNative        float64 `json:"latency_teemate_vs_native"`
	LatencyTeemateVsStrawman      float64 `json:"latency_teemate_vs_strawman"`
	LatencyP99TeemateVsStrawman   float64 `json:"latency_p99_teemate_vs_strawman"`
	Throughput8TeemateVsStrawman  float64 `json:"throughput8_teemate_vs_strawman"`
	Throughput64TeemateVsStrawman float64 `json:"throughput64_teemate_vs_strawman"`
	Throughput64TeemateVsNative   float64 `json:"throughput64_teemate_vs_native"`
	Memory64StrawmanVsTeemate     float64 `json:"memory64_strawman_vs_teemate"`
	Memory64NativeVsTeemate       float64 `json:"memory64_native_vs_teemate"`
	// PerFunction holds the latency ratio vs strawman of each case ("function/size").
	LatencyVsStrawmanPerCase map[string]float64 `json:"latency_teemate_vs_strawman_per_case,omitempty"`
}

// Summary is written flat: one key per model ("teemate": {...}), plus "ratios" and "all_valid"
// (model -> "function/size" -> bool).
type Summary struct {
	Models   map[string]ModelSummary
	Ratios   Ratios
	AllValid map[string]map[string]bool
}

// MarshalJSON writes the flat form.
func (s Summary) MarshalJSON() ([]byte, error) {
	m := map[string]any{"ratios": s.Ratios, "all_valid": s.AllValid}
	for k, v := range s.Models {
		if k == "ratios" || k == "all_valid" {
			return nil, fmt.Errorf("summary: model name %q clashes with a summary key", k)
		}
		m[k] = v
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads the flat form.
func (s *Summary) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	out := Summary{Models: map[string]ModelSummary{}}
	for k, v := range m {
		var err error
		switch k {
		case "ratios":
			err = json.Unmarshal(v, &out.Ratios)
		case "all_valid":
			err = json.Unmarshal(v, &out.AllValid)
		default:
			var ms ModelSummary
			err = json.Unmarshal(v, &ms)
			out.Models[k] = ms
		}
		if err != nil {
			return fmt.Errorf("summary %q: %w", k, err)
		}
	}
	*s = out
	return nil
}

func caseKey(c *Case) string { return c.Function + "/" + c.Size }

// metric extracts one number of a case; ok is false when the case does not have it.
type metric func(c *Case) (float64, bool)

func p50(c *Case) (float64, bool) {
	if c.Latency == nil {
		return 0, false
	}
	return c.Latency.P50, true
}

func p99(c *Case) (float64, bool) {
	if c.Latency == nil {
		return 0, false
	}
	return c.Latency.P99, true
}

func cpu(c *Case) (float64, bool) {
	if c.CPU == nil || c.CPU.Total <= 0 {
		return 0, false
	}
	return c.CPU.Total, true
}

func tput(conc string) metric {
	return func(c *Case) (float64, bool) { v, ok := c.Throughput[conc]; return v, ok && v > 0 }
}

func mem(conc string) metric {
	return func(c *Case) (float64, bool) { v, ok := c.PeakMemoryMB[conc]; return v, ok && v > 0 }
}

// Summarize computes the per-model summary and the ratios. Only valid latency samples enter the
// statistics (Case.finish); the noop action is left out.
func Summarize(cases []*Case) Summary {
	s := Summary{Models: map[string]ModelSummary{}, AllValid: map[string]map[string]bool{}}
	byModel := map[string]map[string]*Case{}
	for _, c := range cases {
		if s.AllValid[c.Model] == nil {
			s.AllValid[c.Model] = map[string]bool{}
		}
		s.AllValid[c.Model][caseKey(c)] = c.AllValid
		if c.Function == NoopFunction {
			continue
		}
		if byModel[c.Model] == nil {
			byModel[c.Model] = map[string]*Case{}
		}
		byModel[c.Model][caseKey(c)] = c
	}
	geo := func(cs map[string]*Case, m metric) float64 {
		var xs []float64
		for _, c := range cs {
			if v, ok := m(c); ok {
				xs = append(xs, v)
			}
		}
		g, err := stats.GeoMean(xs)
		if err != nil {
			return 0
		}
		return g
	}
	for model, cs := range byModel {
		s.Models[model] = ModelSummary{Cases: len(cs), P50Ms: geo(cs, p50), P99Ms: geo(cs, p99),
			Throughput8: geo(cs, tput("8")), Throughput64: geo(cs, tput("64")),
			PeakMemory1MB: geo(cs, mem("1")), PeakMemory64MB: geo(cs, mem("64")), CPUMs: geo(cs, cpu)}
	}
	tm := byModel["teemate"]
	// ratio is the geometric mean over shared cases of num(case)/den(case), where numFrom/denFrom
	// name which model supplies numerator and denominator.
	ratio := func(numFrom, denFrom map[string]*Case, m metric) float64 {
		var xs []float64
		for k, a := range numFrom {
			b, ok := denFrom[k]
			if !ok {
				continue
			}
			va, oka := m(a)
			vb, okb := m(b)
			if r := stats.Ratio(va, vb); oka && okb && r > 0 {
				xs = append(xs, r)
			}
		}
		g, err := stats.GeoMean(xs)
		if err != nil {
			return 0
		}
		return g
	}
	nat, straw := byModel["native"], byModel["strawman"]
	s.Ratios = Ratios{
		LatencyTeemateVsNative:        ratio(nat, tm, p50),
		LatencyTeemateVsStrawman:      ratio(straw, tm, p50),
		LatencyP99TeemateVsStrawman:   ratio(straw, tm, p99),
		Throughput8TeemateVsStrawman:  ratio(tm, straw, tput("8")),
		Throughput64TeemateVsStrawman: ratio(tm, straw, tput("64")),
		Throughput64TeemateVsNative:   ratio(tm, nat, tput("64")),
		Memory64StrawmanVsTeemate:     ratio(straw, tm, mem("64")),
		Memory64NativeVsTeemate:       ratio(nat, tm, mem("64")),
	}
	if len(tm) > 0 && len(straw) > 0 {
		s.Ratios.LatencyVsStrawmanPerCase = map[string]float64{}
		for k, c := range tm {
			if sc, ok := straw[k]; ok {
				a, oka := p50(sc)
				b, okb := p50(c)
				if oka && okb {
					s.Ratios.LatencyVsStrawmanPerCase[k] = stats.Ratio(a, b)
				}
			}
		}
	}
	return s
}
