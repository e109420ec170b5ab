package balancer

import (
	"errors"
	"testing"
)

func TestRoute(t *testing.T) {
	none := func(n int) []Drained {
		out := make([]Drained, n)
		for i := range out {
			out[i].To = -1
		}
		return out
	}
	avoid := func(n, i, to int) []Drained {
		out := none(n)
		out[i] = Drained{Avoid: true, To: to}
		return out
	}
	three := healthy(1024, 1024, 1024)
	// hash 0 has home invoker 0 with three invokers; its probe order is 0, then by its step.
	home, err := Schedule(three, 0, 256, 0)
	if err != nil || home.Invoker != 0 {
		t.Fatalf("home of hash 0: %+v %v", home, err)
	}
	full := healthy(1024, 1024, 0)
	tests := []struct {
		name     string
		invokers []Candidate
		drained  []Drained
		want     Placement
		wantErr  error
	}{
		{"no drain: Schedule's choice", three, nil, Placement{Invoker: 0}, nil},
		{"the source still serves the image", three, none(3), Placement{Invoker: 0}, nil},
		{"moved: to the prepared destination, not the next in the probe order", three, avoid(3, 0, 2), Placement{Invoker: 2}, nil},
		{"moved to a destination without free memory: overcommitted there, it is warm", full, avoid(3, 0, 2), Placement{Invoker: 2, Forced: true}, nil},
		{"moved nowhere (not warm on the source): Schedule among the others", three, avoid(3, 0, -1), Placement{Invoker: 1}, nil},
		{"moved to an invoker that went down: Schedule among the others", []Candidate{{Healthy: true, FreeMB: 1024}, {Healthy: true, FreeMB: 1024}, {FreeMB: 1024}},
			avoid(3, 0, 2), Placement{Invoker: 1}, nil},
		{"the last invoker drained: none", healthy(1024), avoid(1, 0, -1), Placement{}, ErrNoInvokers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Route(tt.invokers, tt.drained, 0, 256, 0)
			if !errors.Is(err, tt.wantErr) || err == nil && got != tt.want {
				t.Fatalf("Route = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestKeyedLike(t *testing.T) {
	src := map[string]string{"nodejs:20": "k1", "nodejs:18": ""}
	for _, tt := range []struct {
		dest  map[string]string
		image string
		want  bool
	}{
		{map[string]string{"nodejs:20": "k1"}, "nodejs:20", true},
		{map[string]string{"nodejs:20": "k2"}, "nodejs:20", false}, // another key: sealed envelopes would not open
		{map[string]string{"nodejs:20": ""}, "nodejs:20", false},   // warm, no key yet
		{map[string]string{}, "nodejs:20", false},
		{map[string]string{"nodejs:18": "k9"}, "nodejs:18", true}, // the source names no kid
	} {
		if got := keyedLike(tt.dest, src, tt.image); got != tt.want {
			t.Errorf("keyedLike(%v, %s) = %v, want %v", tt.dest, tt.image, got, tt.want)
		}
	}
}
