package harness

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/teemate/platform/bench/internal/result"
	"github.com/teemate/platform/functions/hostile"
	"github.com/teemate/platform/invoker/whisk"
)

// fakePlatform answers noop correctly and the hostile actions after a delay, one with a success
// and one with an application error; it counts the hostile activations in flight.
type fakePlatform struct {
	mu       sync.Mutex
	deployed []string
	inFlight atomic.Int32
	maxIn    atomic.Int32
	hostile  atomic.Int32
}

func (f *fakePlatform) Deploy(_ context.Context, as []ActionSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range as {
		f.deployed = append(f.deployed, a.Name)
	}
	return nil
}

func (f *fakePlatform) UseModel(context.Context, string) (func(), error) { return func() {}, nil }
func (f *fakePlatform) MemoryRoot() int                                  { return 0 }
func (f *fakePlatform) Close()                                           {}

func (f *fakePlatform) Invoke(_ context.Context, action string, _ json.RawMessage) (Reply, error) {
	a := &whisk.WhiskActivation{ActivationID: "x"}
	switch {
	case action == result.NoopFunction:
		time.Sleep(time.Millisecond)
		a.Response = whisk.Success(json.RawMessage(`{"noop":true,"n":42}`))
	case strings.HasPrefix(action, hostilePrefix):
		f.hostile.Add(1)
		n := f.inFlight.Add(1)
		if n > f.maxIn.Load() {
			f.maxIn.Store(n)
		}
		time.Sleep(20 * time.Millisecond)
		f.inFlight.Add(-1)
		a.Response = whisk.Success(json.RawMessage(`{"spawned":36}`))
		if action == hostilePrefix+"b" {
			a.Response = whisk.ActivationResponse{StatusCode: whisk.StatusApplicationError, Result: json.RawMessage(`{"error":"TeeMate: refused"}`)}
		}
	}
	return Reply{ClientMs: 1, Activation: a}, nil
}

func TestRunHostile(t *testing.T) {
	f := &fakePlatform{}
	mix := []hostile.Case{{Name: "a", Code: "x", MemoryMB: 256, TimeoutMs: 1000}, {Name: "b", Code: "y", MemoryMB: 128, TimeoutMs: 1000}}
	res := &result.Result{}
	err := RunHostile(context.Background(), f, HostileOptions{Noop: true, Warmup: 1, Samples: 3, Streams: 2, Hostile: mix,
		ActionMemoryMB: 256, TimeoutMs: 1000}, res)
	if err != nil {
		t.Fatal(err)
	}
	res.Finish()
	h := res.Hostile
	if h == nil || len(h.Rows) != 1 || h.Rows[0].BaselineN != 3 || h.Rows[0].UnderAttackN < 3 || h.BenignInvalid() != 0 {
		t.Fatalf("hostile result %+v", h)
	}
	if h.Passes < 1 || f.inFlight.Load() != 0 || f.maxIn.Load() > 2 {
		t.Fatalf("passes %d, in flight after the run %d, most at once %d", h.Passes, f.inFlight.Load(), f.maxIn.Load())
	}
	if len(h.Cases) != 2 || h.Cases[0].Statuses["success"] < 1 || h.Cases[1].Statuses["application error"] < 1 ||
		h.Cases[1].Example != "application error: TeeMate: refused" || int(f.hostile.Load()) != h.Cases[0].Runs+h.Cases[1].Runs {
		t.Fatalf("hostile cases %+v %+v (invoked %d)", h.Cases[0], h.Cases[1], f.hostile.Load())
	}
	if strings.Join(f.deployed, ",") != "noop,hostile-a,hostile-b" {
		t.Fatalf("deployed %v", f.deployed)
	}
}

func TestHostileMixLeavesOutLethal(t *testing.T) {
	for _, c := range HostileMix() {
		if c.Lethal {
			t.Fatalf("%s is lethal", c.Name)
		}
	}
	if len(HostileMix()) == 0 || len(HostileMix()) == len(hostile.Cases()) {
		t.Fatalf("mix of %d out of %d", len(HostileMix()), len(hostile.Cases()))
	}
}
