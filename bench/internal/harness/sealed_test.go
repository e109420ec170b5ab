package harness

import (
	"context"
	"testing"
	"time"

	"github.com/teemate/platform/bench/internal/result"
)

// TestRunSealed runs the sealed comparison on the in-process platform (real broker, controller,
// invoker, Node owner with its image key and evidence): every sample valid, both p50s measured,
// and the invoker's phases recorded for both.
func TestRunSealed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the in-process platform")
	}
	d := startTestDirect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res := &result.Result{}
	if err := RunSealed(ctx, d, SealedOptions{Warmup: 1, Samples: 4, ActionMemoryMB: 256, TimeoutMs: 10000}, res); err != nil {
		t.Fatal(err)
	}
	res.Finish()
	s := res.Sealed
	if s == nil || len(s.UnsealedMs) != 4 || len(s.SealedMs) != 4 || s.UnsealedInvalid+s.SealedInvalid != 0 {
		t.Fatalf("sealed result %+v", s)
	}
	if s.UnsealedP50Ms <= 0 || s.SealedP50Ms <= 0 || s.PhasesP50["run"][0] <= 0 || s.PhasesP50["run"][1] <= 0 {
		t.Fatalf("figures: unsealed %v sealed %v phases %v", s.UnsealedP50Ms, s.SealedP50Ms, s.PhasesP50)
	}
	if len(s.Rounds) != 4 || s.Rounds[0].Sealed == nil || s.Rounds[0].Unsealed == nil || s.Rounds[1].SealedFirst != true ||
		s.Rounds[0].Sealed.Phases["run"] <= 0 {
		t.Fatalf("rounds %+v", s.Rounds)
	}
	if s.CPUMs["unsealed"]["bench"] <= 0 || s.CPUMs["sealed"]["bench"] <= 0 || s.ClientCryptoMs <= 0 {
		t.Fatalf("CPU per invocation %v, client crypto %v", s.CPUMs, s.ClientCryptoMs)
	}
	t.Logf("\n%s", s.Table())
}
