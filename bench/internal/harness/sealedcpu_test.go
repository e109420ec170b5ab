package harness

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 150 and stime 25 ticks.
	stat := []byte("4242 (node (owner) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 150 25 0 0 20 0 11 0 500 1000 200")
	name, cpu, ok := parseStatCPU(stat)
	if !ok || name != "node (owner) x" || cpu != 1750*time.Millisecond {
		t.Fatalf("got %q %v %v", name, cpu, ok)
	}
	if _, _, ok := parseStatCPU([]byte("4242 (short) S 1 2")); ok {
		t.Fatal("a truncated stat line parsed")
	}
}

func TestCPUSince(t *testing.T) {
	before := cpuSnapshot{self: 100 * time.Millisecond, reaped: 10 * time.Millisecond, live: map[int]liveCPU{
		1: {"node", 50 * time.Millisecond}, 2: {"shim", 3 * time.Millisecond}, 3: {"old", time.Second}}}
	after := cpuSnapshot{self: 130 * time.Millisecond, reaped: 20 * time.Millisecond, live: map[int]liveCPU{
		1: {"node", 80 * time.Millisecond}, 3: {"new", 4 * time.Millisecond}, 4: {"node", 5 * time.Millisecond}}}
	got := cpuSince(before, after)
	// pid 2 exited (its 3 ms before are in reaped now), pid 3 is another process under a reused pid.
	want := map[string]float64{"bench": 30, "exited children": 7, "node": 35, "new": 4}
	for k, v := range want {
		if d := got[k] - v; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// TestTakeCPU reads this process's own figures: they only grow.
func TestTakeCPU(t *testing.T) {
	a, err := takeCPU()
	if err != nil {
		t.Fatal(err)
	}
	for x, end := 0, time.Now().Add(20*time.Millisecond); time.Now().Before(end); x++ {
		_ = os.Getpid() + x // spin: spend some CPU
	}
	b, err := takeCPU()
	if err != nil {
		t.Fatal(err)
	}
	if b.self <= a.self {
		t.Fatalf("self CPU %v then %v", a.self, b.self)
	}
}
