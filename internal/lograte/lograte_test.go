package lograte

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestLimiterFirstThenSummary: a burst logs its first occurrence in full and one summary with the
// count of the rest when the interval ends; a quiet interval after it closes the window, so the
// next occurrence is logged in full again.
func TestLimiterFirstThenSummary(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := New(zap.New(core), 100*time.Millisecond)

	var wg sync.WaitGroup
	for i := range 1993 {
		wg.Add(1)
		go func() { defer wg.Done(); l.Warn("overcommitting", zap.Int("i", i)) }()
	}
	wg.Wait()
	l.Warn("another message")
	if got := logs.Len(); got != 2 {
		t.Fatalf("during the burst: %d lines, want 2 (the first of each message): %v", got, messages(logs))
	}

	waitFor(t, logs, 3)
	summary := logs.All()[2]
	if want := "overcommitting: 1992 more in the last "; !strings.HasPrefix(summary.Message, want) {
		t.Fatalf("summary %q, want prefix %q", summary.Message, want)
	}
	if summary.Level != zapcore.WarnLevel || summary.ContextMap()["repeats"] != int64(1992) {
		t.Fatalf("summary level %v fields %v", summary.Level, summary.ContextMap())
	}
	if _, ok := summary.ContextMap()["i"]; !ok {
		t.Fatalf("summary without the latest repeat's fields: %v", summary.ContextMap())
	}

	// Two quiet intervals: the windows close without another line.
	time.Sleep(250 * time.Millisecond)
	if got := logs.Len(); got != 3 {
		t.Fatalf("after quiet intervals: %d lines, want 3: %v", got, messages(logs))
	}
	l.Warn("overcommitting", zap.Int("i", -1))
	if got := logs.All()[logs.Len()-1]; got.Message != "overcommitting" {
		t.Fatalf("after the window closed: %q, want the message in full", got.Message)
	}
}

// TestLimiterSteadyStream: a stream that never stops gives one summary per interval, not one full
// line per interval.
func TestLimiterSteadyStream(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := New(zap.New(core), 50*time.Millisecond)
	deadline, sent := time.Now().Add(300*time.Millisecond), 0
	for time.Now().Before(deadline) {
		l.Error("record not stored")
		sent++
		time.Sleep(time.Millisecond)
	}
	l.Flush()
	all := logs.All()
	if all[0].Message != "record not stored" || all[0].Level != zapcore.ErrorLevel {
		t.Fatalf("first line %q at %v", all[0].Message, all[0].Level)
	}
	total := 1
	for _, e := range all[1:] {
		var n int
		if _, err := fmt.Sscanf(e.Message, "record not stored: %d more", &n); err != nil {
			t.Fatalf("line %q is not a summary", e.Message)
		}
		total += n
	}
	if len(all) < 3 || len(all) > 9 {
		t.Fatalf("%d lines for about 6 intervals: %v", len(all), messages(logs))
	}
	if total != sent {
		t.Fatalf("the lines account for %d occurrences, %d were sent", total, sent)
	}
}

// TestLimiterFlush: Flush logs the pending count at once, and nothing after it is swallowed.
func TestLimiterFlush(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := New(zap.New(core), time.Hour)
	for range 5 {
		l.Warn("forced completion")
	}
	l.Flush()
	if got := messages(logs); len(got) != 2 || !strings.HasPrefix(got[1], "forced completion: 4 more in the last") {
		t.Fatalf("after Flush: %q", got)
	}
	l.Flush() // nothing pending: no line
	l.Warn("forced completion")
	if got := logs.Len(); got != 3 {
		t.Fatalf("after Flush and one more: %d lines, want 3", got)
	}
}

func waitFor(t *testing.T, logs *observer.ObservedLogs, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for logs.Len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d lines, want %d: %v", logs.Len(), n, messages(logs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func messages(logs *observer.ObservedLogs) []string {
	var out []string
	for _, e := range logs.All() {
		out = append(out, e.Message)
	}
	return out
}
