package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	Progress                  func(string)
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
	phases := func(into map[string][]float64, r Reply) {
		for ph, ms := range Timings(r.Activation) {
			into[ph] = append(into[ph], ms)
		}
	}
	unsealed := func() (float64, error) {
		r, err := p.Invoke(ctx, result.NoopFunction, params)
		if err != nil {
			return 0, err
		}
		if err := checkNoop(r.Activation.Response.Result); err != nil {
			return 0, err
		}
		phases(s.UnsealedPhases, r)
		return r.ClientMs, nil
	}
	sealedOne := func() (total, platform float64, err error) {
		start := time.Now()
		env, reply, err := sealed.SealParams(ev, ns, q, params)
		if err != nil {
			return 0, 0, err
		}
		r, err := p.Invoke(ctx, SealedNoop, env)
		if err != nil {
			return 0, 0, err
		}
		o, err := sealed.OpenResult(reply, r.Activation.ActivationID, r.Activation.Response.Result)
		total = float64(time.Since(start).Microseconds()) / 1000
		if err != nil {
			return 0, 0, err
		}
		if err := checkNoop(o.Result); err != nil {
			return 0, 0, err
		}
		phases(s.SealedPhases, r)
		return total, r.ClientMs, nil
	}
	for i := 0; i < opts.Warmup; i++ {
		if _, err := unsealed(); err != nil {
			return fmt.Errorf("warm-up, unsealed: %w", err)
		}
		if _, _, err := sealedOne(); err != nil {
			return fmt.Errorf("warm-up, sealed: %w", err)
		}
	}
	// One of each per round; the order swaps every round, so that neither always runs second (the
	// second of a pair finds the sandbox pool and the machine as the first left them).
	runUnsealed := func(i int) {
		if ms, err := unsealed(); err != nil {
			s.UnsealedInvalid++
			say(opts.Progress, fmt.Sprintf("sealed run: unsealed sample %d: %v", i, err))
		} else {
			s.UnsealedMs = append(s.UnsealedMs, ms)
		}
	}
	runSealed := func(i int) {
		if total, platform, err := sealedOne(); err != nil {
			s.SealedInvalid++
			say(opts.Progress, fmt.Sprintf("sealed run: sealed sample %d: %v", i, err))
		} else {
			s.SealedMs = append(s.SealedMs, total)
			s.SealedPlatformMs = append(s.SealedPlatformMs, platform)
		}
	}
	next := time.Now()
	for i := 0; i < opts.Samples; i++ {
		order := []func(int){runUnsealed, runSealed}
		if i%2 == 1 {
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
	}
	s.Summarize()
	say(opts.Progress, fmt.Sprintf("sealed run: noop p50 unsealed %.2f ms, sealed %.2f ms (difference %.2f ms)", s.UnsealedP50Ms, s.SealedP50Ms, s.P50DiffMs))
	return nil
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
