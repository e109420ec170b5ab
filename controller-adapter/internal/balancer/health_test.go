package balancer

import (
	"reflect"
	"testing"
	"time"
)

// step is one event fed to a Health and what must come out.
type step struct {
	at       time.Duration // since the scenario's start
	event    string        // "ping", "disabled", "tick", or a Result: "ok", "syserr", "timeout"
	state    State
	sendTest bool
}

func repeat(n int, s step) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func steps(parts ...any) []step {
	var out []step
	for _, p := range parts {
		switch v := p.(type) {
		case step:
			out = append(out, v)
		case []step:
			out = append(out, v...)
		default:
			panic("steps: bad part")
		}
	}
	return out
}

func TestHealthScenarios(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name        string
		disabled    bool // the registering ping says isEnabled:false
		wantInitial State
		wantTest    bool
		steps       []step
	}{
		{
			name: "new invoker starts unhealthy and is tested at once", wantInitial: Unhealthy, wantTest: true,
		},
		{
			name: "new invoker whose first ping is disabled is offline, untested", disabled: true, wantInitial: Offline,
			steps: []step{{at: time.Second, event: "ping", state: Unhealthy, sendTest: true}},
		},
		{
			name: "test success while unhealthy: healthy, and another test at once", wantInitial: Unhealthy, wantTest: true,
			steps: []step{{at: 100 * time.Millisecond, event: "ok", state: Healthy, sendTest: true}},
		},
		{
			name: "system errors while the buffer is priming keep a new invoker unhealthy", wantInitial: Unhealthy, wantTest: true,
			steps: []step{
				{event: "syserr", state: Unhealthy},
				{event: "syserr", state: Unhealthy},
				{event: "ok", state: Healthy, sendTest: true},
				// [E E ok E]: primed, 3 errors are tolerated.
				{event: "syserr", state: Healthy},
			},
		},
		{
			name: "a failed test while priming reverts to unhealthy", wantInitial: Unhealthy, wantTest: true,
			steps: []step{
				{event: "syserr", state: Unhealthy},
				{event: "ok", state: Healthy, sendTest: true},
				{event: "syserr", state: Unhealthy, sendTest: true},
				{event: "ok", state: Healthy, sendTest: true},
				{event: "syserr", state: Healthy},
			},
		},
		{
			name: "a timeout while priming means unresponsive", wantInitial: Unhealthy, wantTest: true,
			steps: []step{
				{event: "ok", state: Healthy, sendTest: true},
				{event: "timeout", state: Unresponsive, sendTest: true},
				{event: "syserr", state: Unhealthy, sendTest: true},
				// Primed now ([ok T E ok]): errors within tolerance leave the state alone.
				{event: "ok", state: Healthy, sendTest: true},
				{event: "timeout", state: Healthy},
			},
		},
		{
			name: "healthy: more than 3 system errors in the buffer means unhealthy", wantInitial: Unhealthy, wantTest: true,
			steps: steps(
				step{event: "ok", state: Healthy, sendTest: true},
				repeat(3, step{event: "ok", state: Healthy}),
				repeat(3, step{event: "syserr", state: Healthy}),
				step{event: "syserr", state: Unhealthy, sendTest: true},
				// [ok*4 E*4] fills up with successes, then the oldest oks are evicted: still 4 errors.
				repeat(6, step{event: "ok", state: Unhealthy, sendTest: true}),
				// Now the oldest error goes: 3 left.
				step{event: "ok", state: Healthy, sendTest: true},
				step{event: "ok", state: Healthy},
			),
		},
		{
			name: "test successes push system errors out of the ring until healthy", wantInitial: Unhealthy, wantTest: true,
			steps: steps(
				repeat(4, step{event: "syserr", state: Unhealthy}),
				// [E E E E]; successes fill the ring to 10, then evict the oldest errors.
				repeat(6, step{event: "ok", state: Unhealthy, sendTest: true}),
				step{event: "ok", state: Healthy, sendTest: true},
				step{event: "ok", state: Healthy},
			),
		},
		{
			name: "more than 3 timeouts means unresponsive; successes there send no test", wantInitial: Unhealthy, wantTest: true,
			steps: steps(
				step{event: "ok", state: Healthy, sendTest: true},
				repeat(3, step{event: "ok", state: Healthy}),
				repeat(3, step{event: "timeout", state: Healthy}),
				step{event: "timeout", state: Unresponsive, sendTest: true},
				repeat(6, step{event: "ok", state: Unresponsive}),
				step{event: "ok", state: Healthy},
			),
		},
		{
			name: "system errors outrank timeouts", wantInitial: Unhealthy, wantTest: true,
			steps: steps(
				step{event: "ok", state: Healthy, sendTest: true},
				repeat(3, step{event: "ok", state: Healthy}),
				repeat(3, step{event: "timeout", state: Healthy}),
				step{event: "timeout", state: Unresponsive, sendTest: true},
				// [ok*4 T*4 E E], then errors evict oks: [ok*2 T*4 E*4].
				repeat(3, step{event: "syserr", state: Unresponsive}),
				step{event: "syserr", state: Unhealthy, sendTest: true},
			),
		},
		{
			name: "10 s without a ping: offline; a ping brings it back unhealthy", wantInitial: Unhealthy, wantTest: true,
			steps: []step{
				{at: 100 * time.Millisecond, event: "ok", state: Healthy, sendTest: true},
				{at: 9 * time.Second, event: "ping", state: Healthy},
				{at: 18 * time.Second, event: "tick", state: Healthy},
				{at: 18999 * time.Millisecond, event: "tick", state: Healthy},
				{at: 19 * time.Second, event: "tick", state: Offline},
				{at: 30 * time.Second, event: "tick", state: Offline},
				{at: 31 * time.Second, event: "ping", state: Unhealthy, sendTest: true},
			},
		},
		{
			name: "unhealthy and unresponsive invokers also go offline when silent", wantInitial: Unhealthy, wantTest: true,
			steps: steps(
				step{at: 10 * time.Second, event: "tick", state: Offline},
				step{at: 11 * time.Second, event: "ping", state: Unhealthy, sendTest: true},
				step{at: 11 * time.Second, event: "ok", state: Healthy, sendTest: true},
				step{at: 11 * time.Second, event: "timeout", state: Unresponsive, sendTest: true},
				step{at: 20 * time.Second, event: "tick", state: Unresponsive},
				step{at: 21 * time.Second, event: "tick", state: Offline},
			),
		},
		{
			name: "disabled ping: offline at once from any online state, and stays offline", wantInitial: Unhealthy, wantTest: true,
			steps: []step{
				{event: "ok", state: Healthy, sendTest: true},
				{at: time.Second, event: "disabled", state: Offline},
				{at: 2 * time.Second, event: "disabled", state: Offline},
				{at: 3 * time.Second, event: "ping", state: Unhealthy, sendTest: true},
				{at: 4 * time.Second, event: "disabled", state: Offline},
			},
		},
		{
			name: "results while offline are kept but change nothing", wantInitial: Unhealthy, wantTest: true,
			steps: steps(
				step{event: "disabled", state: Offline},
				repeat(5, step{event: "syserr", state: Offline}),
				step{event: "ok", state: Offline},
				// Back online: the errors are still in the buffer, so tests must flush them.
				step{at: time.Second, event: "ping", state: Unhealthy, sendTest: true},
				step{at: time.Second, event: "ok", state: Unhealthy, sendTest: true},
			),
		},
		{
			name: "test action every minute while unhealthy, none while healthy", wantInitial: Unhealthy, wantTest: true,
			steps: []step{
				{at: 5 * time.Second, event: "ping", state: Unhealthy},
				{at: 10 * time.Second, event: "ping", state: Unhealthy},
				{at: 15 * time.Second, event: "ping", state: Unhealthy},
				{at: 20 * time.Second, event: "ping", state: Unhealthy},
				{at: 25 * time.Second, event: "ping", state: Unhealthy},
				{at: 30 * time.Second, event: "ping", state: Unhealthy},
				{at: 35 * time.Second, event: "ping", state: Unhealthy},
				{at: 40 * time.Second, event: "ping", state: Unhealthy},
				{at: 45 * time.Second, event: "ping", state: Unhealthy},
				{at: 50 * time.Second, event: "ping", state: Unhealthy},
				{at: 55 * time.Second, event: "ping", state: Unhealthy},
				{at: 59 * time.Second, event: "tick", state: Unhealthy},
				{at: 60 * time.Second, event: "tick", state: Unhealthy, sendTest: true},
				{at: 61 * time.Second, event: "tick", state: Unhealthy},
				{at: 62 * time.Second, event: "ok", state: Healthy, sendTest: true},
				{at: 65 * time.Second, event: "ping", state: Healthy},
				{at: 70 * time.Second, event: "ping", state: Healthy},
				{at: 74 * time.Second, event: "ping", state: Healthy},
				{at: 122 * time.Second, event: "tick", state: Offline},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, a := NewHealth(HealthConfig{}, start, !tt.disabled)
			if a.To != tt.wantInitial || h.State() != tt.wantInitial || a.SendTest != tt.wantTest {
				t.Fatalf("NewHealth: state %v (actions %+v), want %v test=%v", h.State(), a, tt.wantInitial, tt.wantTest)
			}
			prev := h.State()
			for i, s := range tt.steps {
				now := start.Add(s.at)
				var a Actions
				switch s.event {
				case "ping":
					a = h.Ping(now, true)
				case "disabled":
					a = h.Ping(now, false)
				case "tick":
					a = h.Tick(now)
				case "ok":
					a = h.Finished(now, Success)
				case "syserr":
					a = h.Finished(now, SystemError)
				case "timeout":
					a = h.Finished(now, Timeout)
				default:
					t.Fatalf("bad event %q", s.event)
				}
				if a.From != prev || a.To != h.State() {
					t.Fatalf("step %d (%s): actions %+v do not match the transition %v -> %v", i, s.event, a, prev, h.State())
				}
				prev = h.State()
				if h.State() != s.state || a.SendTest != s.sendTest {
					t.Fatalf("step %d (%s at %v): state %v sendTest %v, want %v %v (buffer %v)",
						i, s.event, s.at, h.State(), a.SendTest, s.state, s.sendTest, h.Buffer())
				}
			}
		})
	}
}

func TestHealthBufferKeepsTheLastResults(t *testing.T) {
	h, _ := NewHealth(HealthConfig{BufferSize: 3}, time.Unix(0, 0), true)
	for _, r := range []Result{SystemError, Timeout, Success, Success, SystemError} {
		h.Finished(time.Unix(0, 0), r)
	}
	if got, want := h.Buffer(), []Result{Success, Success, SystemError}; !reflect.DeepEqual(got, want) {
		t.Fatalf("buffer %v, want %v", got, want)
	}
}

func TestStateStrings(t *testing.T) {
	for s, want := range map[State]string{Healthy: "up", Unhealthy: "unhealthy", Unresponsive: "unresponsive", Offline: "down"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(s), s.String(), want)
		}
	}
}
