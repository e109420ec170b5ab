package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/teemate/platform/bench/internal/memsample"
	"github.com/teemate/platform/bench/internal/result"
	"github.com/teemate/platform/bench/internal/stats"
	"github.com/teemate/platform/functions"
	"github.com/teemate/platform/functions/objectstore"
)

// CaseSpec is one function at one input size.
type CaseSpec struct{ Function, Size string }

// Options of a run.
type Options struct {
	Models  []string
	Cases   []CaseSpec
	Warmup  int
	Samples int
	Repeat  int
	// Interval is the least time from one sequential latency sample's start to the next's (0:
	// back to back). Pacing keeps a latency run below the rate at which a backend refills its
	// pool of created sandboxes, so it measures latency, not the pool running dry.
	Interval time.Duration
	// Concurrency lists the burst sizes for throughput (8 and 64).
	Concurrency []int
	// Bursts is how many bursts per concurrency and repetition.
	Bursts int
	// MemoryConcurrency lists the burst sizes sampled for peak memory (1 and 64).
	MemoryConcurrency []int
	MemoryInterval    time.Duration
	CgroupGlobs       []string
	ActionMemoryMB    int
	TimeoutMs         int
	// Noop adds the trivial action for the overhead figures (latency samples only).
	Noop bool
	// NoSandboxNetwork says the sandbox backend gives sandboxes no network (oci, for now): the
	// native and strawman models cannot run a function that needs one (the uploader), so those
	// cases are left out with a warning; teemate's network is its owner's and is measured.
	NoSandboxNetwork bool
	// NoCPU leaves out the CPU accounting of the latency samples (and the waits for the machine
	// to settle around them).
	NoCPU bool
	// Tamper, when set, rewrites results before validation. The bench's own tests use it to prove
	// that invalid responses are caught and excluded; it is never set by bin/bench.
	Tamper func(function string, seq int, result json.RawMessage) json.RawMessage
	// Progress receives one line per finished case (nil: silent).
	Progress func(string)
}

// NoopCode is the trivial action: it returns its parameter n, so even the noop is validated.
const NoopCode = `function main(params) { return { noop: true, n: params.n }; }
if (typeof exports !== 'undefined') exports.main = main;`

// ModelStart says honestly how each model's activations start.
var ModelStart = map[string]string{
	"teemate":  "fresh sandbox + new isolate per activation, attached to the image's warm shared enclave (started with the invoker); never a reused container",
	"native":   "cold: fresh sandbox + new Node action proxy per activation (OpenWhisk's way, no enclave)",
	"strawman": "cold: fresh sandbox + a fresh enclave runtime booted inside it per activation (without SGX: a Node runtime boot, not an enclave build)",
}

