package result

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mkCase builds a case whose latency samples are lat (all valid unless listed in bad) with the given
// throughput and memory.
func mkCase(model, fn string, lat []float64, bad int, tp8, tp64, mem64 float64) *Case {
	c := &Case{Model: model, Function: fn, Size: "test"}
	for i, v := range lat {
		c.Samples = append(c.Samples, Sample{Kind: KindLatency, Seq: i + 1, ClientMs: v, Valid: true,
			Phases: map[string]float64{"run": v / 2, "isolate_create": 0.2, "isolate_teardown": 0.1}})
	}
	for i := 0; i < bad; i++ {
		c.Samples = append(c.Samples, Sample{Kind: KindLatency, ClientMs: 1, Valid: false, Error: "invalid: x"})
	}
	c.Bursts = []Burst{{Concurrency: 8, PerSecond: tp8}, {Concurrency: 64, PerSecond: tp64}}
	c.Memory = []Memory{{Concurrency: 64, PeakMB: mem64}}
	return c
}

func sample() *Result {
	return &Result{Schema: SchemaVersion, Name: "t", StartedAt: time.Unix(1700000000, 0).UTC(),
		Config: Config{Profile: "quick", Models: []string{"teemate", "strawman", "native"}},
		Models: []ModelInfo{{Name: "teemate", Available: true, Start: "fresh sandbox"}},
		Cases: []*Case{
			mkCase("teemate", "a", []float64{10, 10, 10}, 0, 100, 200, 50),
			mkCase("teemate", "b", []float64{20, 20, 20}, 0, 50, 100, 50),
			mkCase("strawman", "a", []float64{40, 40, 40}, 0, 50, 50, 200),
			mkCase("strawman", "b", []float64{160, 160, 160}, 1, 25, 25, 400),
			mkCase("native", "a", []float64{20, 20}, 0, 10, 10, 100),
			mkCase("teemate", NoopFunction, []float64{4, 6, 8}, 0, 0, 0, 0),
		}}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestSummaryAndRatios(t *testing.T) {
	r := sample()
	r.Finish()
	tm := r.Summary.Models["teemate"]
	if tm.Cases != 2 || !near(tm.P50Ms, math.Sqrt(10*20)) || !near(tm.Throughput64, math.Sqrt(200*100)) {
		t.Fatalf("teemate summary %+v (noop must be left out)", tm)
	}
	q := r.Summary.Ratios
	// strawman/teemate latency: a 4x, b 8x -> geomean sqrt(32)
	if !near(q.LatencyTeemateVsStrawman, math.Sqrt(32)) {
		t.Errorf("latency vs strawman %v", q.LatencyTeemateVsStrawman)
	}
	// native only has a: 20/10
	if !near(q.LatencyTeemateVsNative, 2) {
		t.Errorf("latency vs native %v", q.LatencyTeemateVsNative)
	}
	if !near(q.Throughput8TeemateVsStrawman, 2) || !near(q.Throughput64TeemateVsStrawman, math.Sqrt(4*4)) {
		t.Errorf("throughput ratios %v %v", q.Throughput8TeemateVsStrawman, q.Throughput64TeemateVsStrawman)
	}
	if !near(q.Memory64StrawmanVsTeemate, math.Sqrt(4*8)) {
		t.Errorf("memory ratio %v", q.Memory64StrawmanVsTeemate)
	}
	if r.Summary.AllValid["strawman"]["b/test"] || !r.Summary.AllValid["strawman"]["a/test"] {
		t.Errorf("all_valid %v", r.Summary.AllValid)
	}
	if c := r.Cases[3]; c.Invalid != 1 || c.Latency.N != 3 {
		t.Errorf("invalid sample not excluded: invalid %d n %d", c.Invalid, c.Latency.N)
	}
	o := r.Issue3["teemate"]
	if o == nil || !near(o.NewIsolateP50Ms, 0.3) || !near(o.OverheadP50Ms, 3) || !near(o.EndToEndP50Ms, 6) {
		t.Fatalf("noop overhead %+v", o)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "strawman/b/test: 1 invalid") {
		t.Errorf("warnings %v", r.Warnings)
	}
}

func TestMissingModelGivesZeroRatio(t *testing.T) {
	r := &Result{Cases: []*Case{mkCase("teemate", "a", []float64{1}, 0, 1, 1, 1)}}
	r.Finish()
	if r.Summary.Ratios.LatencyTeemateVsStrawman != 0 || r.Summary.Ratios.Memory64StrawmanVsTeemate != 0 {
		t.Fatalf("ratio without strawman: %+v", r.Summary.Ratios)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := sample()
	r.Finish()
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"p50_ms"`, `"p99_ms"`, `"throughput_8"`, `"throughput_64"`, `"peak_memory_64_mb"`,
		`"latency_teemate_vs_native"`, `"latency_teemate_vs_strawman"`, `"throughput8_teemate_vs_strawman"`,
		`"throughput64_teemate_vs_strawman"`, `"memory64_strawman_vs_teemate"`, `"all_valid"`, `"summary"`, `"teemate": {`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	back, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Summary, r.Summary) {
		t.Fatalf("summary changed in the round trip:\n%+v\n%+v", back.Summary, r.Summary)
	}
	if !reflect.DeepEqual(back.Cases, r.Cases) || !back.StartedAt.Equal(r.StartedAt) || back.Name != r.Name {
		t.Fatal("cases or header changed in the round trip")
	}
	again, _ := back.Encode()
	if string(again) != string(b) {
		t.Fatal("re-encoding differs")
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, in := range []string{`{"schema":"other/1"}`, `not json`, `{"schema":"teemate-bench/1","summary":{"teemate":5}}`} {
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("accepted %s", in)
		}
	}
}

func TestReportAndPlots(t *testing.T) {
	r := sample()
	r.Finish()
	dir := t.TempDir()
	plots, err := r.WritePlots(dir, "run")
	if err != nil {
		t.Fatal(err)
	}
	if len(plots) != 5 {
		t.Fatalf("plots %v", plots)
	}
	for _, p := range plots {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || !strings.HasPrefix(string(b), "<svg") {
			t.Fatalf("plot %s: %v", p, err)
		}
	}
	md := r.Markdown(plots)
	for _, want := range []string{"4.54-6.98x", "2.8-5x", "No SGX", "new isolate p50", "| strawman | b | test |", "**no** (1 invalid)", "run-breakdown.svg"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
