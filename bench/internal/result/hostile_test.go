package result

import (
	"strings"
	"testing"
	"time"
)

func TestHostileSummary(t *testing.T) {
	h := &Hostile{HostileStreams: 1, Passes: 2, Description: "test run",
		Baseline: []*Case{
			mkCase("teemate", NoopFunction, []float64{10, 10, 10, 10}, 0, 0, 0, 0),
			mkCase("teemate", "crypto-md5", []float64{20, 20}, 0, 0, 0, 0),
		},
		UnderAttack: []*Case{
			mkCase("teemate", "crypto-md5", []float64{30, 30, 30}, 2, 0, 0, 0),
			mkCase("teemate", NoopFunction, []float64{15, 15}, 0, 0, 0, 0),
		},
		Cases: []*HostileCase{{Name: "fork-bomb", Runs: 2, Statuses: map[string]int{"success": 1, "application error": 1}, Example: "a|b"}},
	}
	// Warm-up samples are not latency samples.
	h.Baseline[0].Samples = append(h.Baseline[0].Samples, Sample{Kind: KindWarmup, ClientMs: 999, Valid: true})
	h.Summarize()
	if len(h.Rows) != 2 {
		t.Fatalf("rows %+v", h.Rows)
	}
	noop, md5 := h.Rows[0], h.Rows[1]
	if noop.Function != NoopFunction || noop.BaselineN != 4 || !near(noop.BaselineP50Ms, 10) || !near(noop.BaselineP99Ms, 10) ||
		noop.UnderAttackN != 2 || !near(noop.UnderAttackP50Ms, 15) || !near(noop.P50Ratio, 1.5) {
		t.Fatalf("noop row %+v", noop)
	}
	if md5.UnderAttackInvalid != 2 || md5.UnderAttackN != 3 || !near(md5.P99Ratio, 1.5) || h.BenignInvalid() != 2 {
		t.Fatalf("md5 row %+v, invalid %d", md5, h.BenignInvalid())
	}
	md := h.Markdown()
	for _, want := range []string{"| noop | test | 4 | 10.0 | 10.0 | 2 | 15.0 | 15.0 | 1.50 | 1.50 | 0 / 0 |",
		"| fork-bomb | 2 | application error: 1, success: 1 | a\\|b |", "full passes 2"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

func TestHostileMissingPhase(t *testing.T) {
	h := &Hostile{Baseline: []*Case{mkCase("teemate", "a", []float64{1}, 0, 0, 0, 0)}}
	h.Summarize()
	if r := h.Rows[0]; r.UnderAttackN != 0 || r.P50Ratio != 0 {
		t.Fatalf("row without an under-attack phase %+v", r)
	}
}

func TestHostileInResult(t *testing.T) {
	r := &Result{Schema: SchemaVersion, Name: "h", StartedAt: time.Unix(1700000000, 0).UTC(), Config: Config{Profile: "hostile"},
		Hostile: &Hostile{
			Baseline:    []*Case{mkCase("teemate", "a", []float64{1, 2}, 0, 0, 0, 0)},
			UnderAttack: []*Case{mkCase("teemate", "a", []float64{2, 4}, 1, 0, 0, 0)},
		}}
	r.Finish()
	if len(r.Hostile.Rows) != 1 || r.Hostile.Baseline[0].Latency == nil || len(r.Warnings) != 1 {
		t.Fatalf("finish: rows %+v, warnings %v", r.Hostile.Rows, r.Warnings)
	}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(b)
	if err != nil || back.Hostile == nil || back.Hostile.Rows[0].UnderAttackInvalid != 1 {
		t.Fatalf("round trip: %v %+v", err, back.Hostile)
	}
	if !strings.Contains(r.Markdown(nil), "## Benign latency with and without a hostile tenant") {
		t.Fatal("report has no hostile section")
	}
}
