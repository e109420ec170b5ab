package proxy

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/internal/wire"
)

// A sandbox that writes all its logs before it answers /run (the teemate shim does) must never
// block on the pipe while the invoker still waits for that answer: the collector reads on its own,
// keeps what fits under the limit and Wait, called afterwards, reports the truncation.
func TestCollectNeverBlocksTheWriter(t *testing.T) {
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	c := Collect(outR, errR, LogConfig{LimitBytes: 1 << 20, Idle: 2 * time.Second, Total: 10 * time.Second})

	line := strings.Repeat("x", 1023) + "\n"
	written := make(chan error, 1)
	go func() {
		// 8 MiB, 8x the limit, with nobody in Wait yet.
		for i := 0; i < 8<<10; i++ {
			if _, err := io.WriteString(outW, line); err != nil {
				written <- err
				return
			}
		}
		_, err := io.WriteString(outW, wire.LogSentinel+"\n")
		if err == nil {
			_, err = io.WriteString(errW, wire.LogSentinel+"\n")
		}
		written <- err
	}()
	select {
	case err := <-written:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the writer blocked: the collector applied backpressure before Wait")
	}

	logs := c.Wait(context.Background(), false, nil)
	if !logs.Truncated || logs.Incomplete {
		t.Fatalf("truncated=%v incomplete=%v, want a complete, truncated collection", logs.Truncated, logs.Incomplete)
	}
	if n := len(logs.Lines); n != 1024+1 { // 1 MiB of 1 KiB lines, then OpenWhisk's truncation line
		t.Fatalf("%d lines, want 1025", n)
	}
	if last := logs.Lines[len(logs.Lines)-1]; !strings.Contains(last, "Logs were truncated") {
		t.Fatalf("last line %q is not the truncation notice", last)
	}
	// After Wait the readers keep draining: later output never blocks the sandbox either.
	done := make(chan struct{})
	go func() {
		_, _ = io.WriteString(outW, strings.Repeat(line, 256)) // the pipe's error is checked by the timeout below
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("output after Wait blocked")
	}
	outW.Close()
	errW.Close()
}

// The shim's lines carry the enclave's time: the record keeps it, the stream and the text, in
// OpenWhisk's format; a line without a usable time gets the time it arrived. The limit counts the
// text only, as without stamps.
func TestCollectStampedLines(t *testing.T) {
	arrival := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	c := Collect(strings.NewReader("2026-11-21T10:00:00.123Z hello world\n- no time\n"+wire.LogSentinel+"\n"),
		strings.NewReader("2026-11-21T10:00:01.5Z  two spaces\nnotatime x\n"+wire.LogSentinel+"\n"),
		LogConfig{LimitBytes: 1 << 20, Idle: 2 * time.Second, Total: 10 * time.Second, Stamped: true,
			Now: func() time.Time { return arrival }})
	logs := c.Wait(context.Background(), false, nil)
	got := map[string]bool{}
	for _, l := range logs.Lines {
		got[l] = true
	}
	for _, want := range []string{
		"2026-11-21T10:00:00.123000000Z stdout: hello world",
		"2030-01-02T03:04:05.000000000Z stdout: no time",
		"2026-11-21T10:00:01.500000000Z stderr:  two spaces",
		"2030-01-02T03:04:05.000000000Z stderr: x",
	} {
		if !got[want] {
			t.Errorf("missing %q in %q", want, logs.Lines)
		}
	}
	if len(logs.Lines) != 4 || logs.Incomplete {
		t.Fatalf("lines %q incomplete %v", logs.Lines, logs.Incomplete)
	}
	// Unstamped (a standard proxy): the whole line is the text.
	c = Collect(strings.NewReader("2026-11-21T10:00:00.123Z hello\n"+wire.LogSentinel+"\n"), nil,
		LogConfig{LimitBytes: 1 << 20, Idle: time.Second, Total: 5 * time.Second, Now: func() time.Time { return arrival }})
	if l := c.Wait(context.Background(), false, nil).Lines; len(l) != 1 ||
		l[0] != "2030-01-02T03:04:05.000000000Z stdout: 2026-11-21T10:00:00.123Z hello" {
		t.Fatalf("unstamped %q", l)
	}
}

// The enclave runtime cuts at the limit itself and ends stderr with OpenWhisk's truncation line.
// The two pipes keep no order between them, so that line can arrive before stdout's last lines;
// the record still ends with it, once, and keeps every stdout line.
func TestCollectEnclaveTruncationLineComesLast(t *testing.T) {
	const limit = 1 << 20
	truncated := "Logs were truncated because the total bytes size exceeds the limit of 1048576 bytes."
	outR, outW := io.Pipe()
	c := Collect(outR, strings.NewReader("2026-11-21T10:00:02.000Z "+truncated+"\n"+wire.LogSentinel+"\n"),
		LogConfig{LimitBytes: limit, Idle: 2 * time.Second, Total: 10 * time.Second, Stamped: true})
	go func() {
		// stderr (above) has been read completely before the first stdout line is written.
		time.Sleep(50 * time.Millisecond)
		for i := 0; i < 3; i++ {
			_, _ = io.WriteString(outW, "2026-11-21T10:00:01.000Z line\n") // checked through the lines below
		}
		_, _ = io.WriteString(outW, wire.LogSentinel+"\n")
		outW.Close()
	}()
	logs := c.Wait(context.Background(), false, nil)
	if len(logs.Lines) != 4 || !logs.Truncated || !strings.HasSuffix(logs.Lines[3], " stderr: "+truncated) {
		t.Fatalf("lines %q truncated %v", logs.Lines, logs.Truncated)
	}
	for _, l := range logs.Lines[:3] {
		if !strings.HasSuffix(l, " stdout: line") {
			t.Fatalf("lines %q", logs.Lines)
		}
	}
}

// The two streams arrive on two pipes with no order between them; the activation's logs are in
// the order the enclave stamped them, as OpenWhisk shows them, and lines of one time keep the
// order they came in.
func TestCollectOrdersStreamsByTheirStamps(t *testing.T) {
	outR, outW := io.Pipe()
	c := Collect(outR, strings.NewReader("2026-11-21T10:00:00.300Z late err\n"+wire.LogSentinel+"\n"),
		LogConfig{LimitBytes: 1 << 20, Idle: 2 * time.Second, Total: 10 * time.Second, Stamped: true})
	go func() {
		time.Sleep(50 * time.Millisecond) // stdout comes after stderr has been read
		_, _ = outW.Write([]byte("2026-11-21T10:00:00.100Z early out\n2026-11-21T10:00:00.300Z same time, after\n2026-11-21T10:00:00.200Z middle\n" + wire.LogSentinel + "\n"))
		_ = outW.Close()
	}()
	logs := c.Wait(context.Background(), false, nil)
	var got []string
	for _, l := range logs.Lines {
		got = append(got, l[strings.Index(l, " ")+1:])
	}
	want := []string{"stdout: early out", "stdout: middle", "stderr: late err", "stdout: same time, after"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("lines %q, want %q", got, want)
	}
}
