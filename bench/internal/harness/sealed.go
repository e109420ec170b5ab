package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/teemate/platform/bench/internal/result"
	"github.com/teemate/platform/controller-adapter/client"
	"github.com/teemate/platform/invoker/attest"
	"github.com/teemate/platform/invoker/sealed"
)

// SealedOptions of RunSealed.
type SealedOptions struct {
	// Warmup invocations of each action, then Samples of each, alternating unsealed and sealed.
	Warmup, Samples           int
	Interval                  time.Duration
	ActionMemoryMB, TimeoutMs int
	// CPUProfile, when set, is where the CPU blocks' Go profiles go: CPUProfile-unsealed.pprof and
	// CPUProfile-sealed.pprof.
	CPUProfile string
	Progress   func(string)
}

// SealedNoop is the sealed twin of the noop action (same code, sealed to the image key).
const SealedNoop = result.NoopFunction + "-sealed"

// REST is a platform reachable through the OpenWhisk REST API, which the sealed run needs for
// the evidence of the image.
type REST interface {
	REST() (apiHost, auth string)
}

// RunSealed measures the noop action on the teemate model unsealed and sealed (sealed code,
// sealed parameters, the result, logs and receipt sealed back), alternately so that both see the
// same conditions, and fills res.Sealed (the caller calls res.Finish). Simulated evidence is
// accepted: the bench measures the mechanism, which is the same in direct and sgx mode.
func RunSealed(ctx context.Context, p Platform, opts SealedOptions, res *result.Result) error {
	if opts.Samples < 1 {
		return errors.New("harness: sealed run needs samples >= 1")
	}
	rp, ok := p.(REST)
	if !ok {
		return errors.New("harness: the sealed run needs the platform's REST API")
	}
	host, auth := rp.REST()
	c, err := client.New(client.Config{APIHost: host, Auth: auth, Policy: attest.Policy{AllowSimulated: true}})
	if err != nil {
		return err
	}
	stop, err := p.UseModel(ctx, "teemate")
	if err != nil {
		return fmt.Errorf("teemate model: %w", err)
	}
	defer stop()
	res.Models = []result.ModelInfo{{Name: "teemate", Available: true, Start: ModelStart["teemate"], Description: ModelStart["teemate"]}}
	// The invoker's health test action has started the image's enclave: its evidence is there.
	ev, _, err := c.AttestKind(ctx, "nodejs:20")
	if err != nil {
		return err
	}
	ns, q, err := c.QualifiedName(ctx, SealedNoop)
	if err != nil {
		return err
	}
	code, err := sealed.SealCode(ev, ns, q, []byte(NoopCode))
	if err != nil {
		return err
	}
	if err := p.Deploy(ctx, []ActionSpec{
		{Name: result.NoopFunction, Code: NoopCode, MemoryMB: opts.ActionMemoryMB, TimeoutMs: opts.TimeoutMs},
		{Name: SealedNoop, Code: code, Sealed: true, MemoryMB: opts.ActionMemoryMB, TimeoutMs: opts.TimeoutMs},
	}); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	s := &result.Sealed{Description: fmt.Sprintf("teemate model, noop action (returns its parameter n); %d warm-up invocations each, "+
		"then %d of each, one of each per round, the order swapped every round. Unsealed: the invoke as the client sees it. Sealed: code sealed to the image key, "+
		"parameters sealed per invocation (HPKE), the result and logs sealed back with a signed receipt; measured from before sealing the "+
		"parameters to after opening the result and verifying the receipt (the client's crypto included; \"invoke only\" leaves it out).",
		opts.Warmup, opts.Samples)}
	res.Sealed = s
	params := json.RawMessage(`{"n":42}`)
	s.UnsealedPhases, s.SealedPhases = map[string][]float64{}, map[string][]float64{}
	phases := func(into map[string][]float64, t map[string]float64) {
		for ph, ms := range t {
			into[ph] = append(into[ph], ms)
		}
	}
	unsealed := func() (*result.SealedSample, error) {
		r, err := p.Invoke(ctx, result.NoopFunction, params)
		if err != nil {
			return nil, err
		}
		if err := checkNoop(r.Activation.Response.Result); err != nil {
			return nil, err
		}
		return &result.SealedSample{Ms: r.ClientMs, PlatformMs: r.ClientMs, ActivationID: r.Activation.ActivationID,
			Phases: Timings(r.Activation)}, nil
	}
	var clientCrypto time.Duration
	var clientCryptoN int
	sealedOne := func() (*result.SealedSample, error) {
		start := time.Now()
		env, reply, err := sealed.SealParams(ev, ns, q, params)
		if err != nil {
			return nil, err
		}
		sent := time.Now()
		r, err := p.Invoke(ctx, SealedNoop, env)
		if err != nil {
			return nil, err
		}
		got := time.Now()
		o, err := sealed.OpenResult(reply, r.Activation.ActivationID, r.Activation.Response.Result)
		end := time.Now()
		total := float64(end.Sub(start).Microseconds()) / 1000
		clientCrypto += sent.Sub(start) + end.Sub(got)
		clientCryptoN++
		if err != nil {
			return nil, err
		}
		if err := checkNoop(o.Result); err != nil {
			return nil, err
		}
		return &result.SealedSample{Ms: total, PlatformMs: r.ClientMs, ActivationID: r.Activation.ActivationID,
			Phases: Timings(r.Activation)}, nil
	}
	for i := 0; i < opts.Warmup; i++ {
		if _, err := unsealed(); err != nil {
			return fmt.Errorf("warm-up, unsealed: %w", err)
		}
		if _, err := sealedOne(); err != nil {
			return fmt.Errorf("warm-up, sealed: %w", err)
		}
	}
	// One of each per round; the order swaps every round, so that neither always runs second (the
	// second of a pair finds the sandbox pool and the machine as the first left them).
	var round *result.SealedRound
	runUnsealed := func(i int) {
		if x, err := unsealed(); err != nil {
			s.UnsealedInvalid++
			say(opts.Progress, fmt.Sprintf("sealed run: unsealed sample %d: %v", i, err))
		} else {
			s.UnsealedMs = append(s.UnsealedMs, x.Ms)
			phases(s.UnsealedPhases, x.Phases)
			round.Unsealed = x
		}
	}
	runSealed := func(i int) {
		if x, err := sealedOne(); err != nil {
			s.SealedInvalid++
			say(opts.Progress, fmt.Sprintf("sealed run: sealed sample %d: %v", i, err))
		} else {
			s.SealedMs = append(s.SealedMs, x.Ms)
			s.SealedPlatformMs = append(s.SealedPlatformMs, x.PlatformMs)
			phases(s.SealedPhases, x.Phases)
			round.Sealed = x
		}
	}
	next := time.Now()
	for i := 0; i < opts.Samples; i++ {
		order := []func(int){runUnsealed, runSealed}
		round = &result.SealedRound{SealedFirst: i%2 == 1}
		if round.SealedFirst {
			order[0], order[1] = order[1], order[0]
		}
		for _, run := range order {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(time.Until(next))
			next = time.Now().Add(opts.Interval)
			run(i)
		}
		s.Rounds = append(s.Rounds, *round)
	}
	// CPU per activation, one kind at a time (the CPU a process spends cannot be split between two
	// interleaved kinds): a figure the machine's load barely moves, unlike the latencies.
	if n := min(opts.Samples, sealedCPUSamples); n > 0 {
		for _, k := range []struct {
			name string
			run  func() (*result.SealedSample, error)
		}{{"unsealed", unsealed}, {"sealed", sealedOne}} {
			profile := ""
			if opts.CPUProfile != "" {
				profile = opts.CPUProfile + "-" + k.name + ".pprof"
			}
			cpu, err := cpuPerActivation(ctx, n, opts.Interval, profile, k.run)
			if err != nil {
				return fmt.Errorf("CPU per activation, %s: %w", k.name, err)
			}
			if s.CPUMs == nil {
				s.CPUMs = map[string]map[string]float64{}
			}
			s.CPUMs[k.name] = cpu
		}
		s.ClientCryptoMs = clientCrypto.Seconds() * 1000 / float64(clientCryptoN)
	}
	s.Summarize()
	say(opts.Progress, fmt.Sprintf("sealed run: noop p50 unsealed %.2f ms, sealed %.2f ms (difference %.2f ms)", s.UnsealedP50Ms, s.SealedP50Ms, s.P50DiffMs))
	return nil
}

