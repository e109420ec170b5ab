package result

import (
	"math"
	"strings"
	"testing"
)

func TestLongestGap(t *testing.T) {
	for _, c := range []struct {
		name     string
		answers  []float64
		from, to float64
		want     float64
	}{
		{"steady", []float64{0, 50, 100, 150, 200}, 100, 200, 50},
		{"the gap across the trigger counts", []float64{0, 90, 400, 450}, 100, 450, 310},
		{"unsorted", []float64{450, 90, 400, 0}, 100, 450, 310},
		{"nothing before the trigger: from opens the first gap", []float64{300, 350}, 100, 350, 200},
		{"an outage to the end counts whole", []float64{0, 90}, 100, 1000, 910},
		{"no answers at all", nil, 100, 1000, 900},
		{"answers after to are ignored", []float64{90, 150, 2000}, 100, 200, 60},
		{"empty interval", []float64{1, 2}, 5, 4, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := LongestGap(c.answers, c.from, c.to); math.Abs(got-c.want) > 1e-9 {
				t.Errorf("LongestGap(%v, %v, %v) = %v, want %v", c.answers, c.from, c.to, got, c.want)
			}
		})
	}
}

func TestWindow(t *testing.T) {
	reqs := []DrainRequest{
		{StartMs: 10, EndMs: 20, OK: true},   // before the window
		{StartMs: 100, EndMs: 110, OK: true}, // first in
		{StartMs: 150, EndMs: 450, OK: true},
		{StartMs: 160, EndMs: 170, OK: false, Error: "x"},
		{StartMs: 200, EndMs: 205, OK: true}, // at to: out
	}
	w := Window(reqs, 100, 200)
	if w.N != 2 || w.Failed != 1 || w.MaxMs != 300 || w.P50Ms != 155 {
		t.Errorf("Window = %+v, want n 2, failed 1, max 300, p50 155", w)
	}
	if e := Window(reqs, 1000, 2000); e.N != 0 || e.P99Ms != 0 {
		t.Errorf("empty window = %+v", e)
	}
}

func TestSwitchWindowEnd(t *testing.T) {
	for _, c := range []struct {
		trigger, switched, drainedAfter, tail, want float64
	}{
		{1000, 1500, 800, 3000, 4800}, // drained (1800) after the switch
		{1000, 2500, 800, 3000, 5500}, // switch after drained
		{1000, 1000, 0, 3000, 4000},   // stop-and-copy: the disable is the switch
		{1000, 0, 0, 2000, 3000},      // no switch seen: from the trigger
	} {
		if got := SwitchWindowEnd(c.trigger, c.switched, c.drainedAfter, c.tail); got != c.want {
			t.Errorf("SwitchWindowEnd(%v, %v, %v, %v) = %v, want %v", c.trigger, c.switched, c.drainedAfter, c.tail, got, c.want)
		}
	}
}

func TestAnalyzeAndGoals(t *testing.T) {
	mk := func(gapFrom, gapTo float64, failAt float64) *DrainPhase {
		p := &DrainPhase{TriggerMs: 1000, SwitchMs: 1200, DrainedMs: 300, EndMs: 3000}
		for s := 0.0; s < 3000; s += 50 {
			r := DrainRequest{Action: "a", Image: "nodejs:20", StartMs: s, EndMs: s + 10, OK: true}
			if s == failAt {
				r.OK, r.Error = false, "boom"
			}
			if r.EndMs > gapFrom && r.EndMs < gapTo {
				r.EndMs = gapTo // answered only once the gap closes
			}
			p.Requests = append(p.Requests, r)
		}
		return p
	}
	drain := mk(0, 0, -1)
	drain.DestinationOwnerStartsMs = []float64{1100}
	drain.Transfer = &DrainTransfer{SenderPeakBytes: 100 << 10, ReceiverPeakBytes: 200 << 10, SenderRSSBytes: 100 << 20}
	drain.Transfer.PeakExtra()
	drain.Analyze(1000)
	stop := mk(1000, 2000, 1500)
	stop.SwitchMs = 1000
	stop.DestinationOwnerStartsMs = []float64{1100}
	stop.Analyze(1000)

	if drain.Submitted != 60 || drain.Failed != 0 || drain.DowntimeMs != 50 || drain.ColdStartsAfterSwitch != 0 {
		t.Errorf("drain: submitted %d failed %d downtime %v cold %d", drain.Submitted, drain.Failed, drain.DowntimeMs, drain.ColdStartsAfterSwitch)
	}
	if stop.Failed != 1 || stop.ColdStartsAfterSwitch != 1 || stop.DowntimeMs != 1040 || stop.DowntimePerActionMs["a"] != 1040 {
		t.Errorf("stop: failed %d cold %d downtime %v per action %v", stop.Failed, stop.ColdStartsAfterSwitch, stop.DowntimeMs, stop.DowntimePerActionMs)
	}
	if stop.BeforeGapMs != 50 || len(stop.Errors) != 1 || stop.Switch.ToMs != 2300 || stop.Switch.Failed != 1 {
		t.Errorf("stop: before gap %v errors %v switch %+v", stop.BeforeGapMs, stop.Errors, stop.Switch)
	}
	g := Goals(drain, stop)
	if !g.NoFailed.Met || !g.NoColdStarts.Met || !g.DowntimeRatio.Met || !g.PeakMemory.Met || !g.AllMet {
		t.Errorf("goals %+v, want all met", g)
	}
	if math.Abs(g.DowntimeRatio.Value-1040.0/50) > 1e-9 || math.Abs(g.PeakMemory.Value-200.0/(100<<10)) > 1e-12 {
		t.Errorf("goal values %+v", g)
	}

	// The other way round every goal fails.
	bad := Goals(stop, drain)
	if bad.NoFailed.Met || bad.NoColdStarts.Met || bad.DowntimeRatio.Met || bad.PeakMemory.Met || bad.AllMet {
		t.Errorf("goals with the phases swapped %+v, want none met", bad)
	}
	r := &Result{Drain: drain, StopAndCopy: stop, Goals: &g, Config: Config{Drain: &DrainConfig{Actions: []string{"a"}, Image: "nodejs:20"}}}
	md := r.Markdown(nil)
	for _, want := range []string{"## Drain: pre-copy vs stop-and-copy", "| downtime ms | 50 | 1040 |", "(met)", "boom"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if tab := DrainTable(drain, stop); !strings.Contains(tab, "stop-and-copy") || !strings.Contains(tab, "1040") {
		t.Errorf("table:\n%s", tab)
	}
}
