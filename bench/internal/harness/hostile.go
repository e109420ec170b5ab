package harness

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/teemate/platform/bench/internal/result"
	"github.com/teemate/platform/functions/hostile"
	"github.com/teemate/platform/functions/objectstore"
	"github.com/teemate/platform/invoker/whisk"
)

// HostileOptions of RunHostile.
type HostileOptions struct {
	// Cases are the benign functions (Noop adds the noop action in front).
	Cases []CaseSpec
	Noop  bool
	// Warmup invocations per benign function, then Samples sequential ones per function and phase
	// (round robin over the functions, so that they see the same conditions).
	Warmup, Samples int
	// MaxSamples bounds the under-attack phase, which otherwise lasts until the hostile mix has
	// made one full pass.
	MaxSamples int
	Interval   time.Duration
	// Streams is how many hostile activations run at a time (default 1).
	Streams int
	// Hostile is the mix (hostile.Cases without the lethal ones, by default).
	Hostile []hostile.Case
	// Params are the hostile actions' parameters: the endpoints of the platform under attack.
	Params                    hostile.Params
	ActionMemoryMB, TimeoutMs int
	Progress                  func(string)
}

// HostileMix is the bench's default mix: every case that cannot end the invoker's process on a
// runtime without confinement (the bench's invoker runs inside the bench).
func HostileMix() []hostile.Case {
	var out []hostile.Case
	for _, c := range hostile.Cases() {
		if !c.Lethal {
			out = append(out, c)
		}
	}
	return out
}

const hostilePrefix = "hostile-"

// RunHostile measures the benign stream on the teemate model alone, then beside the hostile mix,
// and fills res.Hostile (the caller calls res.Finish).
func RunHostile(ctx context.Context, p Platform, opts HostileOptions, res *result.Result) error {
	if opts.Samples < 1 || len(opts.Hostile) == 0 {
		return fmt.Errorf("harness: hostile run needs samples >= 1 and a hostile mix")
	}
	if opts.Streams < 1 {
		opts.Streams = 1
	}
	if opts.MaxSamples < opts.Samples {
		opts.MaxSamples = 100 * opts.Samples
	}
	store, err := objectstore.Start(objectstore.Options{})
	if err != nil {
		return fmt.Errorf("object store: %w", err)
	}
	defer store.Close()
	base := Options{Cases: opts.Cases, Noop: opts.Noop, ActionMemoryMB: opts.ActionMemoryMB, TimeoutMs: opts.TimeoutMs}
	specs, err := actionSpecs(base)
	if err != nil {
		return err
	}
	for _, c := range opts.Hostile {
		specs = append(specs, ActionSpec{Name: hostilePrefix + c.Name, Code: c.Code, MemoryMB: c.MemoryMB, TimeoutMs: c.TimeoutMs, Network: c.Network})
	}
	if err := p.Deploy(ctx, specs); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	stop, err := p.UseModel(ctx, "teemate")
	if err != nil {
		return fmt.Errorf("teemate model: %w", err)
	}
	defer stop()
	res.Models = []result.ModelInfo{{Name: "teemate", Available: true, Start: ModelStart["teemate"], Description: ModelStart["teemate"]}}

	cases := opts.Cases
	if opts.Noop {
		cases = append([]CaseSpec{{Function: result.NoopFunction, Size: "test"}}, cases...)
	}
	h := &result.Hostile{HostileStreams: opts.Streams,
		Description: fmt.Sprintf("teemate model; %d warm-up invocations, then sequential invocations round robin over the functions: %d per function alone, "+
			"then at least %d per function (and until the hostile mix, %d cases without the lethal ones, finished a full pass; at most %d) "+
			"while %d hostile activation(s) at a time run beside them on the same warm enclave.",
			opts.Warmup, opts.Samples, opts.Samples, len(opts.Hostile), opts.MaxSamples, opts.Streams)}
	res.Hostile = h
	phase := func(name string) ([]*caseRun, error) {
		var runs []*caseRun
		for _, cs := range cases {
			c := &result.Case{Model: "teemate", Function: cs.Function, Size: cs.Size}
			r := &caseRun{p: p, opts: base, store: store, c: c, rep: 1, res: res}
			if r.input, err = caseInput(cs, store.URL()); err != nil {
				return nil, err
			}
			runs = append(runs, r)
			if name == "baseline" {
				h.Baseline = append(h.Baseline, c)
			} else {
				h.UnderAttack = append(h.UnderAttack, c)
			}
		}
		return runs, nil
	}
	sample := func(runs []*caseRun, kind string) {
		next := time.Now().Add(opts.Interval)
		for _, r := range runs {
			r.one(ctx, kind, 1)
		}
		if wait := time.Until(next); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
	}

	baseline, err := phase("baseline")
	if err != nil {
		return err
	}
	for i := 0; i < opts.Warmup; i++ {
		sample(baseline, result.KindWarmup)
	}
	for i := 0; i < opts.Samples && ctx.Err() == nil; i++ {
		sample(baseline, result.KindLatency)
	}
	progress(opts.Progress, "baseline", baseline)

	attack, err := phase("under attack")
	if err != nil {
		return err
	}
	mix := startMix(ctx, p, opts)
	for i := 0; ctx.Err() == nil && i < opts.MaxSamples && (i < opts.Samples || mix.passes() < 1); i++ {
		sample(attack, result.KindLatency)
	}
	h.Cases, h.Passes = mix.stop()
	progress(opts.Progress, "beside the hostile mix", attack)
	if l, err := LoadAvg(); err == nil {
		h.LoadAvgAfter = l
	}
	return ctx.Err()
}

