package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teemate/platform/bench/internal/result"
	"github.com/teemate/platform/internal/testtool"
)

// TestDrainScenario runs bin/bench --scenario drain for real but short: two fresh platforms
// (embedded broker, controller, two in-process invokers on the process sandbox, real Node owners),
// 10 requests/s for 2 s before and 4 s after the trigger (a request unanswered for 20 s fails: stop-and-copy strands what the disabled invoker took). Both phases are in the JSON with their
// figures and the goals; the drain fails nothing, and the state the destination holds came by a
// transfer whose peak is the sender's and the receiver's.
func TestDrainScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two platforms for about 40 s")
	}
	testtool.Require(t, "node")
	repo := testtool.Root(t)
	need := []string{"bin/teemate-shim", "bin/teemate-strawman"}
	if os.Geteuid() == 0 {
		// As root the owners run confined: the launcher and the lockdown addon.
		need = append(need, "bin/teemate-confine", "node-isolate-patch/build/teemate_lockdown.node")
	}
	for _, f := range need {
		if _, err := os.Stat(filepath.Join(repo, f)); err != nil {
			testtool.Missing(t, f+" is missing: run make build first")
		}
	}
	out := filepath.Join(t.TempDir(), "drain.json")
	var stdout, stderr bytes.Buffer
	code := Main([]string{"--scenario", "drain", "--sandbox", "process", "--rate", "10", "--before", "2s", "--after", "4s", "--request-timeout", "20s",
		"--idle-wait", "0s", "--repo", repo, "--out", out}, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	if code != 0 {
		t.Fatalf("bench --scenario drain exited %d", code)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	res, err := result.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if res.Config.Scenario != ScenarioDrain || res.Config.Drain == nil || len(res.Config.Drain.Actions) != 5 {
		t.Fatalf("config %+v", res.Config)
	}
	d, s, g := res.Drain, res.StopAndCopy, res.Goals
	if d == nil || s == nil || g == nil {
		t.Fatalf("drain %v, stop_and_copy %v, goals %v: want all three", d != nil, s != nil, g != nil)
	}
	for _, p := range []*result.DrainPhase{d, s} {
		// 6 s at 10/s: 60 requests, each answered or failed.
		if p.Submitted != 60 || len(p.Requests) != 60 {
			t.Errorf("%s: submitted %d (%d requests), want 60", p.Trigger, p.Submitted, len(p.Requests))
		}
		if p.TriggerMs < 1900 || p.SwitchMs < p.TriggerMs || p.DrainedMs <= 0 || p.EndMs != 6000 {
			t.Errorf("%s: trigger %v switch %v drained after %v end %v", p.Trigger, p.TriggerMs, p.SwitchMs, p.DrainedMs, p.EndMs)
		}
		if p.DowntimeMs <= 0 || p.DowntimePerImageMs["nodejs:20"] != p.DowntimeMs || len(p.DowntimePerActionMs) != 5 {
			t.Errorf("%s: downtime %v per image %v per action %v", p.Trigger, p.DowntimeMs, p.DowntimePerImageMs, p.DowntimePerActionMs)
		}
		if p.Switch.N == 0 || p.Switch.P99Ms < p.Switch.P50Ms || p.Before.N == 0 {
			t.Errorf("%s: switch window %+v, before %+v", p.Trigger, p.Switch, p.Before)
		}
		if len(p.DestinationOwnerStartsMs) == 0 {
			t.Errorf("%s: no owner start seen on the destination", p.Trigger)
		}
		// Every answered request says where its time went: the invoker's phases and the wait.
		for _, r := range p.Requests {
			if _, ran := r.Phases["run"]; r.OK && (!ran || r.Phases["wait"] < 0) {
				t.Errorf("%s: %s at %v ms answered without its phases: %v", p.Trigger, r.Action, r.StartMs, r.Phases)
				break
			}
		}
	}
	if d.Failed != 0 || !g.NoFailed.Met {
		t.Errorf("drain: %d failed %v", d.Failed, d.Errors)
	}
	if d.ColdStartsAfterSwitch != 0 || !g.NoColdStarts.Met {
		t.Errorf("drain: %d cold starts after the switch", d.ColdStartsAfterSwitch)
	}
	// The destination pings as soon as the image is prepared, so the switch follows its owner's
	// readiness without waiting for the next ping tick (1 s apart).
	if n := len(d.DestinationOwnerStartsMs); n > 0 && d.SwitchMs-d.DestinationOwnerStartsMs[n-1] > 500 {
		t.Errorf("drain: the switch came %.0f ms after the destination's owner was ready", d.SwitchMs-d.DestinationOwnerStartsMs[n-1])
	}
	// /disable stops the pings, not the feed: what the controller placed on invoker0 before it
	// learned is still answered (OpenWhisk's meaning), so stop-and-copy loses nothing either.
	if s.Failed != 0 {
		t.Errorf("stop-and-copy: %d failed %v", s.Failed, s.Errors)
	}
	tr := d.Transfer
	if tr == nil || tr.Bytes <= 0 || tr.Chunks < 1 || tr.SenderRSSBytes <= 0 || tr.PeakExtraBytes != max(tr.SenderPeakBytes, tr.ReceiverPeakBytes) {
		t.Fatalf("drain transfer %+v", tr)
	}
	if s.Transfer != nil {
		t.Errorf("stop-and-copy moved state: %+v", s.Transfer)
	}
	if g.DowntimeRatio.Target == "" || g.PeakMemory.Value != tr.PeakExtraFraction {
		t.Errorf("goals %+v", g)
	}
	md, err := os.ReadFile(strings.TrimSuffix(out, ".json") + ".md")
	if err != nil || !bytes.Contains(md, []byte("## Drain: pre-copy vs stop-and-copy")) {
		t.Errorf("report: %v\n%s", err, md)
	}
	if !strings.Contains(stdout.String(), "stop-and-copy") || !strings.Contains(stdout.String(), "goal: ") {
		t.Errorf("printed table missing")
	}
}

func TestScenarioFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		bad  string // a part of the error, "" when the flags are good
	}{
		{[]string{"--scenario", "drain"}, ""},
		{[]string{"--scenario", "drain", "--sandbox", "process", "--rate", "5", "--before", "1s", "--after", "2s"}, ""},
		{[]string{"--rate", "5"}, "--rate belongs to --scenario drain"},
		{[]string{"--scenario", "migrate"}, `unknown --scenario "migrate"`},
		{[]string{"--scenario", "drain", "--hostile"}, "not with --hostile"},
		{[]string{"--scenario", "drain", "--api-host", "http://x", "--auth", "a:b"}, "not with --hostile, --sealed or --api-host"},
		{[]string{"--scenario", "drain", "--sandbox", "docker"}, "oci or process"},
		{[]string{"--scenario", "drain", "--rate", "0"}, "--rate must be"},
		{[]string{"--scenario", "drain", "--before", "500ms"}, "at least 1s"},
		{[]string{"--scenario", "drain", "--request-timeout", "0s"}, "at least 1s"},
	} {
		f, err := parse(c.args, &bytes.Buffer{})
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.bad == "" && (f.scenario != ScenarioDrain || f.rate <= 0):
			t.Errorf("%v: parsed %+v", c.args, f)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("%v: error %v, want one saying %q", c.args, err, c.bad)
		}
	}
}
