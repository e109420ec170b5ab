package balancer

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestStepSizes(t *testing.T) {
	tests := []struct {
		n    int
		want []int
	}{
		{0, nil},
		{1, []int{1}},
		{2, []int{1}},
		{3, []int{1, 2}},
		{4, []int{1, 3}},
		{6, []int{1, 5}},
		{10, []int{1, 3, 7}},
		{12, []int{1, 5, 7, 11}},
	}
	for _, tt := range tests {
		if got := StepSizes(tt.n); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("StepSizes(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
	// Every step visits all invokers from any home.
	for n := 1; n <= 20; n++ {
		for _, s := range StepSizes(n) {
			seen := map[int]bool{}
			for i := 0; i < n; i++ {
				seen[(i*s)%n] = true
			}
			if len(seen) != n {
				t.Errorf("n=%d step %d visits %d invokers", n, s, len(seen))
			}
		}
	}
}

func healthy(free ...int) []Candidate {
	out := make([]Candidate, len(free))
	for i, f := range free {
		out[i] = Candidate{Healthy: true, FreeMB: f}
	}
	return out
}

func TestSchedule(t *testing.T) {
	down := Candidate{Healthy: false, FreeMB: 2048}
	tests := []struct {
		name     string
		invokers []Candidate
		hash     uint32
		memory   int
		random   int
		want     Placement
		wantErr  error
	}{
		{name: "no invokers", wantErr: ErrNoInvokers, memory: 256},
		{name: "none healthy", invokers: []Candidate{down, down}, memory: 256, wantErr: ErrNoInvokers},
		{name: "one invoker with room", invokers: healthy(2048), hash: 12345, memory: 256, want: Placement{Invoker: 0}},
		{name: "home invoker is hash mod n", invokers: healthy(2048, 2048, 2048, 2048), hash: 6, memory: 256,
			want: Placement{Invoker: 2}},
		// n=4: steps [1 3]; hash 6 → home 2, step index 6%2=0 → step 1: probe 2, 3, 0, 1.
		{name: "full home: next by the step", invokers: healthy(2048, 2048, 100, 2048), hash: 6, memory: 256,
			want: Placement{Invoker: 3}},
		// hash 7 → home 3, step index 1 → step 3: probe 3, 2, 1, 0.
		{name: "the coprime step decides the probe order", invokers: healthy(2048, 2048, 2048, 100), hash: 7, memory: 256,
			want: Placement{Invoker: 2}},
		{name: "unhealthy home is skipped", invokers: []Candidate{down, {Healthy: true, FreeMB: 256}}, hash: 0, memory: 256,
			want: Placement{Invoker: 1}},
		{name: "exactly enough memory fits", invokers: healthy(256), memory: 256, want: Placement{Invoker: 0}},
		{name: "no room anywhere: a random healthy invoker, forced", invokers: []Candidate{
			{Healthy: true, FreeMB: 0}, down, {Healthy: true, FreeMB: -128}}, hash: 0, memory: 256, random: 1,
			want: Placement{Invoker: 2, Forced: true}},
		{name: "forced pick wraps the random number", invokers: []Candidate{
			{Healthy: true, FreeMB: 0}, down, {Healthy: true, FreeMB: 0}}, hash: 0, memory: 256, random: 4,
			want: Placement{Invoker: 0, Forced: true}},
		{name: "action bigger than any invoker: forced", invokers: healthy(128), memory: 512, random: 7,
			want: Placement{Invoker: 0, Forced: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Schedule(tt.invokers, tt.hash, tt.memory, tt.random)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("placement %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestActionHashIsStableAndSeparatesFields(t *testing.T) {
	if ActionHash("guest", "guest/hello") != ActionHash("guest", "guest/hello") {
		t.Fatal("hash is not deterministic")
	}
	if ActionHash("ab", "c") == ActionHash("a", "bc") {
		t.Fatal("namespace and action are not separated in the hash")
	}
}

func TestAckTimeout(t *testing.T) {
	tests := []struct {
		action time.Duration
		want   time.Duration
	}{
		{action: 100 * time.Millisecond, want: 3 * time.Minute},
		{action: 60 * time.Second, want: 3 * time.Minute},
		{action: 5 * time.Minute, want: 11 * time.Minute},
	}
	for _, tt := range tests {
		if got := AckTimeout(tt.action, DefaultMinAckTimeout, DefaultAckTimeoutFactor, DefaultAckTimeoutAddon); got != tt.want {
			t.Errorf("AckTimeout(%v) = %v, want %v", tt.action, got, tt.want)
		}
	}
	if got := AckTimeout(100*time.Millisecond, time.Millisecond, 1, 300*time.Millisecond); got != 400*time.Millisecond {
		t.Errorf("short test timeout = %v, want 400ms", got)
	}
}
