package stats

import (
	"errors"
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestPercentile(t *testing.T) {
	xs := []float64{15, 20, 35, 40, 50}
	for _, c := range []struct{ p, want float64 }{
		{0, 15}, {25, 20}, {40, 29}, {50, 35}, {90, 46}, {99, 49.6}, {100, 50},
	} {
		got, err := Percentile(xs, c.p)
		if err != nil || !near(got, c.want) {
			t.Errorf("p%v = %v, %v; want %v", c.p, got, err, c.want)
		}
	}
	if got, _ := Percentile([]float64{4, 1, 3, 2}, 50); !near(got, 2.5) {
		t.Errorf("median of even count = %v, want 2.5", got)
	}
	if got, _ := Percentile([]float64{7}, 99); got != 7 {
		t.Errorf("single value p99 = %v", got)
	}
	if _, err := Percentile(nil, 50); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty: %v", err)
	}
	for _, p := range []float64{-1, 101, math.NaN()} {
		if _, err := Percentile(xs, p); err == nil {
			t.Errorf("p=%v accepted", p)
		}
	}
	if xs[0] != 15 || xs[4] != 50 {
		t.Error("input was modified")
	}
}

func TestGeoMean(t *testing.T) {
	g, err := GeoMean([]float64{1, 10, 100})
	if err != nil || !near(g, 10) {
		t.Fatalf("geomean = %v, %v", g, err)
	}
	g, _ = GeoMean([]float64{2, 8})
	if !near(g, 4) {
		t.Fatalf("geomean(2,8) = %v", g)
	}
	for _, bad := range [][]float64{nil, {1, 0}, {-1, 2}, {math.Inf(1)}, {math.NaN()}} {
		if _, err := GeoMean(bad); err == nil {
			t.Errorf("GeoMean(%v) accepted", bad)
		}
	}
}

func TestSummarize(t *testing.T) {
	s, err := Summarize([]float64{2, 4, 4, 4, 5, 5, 7, 9})
	if err != nil {
		t.Fatal(err)
	}
	if s.N != 8 || s.Mean != 5 || s.Min != 2 || s.Max != 9 || !near(s.P50, 4.5) {
		t.Fatalf("summary %+v", s)
	}
	if !near(s.Stdev, math.Sqrt(32.0/7)) {
		t.Fatalf("stdev %v", s.Stdev)
	}
	if _, err := Summarize(nil); !errors.Is(err, ErrEmpty) {
		t.Fatal("empty summary accepted")
	}
}

func TestRatio(t *testing.T) {
	for _, c := range []struct{ a, b, want float64 }{{10, 2, 5}, {0, 2, 0}, {3, 0, 0}, {math.NaN(), 1, 0}} {
		if got := Ratio(c.a, c.b); !near(got, c.want) {
			t.Errorf("Ratio(%v,%v) = %v", c.a, c.b, got)
		}
	}
}

func TestMedianCI(t *testing.T) {
	if _, _, err := MedianCI(nil, 0.95, 100, 1); err == nil {
		t.Fatal("no values: want an error")
	}
	if _, _, err := MedianCI([]float64{1}, 1.5, 100, 1); err == nil {
		t.Fatal("level 1.5: want an error")
	}
	// A constant sample: the interval is that value.
	lo, hi, err := MedianCI([]float64{3, 3, 3, 3}, 0.95, 200, 1)
	if err != nil || lo != 3 || hi != 3 {
		t.Fatalf("constant: [%v, %v] %v", lo, hi, err)
	}
	// 0..100: the interval holds the median (50), is narrower than the data and reproducible.
	xs := make([]float64, 101)
	for i := range xs {
		xs[i] = float64(i)
	}
	lo, hi, err = MedianCI(xs, 0.95, 2000, 7)
	if err != nil || lo >= 50 || hi <= 50 || lo < 30 || hi > 70 {
		t.Fatalf("0..100: [%v, %v] %v", lo, hi, err)
	}
	if lo2, hi2, _ := MedianCI(xs, 0.95, 2000, 7); lo2 != lo || hi2 != hi {
		t.Fatalf("same seed, other interval: [%v, %v] vs [%v, %v]", lo2, hi2, lo, hi)
	}
	// A wider level gives a wider interval.
	lo90, hi90, _ := MedianCI(xs, 0.90, 2000, 7)
	if lo90 < lo || hi90 > hi {
		t.Fatalf("90%% [%v, %v] not inside 95%% [%v, %v]", lo90, hi90, lo, hi)
	}
}
