package result

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/teemate/platform/bench/internal/stats"
)

// SchemaVersion names the layout of Result; bump it on any incompatible change.
const SchemaVersion = "teemate-bench/1"

// Result is one bench run.
type Result struct {
	Schema      string      `json:"schema"`
	Name        string      `json:"name"`
	StartedAt   time.Time   `json:"started_at"`
	FinishedAt  time.Time   `json:"finished_at"`
	Environment Environment `json:"environment"`
	Config      Config      `json:"config"`
	Models      []ModelInfo `json:"models"`
	Cases       []*Case     `json:"cases"`
	// Issue3 holds the overhead figures of the trivial "noop" action, per model.
	Issue3  map[string]*Overhead `json:"overhead_noop,omitempty"`
	Summary Summary              `json:"summary"`
	// Hostile holds a --hostile run's side-by-side figures (absent otherwise).
	Hostile *Hostile `json:"hostile,omitempty"`
	// Sealed holds a --sealed run's side-by-side figures (absent otherwise).
	Sealed *Sealed `json:"sealed,omitempty"`
	// Drain and StopAndCopy hold a --scenario drain run's two phases, Goals its goals (absent
	// otherwise).
	Drain       *DrainPhase `json:"drain,omitempty"`
	StopAndCopy *DrainPhase `json:"stop_and_copy,omitempty"`
	Goals       *DrainGoals `json:"goals,omitempty"`
	// Warnings are conditions that make the numbers less trustworthy (a busy machine, a model that
	// could not run, invalid responses).
	Warnings []string `json:"warnings"`
}

// Environment describes where the run happened.
type Environment struct {
	Hostname              string     `json:"hostname"`
	CPUModel              string     `json:"cpu_model"`
	Cores                 int        `json:"cores"`
	MemoryMB              int64      `json:"memory_mb"`
	Kernel                string     `json:"kernel"`
	NodeVersion           string     `json:"node_version"`
	GoVersion             string     `json:"go_version"`
	GitCommit             string     `json:"git_commit"`
	GitDirty              bool       `json:"git_dirty"`
	Mode                  string     `json:"mode"` // "direct" or "api"
	APIHost               string     `json:"api_host,omitempty"`
	Sandbox               string     `json:"sandbox"`
	Enclave               string     `json:"enclave"`
	SGX                   bool       `json:"sgx"`
	NodeExtraCACertsUnset bool       `json:"node_extra_ca_certs_unset"`
	LoadAvgBefore         [3]float64 `json:"loadavg_before"`
	Idle                  bool       `json:"idle"`
	IdleWaitedS           float64    `json:"idle_waited_s"`
	MemorySampler         string     `json:"memory_sampler"`
}

// Config is what the run was asked to do.
type Config struct {
	Profile          string   `json:"profile"` // "quick" or "full"
	Functions        []string `json:"functions"`
	Sizes            []string `json:"sizes"`
	Models           []string `json:"models"`
	Warmup           int      `json:"warmup"`
	Samples          int      `json:"samples"`
	Repeat           int      `json:"repeat"`
	Concurrency      []int    `json:"concurrency"`
	Bursts           int      `json:"bursts"`
	MemoryIntervalMs float64  `json:"memory_interval_ms"`
	ActionMemoryMB   int      `json:"action_memory_mb"`
	// IntervalMs is the least time between sequential latency samples' starts (0: back to back).
	IntervalMs float64 `json:"interval_ms,omitempty"`
	// PoolSize is the sandbox pool setting (0: the backend's default).
	PoolSize int `json:"pool_size,omitempty"`
	// OCIRuntime is the oci sandbox's runtime (teemate-launch, runc, crun); empty when the sandbox is not oci.
	OCIRuntime string `json:"oci_runtime,omitempty"`
	// IsolateReuse is teemate's isolate reuse ("tenant": each enclave thread keeps its isolate for
	// the bench's one namespace, a new context per activation); empty for the default, a new
	// isolate per activation.
	IsolateReuse string `json:"isolate_reuse,omitempty"`
	// Scenario is "drain" for --scenario drain, empty for the evaluation; Drain its settings.
	Scenario string       `json:"scenario,omitempty"`
	Drain    *DrainConfig `json:"drain,omitempty"`
}