func progress(f func(string), phase string, runs []*caseRun) {
	if f == nil {
		return
	}
	for _, r := range runs {
		f(fmt.Sprintf("%-24s %s", phase, r.progressLine()))
	}
}

// mix runs the hostile cases round robin on opts.Streams goroutines until stopped.
type mix struct {
	cases  []hostile.Case
	done   atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	byName map[string]*result.HostileCase
}

func startMix(ctx context.Context, p Platform, opts HostileOptions) *mix {
	m := &mix{cases: opts.Hostile, byName: map[string]*result.HostileCase{}}
	mctx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	var next atomic.Int64
	params := opts.Params.JSON()
	for s := 0; s < opts.Streams; s++ {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			for mctx.Err() == nil {
				c := m.cases[int(next.Add(1)-1)%len(m.cases)]
				// A started hostile activation is waited for (up to its limit), not abandoned: the
				// phase is over only when nothing hostile runs.
				ictx, icancel := context.WithTimeout(context.WithoutCancel(mctx), time.Duration(c.TimeoutMs)*time.Millisecond+60*time.Second)
				reply, err := p.Invoke(ictx, hostilePrefix+c.Name, params)
				icancel()
				status, text := hostile.StatusNoAnswer, ""
				if err != nil {
					text = err.Error()
				} else {
					status = whisk.StatusMessage(reply.Activation.Response.StatusCode)
					text = hostile.ResultText(reply.Activation.Response.Result)
				}
				m.record(c.Name, status, hostile.Normalize(text, nil))
				m.done.Add(1)
			}
		}()
	}
	return m
}

func (m *mix) record(name, status, text string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hc := m.byName[name]
	if hc == nil {
		hc = &result.HostileCase{Name: name, Statuses: map[string]int{}}
		m.byName[name] = hc
	}
	hc.Runs++
	hc.Statuses[status]++
	hc.Example = status + ": " + text
}

func (m *mix) passes() int { return int(m.done.Load()) / len(m.cases) }

// stop waits for the hostile activations in flight and returns what ran, in the mix's order.
func (m *mix) stop() ([]*result.HostileCase, int) {
	m.cancel()
	m.wg.Wait()
	var out []*result.HostileCase
	for _, c := range m.cases {
		if hc := m.byName[c.Name]; hc != nil {
			out = append(out, hc)
		}
	}
	return out, m.passes()
}

// HostileParams are the endpoints of this in-process platform that the hostile actions attack:
// its controller's API, its broker and its state directory.
func (d *Direct) HostileParams() hostile.Params {
	p := hostile.Params{DataDir: d.cfg.StateDir}
	if _, port, err := net.SplitHostPort(strings.TrimPrefix(d.ctl.APIHost(), "http://")); err == nil {
		p.APIPort, _ = strconv.Atoi(port) // a listener's port is always numeric
	}
	if addrs := d.emb.Addrs(); len(addrs) > 0 {
		if _, port, err := net.SplitHostPort(addrs[0]); err == nil {
			p.KafkaPort, _ = strconv.Atoi(port) // a listener's port is always numeric
		}
	}
	return p
}