// Run measures every model on every case and fills res (cases, models, warnings); the caller calls
// res.Finish afterwards.
func Run(ctx context.Context, p Platform, opts Options, res *result.Result) error {
	if opts.Samples < 1 || opts.Repeat < 1 {
		return errors.New("harness: samples and repeat must be at least 1")
	}
	store, err := objectstore.Start(objectstore.Options{})
	if err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	defer store.Close()
	// Confined enclave owners reach the host's loopback only through their egress allow-list.
	if a, ok := p.(interface{ AllowEgress(hostport string) }); ok {
		a.AllowEgress(strings.TrimPrefix(store.URL(), "http://"))
	}
	specs, err := actionSpecs(opts)
	if err != nil {
		return err
	}
	if err := p.Deploy(ctx, specs); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	cases := opts.Cases
	if opts.Noop {
		cases = append([]CaseSpec{{Function: result.NoopFunction, Size: "test"}}, cases...)
	}
	byKey := map[string]*result.Case{}
	unavailable := map[string]string{}
	for rep := 1; rep <= opts.Repeat; rep++ {
		for _, model := range opts.Models {
			if _, gone := unavailable[model]; gone {
				continue
			}
			stop, err := p.UseModel(ctx, model)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				unavailable[model] = err.Error()
				res.Warnings = append(res.Warnings, fmt.Sprintf("model %s not measured: %v", model, err))
				continue
			}
			for _, cs := range cases {
				if opts.NoSandboxNetwork && model != "teemate" && needsNetwork(cs.Function) {
					if rep == 1 {
						res.Warnings = append(res.Warnings, fmt.Sprintf("%s/%s/%s not measured: the function needs a network and this sandbox backend gives its sandboxes none (teemate's network is its owner's)",
							model, cs.Function, cs.Size))
					}
					continue
				}
				key := model + "/" + cs.Function + "/" + cs.Size
				c := byKey[key]
				if c == nil {
					c = &result.Case{Model: model, Function: cs.Function, Size: cs.Size}
					byKey[key] = c
					res.Cases = append(res.Cases, c)
				}
				r := &caseRun{p: p, opts: opts, store: store, c: c, rep: rep, res: res}
				if err := r.run(ctx, cs); err != nil {
					stop()
					return err
				}
			}
			stop()
		}
	}
	for _, m := range opts.Models {
		info := result.ModelInfo{Name: m, Available: true, Start: ModelStart[m], Description: ModelStart[m]}
		if why, gone := unavailable[m]; gone {
			info.Available, info.Reason = false, why
		}
		res.Models = append(res.Models, info)
	}
	return nil
}

func needsNetwork(function string) bool {
	f, err := functions.Get(function)
	return err == nil && f.NeedsNetwork
}

func actionSpecs(opts Options) ([]ActionSpec, error) {
	seen := map[string]bool{}
	var specs []ActionSpec
	if opts.Noop {
		specs = append(specs, ActionSpec{Name: result.NoopFunction, Code: NoopCode, MemoryMB: opts.ActionMemoryMB, TimeoutMs: opts.TimeoutMs})
	}
	for _, cs := range opts.Cases {
		if seen[cs.Function] {
			continue
		}
		seen[cs.Function] = true
		f, err := functions.Get(cs.Function)
		if err != nil {
			return nil, err
		}
		if _, err := f.Input(cs.Size); err != nil {
			return nil, err
		}
		specs = append(specs, ActionSpec{Name: f.Name, Code: f.Code, Network: f.NeedsNetwork,
			MemoryMB: opts.ActionMemoryMB, TimeoutMs: opts.TimeoutMs})
	}
	return specs, nil
}

// caseRun measures one case in one repetition.
type caseRun struct {
	p     Platform
	opts  Options
	store *objectstore.Store
	c     *result.Case
	rep   int
	res   *result.Result
	mu    sync.Mutex
	seq   int
	input json.RawMessage
}

func (r *caseRun) run(ctx context.Context, cs CaseSpec) error {
	var err error
	if r.input, err = caseInput(cs, r.store.URL()); err != nil {
		return err
	}
	noop := cs.Function == result.NoopFunction
	for i := 0; i < r.opts.Warmup; i++ {
		s, raw := r.one(ctx, result.KindWarmup, 1)
		if s.Valid && !r.c.ValidatorChecked {
			r.checkValidator(cs, raw)
		}
	}
	if err := r.latency(ctx); err != nil {
		return err
	}
	if !noop {
		for _, conc := range r.opts.Concurrency {
			for b := 0; b < r.opts.Bursts; b++ {
				valid, secs := r.burst(ctx, result.KindThroughput, conc)
				r.c.Bursts = append(r.c.Bursts, result.Burst{Rep: r.rep, Concurrency: conc, Requests: conc,
					Valid: valid, Seconds: secs, PerSecond: stats.Ratio(float64(valid), secs)})
			}
		}
		if root := r.p.MemoryRoot(); root > 0 {
			for _, conc := range r.opts.MemoryConcurrency {
				s, err := memsample.Start(memsample.Options{Root: root, Interval: r.opts.MemoryInterval, CgroupGlobs: r.opts.CgroupGlobs})
				if err != nil {
					return fmt.Errorf("memory sampler: %w", err)
				}
				r.burst(ctx, result.KindMemory, conc)
				m := s.Stop()
				r.c.Memory = append(r.c.Memory, result.Memory{Rep: r.rep, Concurrency: conc,
					PeakMB: float64(m.PeakBytes) / (1 << 20), Processes: m.PeakProcesses, Samples: m.Samples, Source: m.Source})
			}
		}
	}
	if r.opts.Progress != nil {
		r.opts.Progress(r.progressLine())
	}
	return ctx.Err()
}

