package api

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/whisk"
)

// ActiveActivationsFor counts the activations of ns that never complete (the slow actions): the
// fake's activations in flight.
func (f *fakeInvoker) ActiveActivationsFor(ns string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.msgs {
		if f.slow[m.Action.Name] && m.User.Namespace.Name == ns {
			n++
		}
	}
	return n
}

// avoidMinuteEdge waits for the next clock minute when the current one has less than need left:
// the rate windows are clock minutes, and a burst must fall in one.
func avoidMinuteEdge(t *testing.T, need time.Duration) {
	t.Helper()
	left := time.Minute - time.Duration(time.Now().UnixNano()%int64(time.Minute))
	if left < need {
		t.Logf("waiting %v for the next minute's rate window", left)
		time.Sleep(left + 50*time.Millisecond)
	}
}

func ident(ns, limits string) whisk.Identity {
	return whisk.Identity{Subject: ns, Namespace: whisk.Namespace{Name: ns, UUID: "u-" + ns}, Limits: json.RawMessage(limits)}
}

// The throttle's decisions with a clock and an in-flight count of the test's making.
func TestThrottleDecisions(t *testing.T) {
	now := time.Date(2024, 5, 1, 10, 0, 59, 0, time.UTC)
	active := map[string]int{}
	var refusals []string
	th := newThrottle(Throttles{InvocationsPerMinute: 3, ConcurrentInvocations: 2, FiresPerMinute: 1},
		func(ns string) int { return active[ns] }, func() time.Time { return now }, func(l string) { refusals = append(refusals, l) })
	want := func(err error, limit string, count, allowed int) {
		t.Helper()
		var te *ThrottleError
		switch {
		case limit == "" && err != nil:
			t.Fatalf("refused: %v", err)
		case limit == "":
		case !errors.As(err, &te) || te.Limit != limit || te.Count != count || te.Allowed != allowed:
			t.Fatalf("err = %#v, want %s %d/%d", err, limit, count, allowed)
		}
	}
	guest, other := ident("guest", ""), ident("other", "")
	for i := 0; i < 3; i++ {
		want(th.Invoke(guest), "", 0, 0)
	}
	// Refused ones are charged too, as OpenWhisk's RateInfo does: the count keeps rising.
	want(th.Invoke(guest), LimitInvocationsPerMinute, 4, 3)
	want(th.Invoke(guest), LimitInvocationsPerMinute, 5, 3)
	if err := th.Invoke(guest); err.Error() != "Too many requests in the last minute (count: 6, allowed: 3)." {
		t.Fatalf("text %q", err)
	}
	want(th.Invoke(other), "", 0, 0) // per namespace
	// A new clock minute starts a new window.
	now = now.Add(time.Second)
	want(th.Invoke(guest), "", 0, 0)
	// Concurrency: slack for the request being checked.
	active["guest"] = 1
	want(th.Invoke(guest), "", 0, 0)
	active["guest"] = 2
	want(th.Invoke(guest), LimitConcurrentInvocations, 2, 2)
	now = now.Add(time.Minute)
	if err := th.Invoke(guest); err.Error() != "Too many concurrent requests in flight (count: 2, allowed: 2)." {
		t.Fatalf("text %q", err)
	}
	// The namespace's own limits override the system's; 0 refuses everything.
	big := ident("guest", `{"invocationsPerMinute":100,"concurrentInvocations":5}`)
	want(th.Invoke(big), "", 0, 0)
	blocked := ident("other", `{"invocationsPerMinute":0}`)
	want(th.Invoke(blocked), LimitInvocationsPerMinute, 1, 0)
	// Fires have their own rate and no concurrency.
	want(th.Fire(guest), "", 0, 0)
	want(th.Fire(guest), LimitFiresPerMinute, 2, 1)
	want(th.Fire(ident("guest", `{"firesPerMinute":10}`)), "", 0, 0)
	if _, err := th.limits(ident("x", `{"concurrentInvocations":-1}`)); err == nil {
		t.Fatal("negative limit accepted")
	}
	if err := th.Invoke(ident("x", `{"invocationsPerMinute":"many"}`)); err == nil || errors.As(err, new(*ThrottleError)) {
		t.Fatalf("unreadable limits: %v, want a non-throttle error", err)
	}
	if len(refusals) != 7 || refusals[0] != LimitInvocationsPerMinute || refusals[len(refusals)-1] != LimitFiresPerMinute {
		t.Fatalf("refusals %v", refusals)
	}
	// Zero system limits take OpenWhisk's.
	if d := (Throttles{}).withDefaults(); d != (Throttles{60, 30, 60}) {
		t.Fatalf("defaults %+v", d)
	}
}
