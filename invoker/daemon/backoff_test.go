package daemon

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestPollBackoff: a run of failures is logged once, its pauses double from a second up to half a
// minute, a success ends the run, and a loop that is ending neither logs nor pauses.
func TestPollBackoff(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	log := zap.New(core)
	var b pollBackoff
	fail := func() {
		// The pause is cut short by ctx: only the bookkeeping is under test, not the clock.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		defer cancel()
		b.failed(ctx, log, "poll failed", errors.New("refused"))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		fail()
		if b.pause != w {
			t.Fatalf("failure %d: pause %v, want %v", i+1, b.pause, w)
		}
	}
	if n := logs.Len(); n != 1 {
		t.Fatalf("%d warnings for one run of failures, want 1", n)
	}
	b.reset()
	fail()
	if n := logs.Len(); n != 2 || b.pause != time.Second {
		t.Fatalf("after a success: %d warnings, pause %v; want a new run logged and a 1 s pause", n, b.pause)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	b.reset()
	b.failed(ended, log, "poll failed", errors.New("refused"))
	if n := logs.Len(); n != 2 || b.pause != 0 {
		t.Fatalf("an ending loop: %d warnings, pause %v; want neither", n, b.pause)
	}
}