// latency runs the sequential samples and accounts their CPU by component (cpuacct), from a
// start and an end at which the previous work has settled.
func (r *caseRun) latency(ctx context.Context) error {
	var ph *cpuPhase
	if !r.opts.NoCPU {
		var err error
		if ph, err = beginCPU(r.p, ctx.Done()); err != nil {
			r.warn(fmt.Sprintf("%s/%s/%s: CPU not measured: %v", r.c.Model, r.c.Function, r.c.Size, err))
		}
	}
	for i := 0; i < r.opts.Samples; i++ {
		next := time.Now().Add(r.opts.Interval)
		r.one(ctx, result.KindLatency, 1)
		if wait := time.Until(next); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if ph == nil {
		return nil
	}
	u, err := ph.end(r.c.Model, r.opts.Samples, ctx.Done())
	if err != nil {
		r.warn(fmt.Sprintf("%s/%s/%s: CPU not measured: %v", r.c.Model, r.c.Function, r.c.Size, err))
		return nil
	}
	if r.c.CPU == nil {
		r.c.CPU = &result.CPU{}
	}
	r.c.CPU.Add(u)
	return nil
}

func (r *caseRun) warn(w string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Warnings = append(r.res.Warnings, w)
}

func (r *caseRun) progressLine() string {
	var lat []float64
	bad := 0
	for _, s := range r.c.Samples {
		if s.Rep == r.rep && s.Kind == result.KindLatency {
			if s.Valid {
				lat = append(lat, s.ClientMs)
			} else {
				bad++
			}
		}
	}
	// A repetition with no valid sample yet (stats.ErrEmpty) prints 0; the line is progress only.
	p50, _ := stats.Percentile(lat, 50)
	p99, _ := stats.Percentile(lat, 99) // as above
	line := fmt.Sprintf("rep %d %-8s %-15s %-5s p50 %7.1f ms  p99 %7.1f ms", r.rep, r.c.Model, r.c.Function, r.c.Size, p50, p99)
	for _, b := range r.c.Bursts {
		if b.Rep == r.rep {
			line += fmt.Sprintf("  @%d %.1f/s", b.Concurrency, b.PerSecond)
		}
	}
	if u := r.c.CPU; u != nil {
		line += fmt.Sprintf("  cpu %.1f ms/act", u.Total)
	}
	for _, m := range r.c.Memory {
		if m.Rep == r.rep {
			line += fmt.Sprintf("  mem@%d %.0f MiB", m.Concurrency, m.PeakMB)
		}
	}
	if bad > 0 {
		line += fmt.Sprintf("  INVALID %d", bad)
	}
	return line
}

func caseInput(cs CaseSpec, storeURL string) (json.RawMessage, error) {
	if cs.Function == result.NoopFunction {
		return json.RawMessage(`{"n":42}`), nil
	}
	f, err := functions.Get(cs.Function)
	if err != nil {
		return nil, err
	}
	if f.NeedsNetwork {
		return f.InputWith(cs.Size, map[string]any{"url": storeURL})
	}
	return f.Input(cs.Size)
}

// validate applies the function's validator (the uploader's also checks the object store).
func (r *caseRun) validate(result json.RawMessage) error {
	if r.c.Function == resultNoop {
		var out struct {
			Noop bool `json:"noop"`
			N    int  `json:"n"`
		}
		if err := json.Unmarshal(result, &out); err != nil || !out.Noop || out.N != 42 {
			return fmt.Errorf("noop: unexpected result %s", truncate(result, 200))
		}
		return nil
	}
	return functions.Validate(r.c.Function, r.c.Size, r.input, result, functions.WithObjectStore(r.store))
}

const resultNoop = result.NoopFunction

// one runs one invocation, validates it and records the sample; it also returns the raw result.
func (r *caseRun) one(ctx context.Context, kind string, conc int) (result.Sample, json.RawMessage) {
	r.mu.Lock()
	r.seq++
	seq := r.seq
	r.mu.Unlock()
	s := result.Sample{Kind: kind, Concurrency: conc, Rep: r.rep, Seq: seq}
	ictx, cancel := context.WithTimeout(ctx, time.Duration(r.opts.TimeoutMs)*time.Millisecond+60*time.Second)
	reply, err := r.p.Invoke(ictx, r.c.Function, r.input)
	cancel()
	var raw json.RawMessage
	if err != nil {
		s.Error = err.Error()
	} else {
		a := reply.Activation
		s.ClientMs = reply.ClientMs
		s.ActivationID = a.ActivationID
		s.Phases = Timings(a)
		s.WaitMs, s.InitMs = annotationMs(a, "waitTime"), annotationMs(a, "initTime")
		if a.Duration != nil {
			d := float64(*a.Duration)
			s.DurationMs = &d
		}
		s.StatusCode = a.Response.StatusCode
		raw = a.Response.Result
		if r.opts.Tamper != nil {
			raw = r.opts.Tamper(r.c.Function, seq, raw)
		}
		switch {
		case !a.Response.IsSuccess():
			s.Error = fmt.Sprintf("activation status %d: %s", a.Response.StatusCode, truncate(raw, 300))
		default:
			if verr := r.validate(raw); verr != nil {
				s.Error = "invalid: " + verr.Error() + ": " + truncate(raw, 200)
			} else {
				s.Valid = true
			}
		}
	}
	r.mu.Lock()
	r.c.Samples = append(r.c.Samples, s)
	r.mu.Unlock()
	return s, raw
}

// burst sends conc invocations at once and returns how many were valid and the seconds from the
// first send to the last answer.
func (r *caseRun) burst(ctx context.Context, kind string, conc int) (int, float64) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	valid := 0
	start := make(chan struct{})
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if s, _ := r.one(ctx, kind, conc); s.Valid {
				mu.Lock()
				valid++
				mu.Unlock()
			}
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	return valid, time.Since(t0).Seconds()
}

// checkValidator shows that the validator rejects a corrupted copy of a real, valid response, so
// that "valid" in the results means something.
func (r *caseRun) checkValidator(cs CaseSpec, raw json.RawMessage) {
	bad, err := Corrupt(raw)
	if err == nil && r.validate(bad) != nil {
		r.c.ValidatorChecked = true
		return
	}
	r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("%s/%s: the validator did not reject a corrupted response (%v)", cs.Function, cs.Size, err))
}

// Corrupt changes every top-level field of a result object except "measurement" (timings the
// validators rightly ignore): numbers +1, strings get a suffix, booleans flip, anything else
// becomes a string.
func Corrupt(raw json.RawMessage) (json.RawMessage, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("corrupt: %w", err)
	}
	if len(m) == 0 {
		return nil, errors.New("corrupt: empty result")
	}
	for k, v := range m {
		if k == "measurement" {
			continue
		}
		switch x := v.(type) {
		case float64:
			m[k] = x + 1
		case string:
			m[k] = x + "~corrupted"
		case bool:
			m[k] = !x
		default:
			m[k] = "corrupted"
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("corrupt: %w", err)
	}
	return b, nil
}
