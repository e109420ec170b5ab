package pool

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestPickOwner(t *testing.T) {
	tests := []struct {
		name      string
		owners    []ownerView
		starting  int
		maxOwners int
		want      pick
	}{
		{"cold image starts", nil, 0, 1, pick{Kind: pickStart}},
		{"cold image already starting waits", nil, 1, 1, pick{Kind: pickWait}},
		{"cold image starting, more allowed, still waits", nil, 1, 4, pick{Kind: pickWait}},
		{"one owner with room", []ownerView{{Free: 3}}, 0, 1, pick{Kind: pickUse, Index: 0}},
		{"most free wins", []ownerView{{Free: 1}, {Free: 5}, {Free: 2}}, 0, 3, pick{Kind: pickUse, Index: 1}},
		{"tie goes to the first", []ownerView{{Free: 2}, {Free: 2}}, 0, 2, pick{Kind: pickUse, Index: 0}},
		{"suspect avoided", []ownerView{{Free: 8, Suspect: true}, {Free: 1}}, 0, 2, pick{Kind: pickUse, Index: 1}},
		{"suspect used when it is all there is", []ownerView{{Free: 0}, {Free: 2, Suspect: true}}, 0, 2, pick{Kind: pickUse, Index: 1}},
		{"full, another allowed", []ownerView{{Free: 0}}, 0, 2, pick{Kind: pickStart}},
		{"full, none allowed", []ownerView{{Free: 0}}, 0, 1, pick{Kind: pickWait}},
		{"full, another starting", []ownerView{{Free: 0}}, 1, 3, pick{Kind: pickWait}},
		{"all full at the max", []ownerView{{Free: 0}, {Free: 0}}, 0, 2, pick{Kind: pickWait}},
		{"room even while starting", []ownerView{{Free: 1}}, 1, 2, pick{Kind: pickUse, Index: 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pickOwner(tc.owners, tc.starting, tc.maxOwners); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOwnerID(t *testing.T) {
	for image, want := range map[string]string{"nodejs:20": "nodejs-20-3", "a/b c": "a-b-c-3"} {
		if got := ownerID(image, 3); got != want {
			t.Errorf("ownerID(%q) = %q, want %q", image, got, want)
		}
	}
}

// One owner of two slots, one lease on it: how each report changes the pool.
func TestPool_Reports(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name   string
		report func(p *Pool) []Action
		want   string // the actions
		state  string // the pool afterwards
	}{
		{"release frees the slot", func(p *Pool) []Action { return p.Release(1) }, "[]", "a: a-1 0/2;"},
		{"release of an unknown ticket", func(p *Pool) []Action { return p.Release(9) }, "[]", "a: a-1 1/2;"},
		{"exit drops the owner", func(p *Pool) []Action { return p.OwnerExited("a-1", boom) },
			"[stop-owner a-1 leases=1 (exited: boom)]", "a:"},
		{"exit of an unknown owner", func(p *Pool) []Action { return p.OwnerExited("a-7", boom) }, "[]", "a: a-1 1/2;"},
		{"one failed ping makes a suspect", func(p *Pool) []Action { return p.PingResult("a-1", boom) }, "[]", "a: a-1 1/2 suspect(1);"},
		{"a good ping clears it", func(p *Pool) []Action { p.PingResult("a-1", boom); return p.PingResult("a-1", nil) }, "[]", "a: a-1 1/2;"},
		{"start reports for unknown owners", func(p *Pool) []Action {
			return append(p.OwnerStarted("a-7"), p.StartFailed("a-8", boom)...)
		}, "[]", "a: a-1 1/2;"},
		{"no pings configured", func(p *Pool) []Action { return p.Tick(time.Unix(1e9, 0)) }, "[]", "a: a-1 1/2;"},
		{"close", func(p *Pool) []Action { return p.Close() }, "[stop-owner a-1 leases=1 (closed)]", "closed\na:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := New(Config{SlotsPerOwner: 2}, time.Unix(0, 0))
			p.Reserve("a")
			p.OwnerStarted("a-1")
			if got := fmt.Sprint(tc.report(p)); got != tc.want {
				t.Errorf("actions %s, want %s", got, tc.want)
			}
			if got := p.String(); got != tc.state {
				t.Errorf("pool %q, want %q", got, tc.state)
			}
		})
	}
}

func TestIdleOut(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		timeout    time.Duration
		prestarted bool
		waiting    int
		idle       time.Duration // now - usedAt
		want       bool
	}{
		{"idle past the timeout retires", 10 * time.Minute, false, 0, 11 * time.Minute, true},
		{"idle exactly the timeout retires", 2 * time.Second, false, 0, 2 * time.Second, true},
		{"idle less than the timeout stays", 2 * time.Second, false, 0, 1999 * time.Millisecond, false},
		{"zero timeout never retires", 0, false, 0, time.Hour, false},
		{"negative timeout never retires", -time.Second, false, 0, time.Hour, false},
		{"prestarted image never retires", time.Second, true, 0, time.Hour, false},
		{"reservations waiting keep it", time.Second, false, 1, time.Hour, false},
		{"used after the tick (clock went back) stays", time.Second, false, 0, -time.Second, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := idleOut(tc.timeout, tc.prestarted, tc.waiting, t0, t0.Add(tc.idle)); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