// ModelInfo says whether a model ran and how its activations start.
type ModelInfo struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	// Start labels every activation of the model honestly: "cold" or what exactly is warm.
	Start       string `json:"start"`
	Description string `json:"description"`
}

// Sample kinds.
const (
	KindWarmup     = "warmup"
	KindLatency    = "latency"
	KindThroughput = "throughput"
	KindMemory     = "memory"
)

// Sample is one invocation.
type Sample struct {
	Kind         string             `json:"kind"`
	Concurrency  int                `json:"concurrency"`
	Rep          int                `json:"rep"`
	Seq          int                `json:"seq"`
	ActivationID string             `json:"activation_id,omitempty"`
	ClientMs     float64            `json:"client_ms"`
	WaitMs       *float64           `json:"wait_ms,omitempty"`
	InitMs       *float64           `json:"init_ms,omitempty"`
	DurationMs   *float64           `json:"duration_ms,omitempty"`
	Phases       map[string]float64 `json:"phases_ms,omitempty"`
	StatusCode   int                `json:"status_code"`
	Valid        bool               `json:"valid"`
	Error        string             `json:"error,omitempty"`
}

// Burst is one throughput measurement: Requests sent at once, Valid of them answered correctly,
// Seconds from the first send to the last answer.
type Burst struct {
	Rep         int     `json:"rep"`
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Valid       int     `json:"valid"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"` // Valid / Seconds
}

// Memory is one peak-memory measurement.
type Memory struct {
	Rep         int     `json:"rep"`
	Concurrency int     `json:"concurrency"`
	PeakMB      float64 `json:"peak_mb"`
	Processes   int     `json:"processes"`
	Samples     int     `json:"samples"`
	Source      string  `json:"source"`
}

// Case is one model × function × size.
type Case struct {
	Model    string   `json:"model"`
	Function string   `json:"function"`
	Size     string   `json:"size"`
	Samples  []Sample `json:"samples"`
	Bursts   []Burst  `json:"bursts"`
	Memory   []Memory `json:"memory"`
	// CPU is the CPU per activation by component (absent when not measured: api mode).
	CPU *CPU `json:"cpu_ms,omitempty"`
	// ValidatorChecked is true once a corrupted copy of a real response was shown to be rejected by
	// the function's validator (so "valid" means something).
	ValidatorChecked bool `json:"validator_checked"`
	// Derived by Finish:
	Latency      *stats.Summary     `json:"latency_ms,omitempty"`
	PhaseP50     map[string]float64 `json:"phase_p50_ms"`
	Throughput   map[string]float64 `json:"throughput"`     // "8", "64": median req/s over bursts
	PeakMemoryMB map[string]float64 `json:"peak_memory_mb"` // "1", "64": max over reps
	Invalid      int                `json:"invalid"`
	AllValid     bool               `json:"all_valid"`
}

// Overhead is the issue-3 pair of figures for one model, from the noop action's latency samples.
type Overhead struct {
	N int `json:"n"`
	// NewIsolateP50Ms is the p50 of isolate_create + isolate_teardown (teemate only).
	NewIsolateP50Ms float64 `json:"new_isolate_p50_ms"`
	// OverheadP50Ms and OverheadP99Ms are end-to-end latency minus the run phase.
	OverheadP50Ms float64 `json:"invoker_overhead_p50_ms"`
	OverheadP99Ms float64 `json:"invoker_overhead_p99_ms"`
	EndToEndP50Ms float64 `json:"end_to_end_p50_ms"`
}

// Encode writes the result as indented JSON.
func (r *Result) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return append(b, '\n'), nil
}

// Decode reads a result and checks its schema version.
func Decode(b []byte) (*Result, error) {
	var r Result
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("decode result: %w", err)
	}
	if r.Schema != SchemaVersion {
		return nil, fmt.Errorf("decode result: schema %q, this bench reads %q", r.Schema, SchemaVersion)
	}
	return &r, nil
}