// sealedCPUSamples bounds the invocations of each kind whose CPU time is measured.
const sealedCPUSamples = 200

// cpuPerActivation runs n invocations back to back (interval apart) and returns the CPU time they
// cost per invocation, in ms, by process group (cpuSince).
// With profile set, the block's Go CPU profile is written there.
func cpuPerActivation(ctx context.Context, n int, interval time.Duration, profile string, run func() (*result.SealedSample, error)) (_ map[string]float64, err error) {
	// Let the previous invocations' after-work (the owner preparing fresh environments) end first.
	time.Sleep(200 * time.Millisecond)
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return nil, fmt.Errorf("CPU profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close() //nolint:errcheck // the profile could not start; that error is the one to report
			return nil, fmt.Errorf("CPU profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("CPU profile: %w", cerr)
			}
		}()
	}
	before, err := takeCPU()
	if err != nil {
		return nil, err
	}
	next := time.Now()
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		time.Sleep(time.Until(next))
		next = time.Now().Add(interval)
		if _, err := run(); err != nil {
			return nil, err
		}
	}
	time.Sleep(200 * time.Millisecond)
	after, err := takeCPU()
	if err != nil {
		return nil, err
	}
	out := cpuSince(before, after)
	for k, v := range out {
		out[k] = v / float64(n)
	}
	return out, nil
}

func checkNoop(res json.RawMessage) error {
	var out struct {
		Noop bool `json:"noop"`
		N    int  `json:"n"`
	}
	if err := json.Unmarshal(res, &out); err != nil || !out.Noop || out.N != 42 {
		return fmt.Errorf("noop: unexpected result %s", truncate(res, 200))
	}
	return nil
}

func say(f func(string), s string) {
	if f != nil {
		f(s)
	}
}
