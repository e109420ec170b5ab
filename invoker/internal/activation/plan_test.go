package activation

import (
	"testing"
	"time"
)

func TestPlanAcks(t *testing.T) {
	tests := []struct {
		name     string
		blocking bool
		ran      bool
		logs     int
		want     AckPlan
	}{
		{"blocking with logs", true, true, 10, ResultThenCompletion},
		{"blocking logs off", true, true, 0, Combined},
		{"non-blocking with logs", false, true, 10, CompletionOnly},
		{"non-blocking logs off", false, true, 0, CompletionOnly},
		{"blocking not run", true, false, 10, Combined},
		{"non-blocking not run", false, false, 10, CombinedShrunk},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := PlanAcks(tc.blocking, tc.ran, tc.logs); got != tc.want {
				t.Fatalf("PlanAcks(%v,%v,%d) = %v, want %v", tc.blocking, tc.ran, tc.logs, got, tc.want)
			}
		})
	}
}

func TestIsStale(t *testing.T) {
	now := time.UnixMilli(1_700_000_600_000)
	tests := []struct {
		name   string
		start  time.Time
		maxAge time.Duration
		want   bool
	}{
		{"fresh", now.Add(-time.Second), 10 * time.Minute, false},
		{"exactly max age", now.Add(-10 * time.Minute), 10 * time.Minute, false},
		{"just over", now.Add(-10*time.Minute - time.Millisecond), 10 * time.Minute, true},
		{"future start (skew)", now.Add(time.Hour), 10 * time.Minute, false},
		{"check disabled", now.Add(-time.Hour), 0, false},
		{"unknown start", time.Time{}, time.Minute, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsStale(tc.start, now, tc.maxAge); got != tc.want {
				t.Fatalf("IsStale = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMaxPeekAndWaitTime(t *testing.T) {
	for mem, want := range map[int]int{2048: 16, 256: 2, 100: 1, 0: 1} {
		if got := MaxPeek(mem); got != want {
			t.Errorf("MaxPeek(%d) = %d, want %d", mem, got, want)
		}
	}
	s := time.UnixMilli(1000)
	if got := WaitTime(s, s.Add(7*time.Millisecond)); got != 7*time.Millisecond {
		t.Errorf("WaitTime = %v", got)
	}
	if got := WaitTime(s, s.Add(-time.Second)); got != 0 {
		t.Errorf("WaitTime negative = %v", got)
	}
}