// Finish derives each case's statistics from its samples and computes the summary.
func (r *Result) Finish() {
	for _, c := range r.Cases {
		c.finish()
	}
	r.Issue3 = map[string]*Overhead{}
	for _, c := range r.Cases {
		if c.Function == NoopFunction {
			if o := overhead(c); o != nil {
				r.Issue3[c.Model] = o
			}
		}
	}
	r.Summary = Summarize(r.Cases)
	if h := r.Hostile; h != nil {
		for _, c := range append(append([]*Case(nil), h.Baseline...), h.UnderAttack...) {
			c.finish()
		}
		h.Summarize()
		if n := h.BenignInvalid(); n > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("hostile run: %d benign answers were invalid (see the hostile section)", n))
		}
	}
	if s := r.Sealed; s != nil {
		s.Summarize()
		if n := s.UnsealedInvalid + s.SealedInvalid; n > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("sealed run: %d answers were invalid (see the sealed section)", n))
		}
	}
	for _, c := range r.Cases {
		if c.Invalid > 0 {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s/%s/%s: %d invalid responses excluded", c.Model, c.Function, c.Size, c.Invalid))
		}
	}
}

// NoopFunction is the trivial action the bench adds for the overhead figures; it is not one of the
// nine evaluated functions and is left out of the summary.
const NoopFunction = "noop"

func (c *Case) finish() {
	var lat []float64
	phases := map[string][]float64{}
	c.Invalid = 0
	for _, s := range c.Samples {
		if !s.Valid {
			if s.Kind != KindWarmup {
				c.Invalid++
			}
			continue
		}
		if s.Kind != KindLatency {
			continue
		}
		lat = append(lat, s.ClientMs)
		for k, v := range s.Phases {
			phases[k] = append(phases[k], v)
		}
	}
	c.AllValid = c.Invalid == 0 && len(lat) > 0
	c.Latency, c.PhaseP50 = nil, nil
	if s, err := stats.Summarize(lat); err == nil {
		c.Latency = &s
		c.PhaseP50 = map[string]float64{}
		for k, v := range phases {
			c.PhaseP50[k], _ = stats.Percentile(v, 50) // v is never empty: k was seen in a sample
		}
	}
	c.Throughput = map[string]float64{}
	byC := map[int][]float64{}
	for _, b := range c.Bursts {
		byC[b.Concurrency] = append(byC[b.Concurrency], b.PerSecond)
	}
	for conc, v := range byC {
		c.Throughput[fmt.Sprint(conc)], _ = stats.Percentile(v, 50) // v holds at least the burst that made the key
	}
	c.PeakMemoryMB = map[string]float64{}
	for _, m := range c.Memory {
		k := fmt.Sprint(m.Concurrency)
		if m.PeakMB > c.PeakMemoryMB[k] {
			c.PeakMemoryMB[k] = m.PeakMB
		}
	}
}

func overhead(c *Case) *Overhead {
	var iso, over, e2e []float64
	for _, s := range c.Samples {
		if s.Kind != KindLatency || !s.Valid {
			continue
		}
		e2e = append(e2e, s.ClientMs)
		if run, ok := s.Phases["run"]; ok {
			over = append(over, s.ClientMs-run)
		}
		if a, ok := s.Phases["isolate_create"]; ok {
			iso = append(iso, a+s.Phases["isolate_teardown"])
		}
	}
	if len(e2e) == 0 {
		return nil
	}
	o := &Overhead{N: len(e2e)}
	// Percentile fails only on an empty series, and each one is checked non-empty first.
	o.EndToEndP50Ms, _ = stats.Percentile(e2e, 50)
	if len(over) > 0 {
		o.OverheadP50Ms, _ = stats.Percentile(over, 50) // non-empty
		o.OverheadP99Ms, _ = stats.Percentile(over, 99) // non-empty
	}
	if len(iso) > 0 {
		o.NewIsolateP50Ms, _ = stats.Percentile(iso, 50) // non-empty
	}
	return o
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
