package proxy

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/teemate/platform/invoker/whisk"
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
		_, err := io.WriteString(outW, whisk.LogSentinel+"\n")
		if err == nil {
			_, err = io.WriteString(errW, whisk.LogSentinel+"\n")
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
